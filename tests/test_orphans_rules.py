"""The orphan rules are plain functions: table-driven tests, no servers."""

from __future__ import annotations

import asyncio
import datetime as dt
from urllib.parse import unquote

import pytest

from nbtui.core import orphans
from nbtui.core.model import GpuUse, Kernel, Process, Session, Usage
from nbtui.jupyter.notebooks import NotebookChecks
from nbtui.jupyter.rest import ServerError


T0 = dt.datetime(2026, 11, 26, 10, 0, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(autouse=True)
def _clock(still_clock):
    still_clock(T0)  # idle times are as of when asked: the hand-built kernels' stay as named


NB = Session(id="s1", path="work/gpu.ipynb", name="gpu.ipynb", type="notebook")
CONSOLE = Session(id="s2", path="console-1-abc", name="", type="console")


def kernel(session=NB, connections=0, idle=7200.0, state="idle", usage=None, reasons=()):
    return Kernel(server="gpu1", kernel_id="80442938-aaaa-bbbb-cccc-000000000001", kernel_name="python3",
                  state=state, connections=connections,
                  last_activity=None if idle is None else T0 - dt.timedelta(seconds=idle), session=session, usage=usage, orphan_reasons=reasons)


@pytest.mark.parametrize("k, own, exists, expected", [
    (kernel(), 0, True, ("disconnected-idle",)),
    (kernel(idle=10.0), 0, True, ()),
    (kernel(connections=1), 0, True, ()),
    (kernel(connections=1), 1, True, ("disconnected-idle",)),  # nbtui's own socket is nobody
    (kernel(state="busy"), 0, True, ()),
    (kernel(session=None, idle=1.0), 0, None, ("no-session",)),
    (kernel(session=None), 0, None, ("no-session", "disconnected-idle")),
    (kernel(idle=1.0), 0, False, ("notebook-missing",)),
    (kernel(idle=1.0), 0, None, ()),  # unknown is never a reason
    (kernel(connections=None), 0, True, ()),
    (kernel(idle=None), 0, True, ()),
])
def test_kernel_reasons(k, own, exists, expected):
    assert orphans.kernel_reasons(k, idle_threshold=3600, own_connections=own, notebook_exists=exists) == expected


@pytest.mark.parametrize("server_alive, kernel_alive, expected", [
    (False, False, ("server-gone", "kernel-gone")),
    (False, None, ("server-gone",)),
    (True, False, ("kernel-gone",)),
    (True, True, ()),
    (None, None, ()),
])
def test_process_reasons(server_alive, kernel_alive, expected):
    assert orphans.process_reasons(server_alive=server_alive, kernel_alive=kernel_alive) == expected


@pytest.mark.parametrize("session, checkable", [(NB, True), (None, False), (CONSOLE, False),
                                                 (Session("s", "", "", "notebook"), False),
                                                 (Session("s", "a.py", "a.py", "file"), True)])
def test_session_checkable(session, checkable):
    assert orphans.session_checkable(kernel(session=session)) is checkable


@pytest.mark.parametrize("files, live, running, expected", [
    (["/r/kernel-a1.json", "/r/kernel-b2.json"], [], ["b2"], ("/r/kernel-a1.json",)),
    (["/r/kernel-a1.json"], ["a1"], [], ()),
    (["/r/jpserver-12.json", "/r/kernel-x.json"], [], [], ("/r/kernel-x.json",)),
    (["/r/kernel-b-1.json", "/r/kernel-a.json"], [], [], ("/r/kernel-a.json", "/r/kernel-b-1.json")),
    ([], ["a"], ["b"], ()),
])
def test_stale_kernel_files(files, live, running, expected):
    assert orphans.stale_kernel_files(files, live_kernel_ids=live, running_kernel_ids=running) == expected


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class _Contents:
    """A server's contents API as NotebookChecks asks it: a folder's listing, or one file."""

    def __init__(self, files: set[str], broken: set[str]):
        self.files, self.broken, self.calls = files, broken, []

    async def request(self, method: str, url: str) -> dict:
        self.calls.append(url)
        folder = unquote(url.partition("?")[0].removeprefix("api/contents").lstrip("/"))
        names = [f.rpartition("/")[2] for f in self.files if f.rpartition("/")[0] == folder]
        if not names:
            raise ServerError("a", "not-found", "no such folder")
        return {"type": "directory", "content": [{"name": n} for n in names]}

    async def contents_exists(self, path: str) -> bool:
        self.calls.append(path)
        if path in self.broken:
            raise ServerError("a", "timeout", "slow server")
        return path in self.files


async def test_notebook_checks_ask_each_folder_at_most_once_a_minute_and_a_failure_is_unknown():
    clock = Clock()
    checks = NotebookChecks(clock=clock)
    server = _Contents({"x.ipynb", "y.ipynb"}, broken={"b/broken.ipynb"})
    paths = ["x.ipynb", "gone.ipynb", "y.ipynb", "x.ipynb", "b/broken.ipynb"]

    async def refresh() -> int:
        return await checks.refresh("a", paths, lambda: server, limit=asyncio.Semaphore(8), timeout=5.0)

    assert await refresh() == 2  # the root's listing, and b's one file on its own
    assert checks.get("a", "x.ipynb") is True
    assert checks.get("a", "gone.ipynb") is False  # the listing lacked it, and asked alone: missing
    assert checks.get("a", "b/broken.ipynb") is None  # a failed check is unknown, not missing
    assert checks.get("a", "never.ipynb") is None
    asked = len(server.calls)
    clock.t += 59
    assert await refresh() == 0 and len(server.calls) == asked
    clock.t += 1
    assert await refresh() == 2


GPU = (GpuUse(index=0, uuid="GPU-1", memory_bytes=1536 * 1024 ** 2),)


@pytest.mark.parametrize("proc, expected", [
    (Process(pid=464, user="ana", cmdline="python -c work", create_time=1.0, notebook="gpu.ipynb",
             kernel_id="80442938-1111", server_pid=420, gpu_memory_bytes=1536 * 1024 ** 2, gpus=GPU,
             orphan_reasons=("server-gone",)),
     "child of kernel 80442938 (gpu.ipynb) on server pid 420, which is gone; holds 1.5G on GPU 0"),
    (Process(pid=463, user="ana", cmdline="python -m ipykernel_launcher -f /r/kernel-80442938-1111.json",
             create_time=1.0, notebook="gpu.ipynb", kernel_id="80442938-1111", server_pid=420,
             memory_bytes=50 * 1024 ** 2, orphan_reasons=("server-gone", "kernel-gone")),
     "kernel 80442938 (gpu.ipynb) on server pid 420, which is gone; no server lists this kernel; holds 50M of memory"),
    (Process(pid=5, user=None, cmdline="x", create_time=1.0, server_pid=None, kernel_id="abcdef12-3",
             orphan_reasons=("kernel-gone",)),
     "child of kernel abcdef12; the kernel is gone"),
    (Process(pid=5, user=None, cmdline="x", create_time=1.0, orphan_reasons=()), "Jupyter process"),
])
def test_explain_process(proc, expected):
    assert orphans.explain_process(proc) == expected


@pytest.mark.parametrize("k, expected", [
    (kernel(reasons=("disconnected-idle",)),
     "kernel 80442938 (work/gpu.ipynb) on server gpu1: no client connected and idle for 2h"),
    (kernel(session=None, reasons=("no-session",),
            usage=Usage(source="local", gpu_memory_bytes=2 * 1024 ** 3, gpus=(GpuUse(1, "G", 2 * 1024 ** 3),))),
     "kernel 80442938 (no session) on server gpu1: no session (no notebook or console) refers to it; holds 2.0G on GPU 1"),
    (kernel(reasons=("notebook-missing",)),
     "kernel 80442938 (work/gpu.ipynb) on server gpu1: no notebook file at work/gpu.ipynb on the server"),
    (kernel(reasons=()), ""),
])
def test_explain_kernel(k, expected):
    assert orphans.explain_kernel(k) == expected


from nbtui.host.signals import Ident, looks_like_server, refusal  # noqa: E402

SERVER_CMD = "/usr/bin/python3 -m jupyter_server --ServerApp.port=8888"


@pytest.mark.parametrize("ident, explicit, me, root, why", [
    (Ident(1, 1.0, "root", "/sbin/init"), True, "root", True, "PID 1"),
    (Ident(4000, 1.0, "ana", "python work.py"), True, "ana", False, None),
    (Ident(4000, 1.0, "bob", "python work.py"), True, "ana", False, "owned by bob, and nbtui runs as ana"),
    (Ident(4000, 1.0, "bob", "python work.py"), True, "root", True, None),  # root may; the prompt names bob
    (Ident(4000, 1.0, None, "?"), True, "ana", False, "owner cannot be read"),
    (Ident(4000, 1.0, "ana", SERVER_CMD), False, "ana", False, "is a Jupyter server; name it as pid:4000"),
    (Ident(4000, 1.0, "ana", SERVER_CMD), True, "ana", False, None),  # asked for by pid: explicitly
    (Ident(4000, 1.0, "ana", "python -m ipykernel_launcher -f kernel-1.json"), False, "ana", False, None),
    (Ident(777, 1.0, "ana", "bash"), True, "ana", False, "parent"),  # 777 is in protected below
])
def test_refusal(ident, explicit, me, root, why):
    got = refusal(ident, explicit=explicit, protected={777}, me=me, root=root)
    assert (got is None) if why is None else (why in got), got


def test_a_server_is_known_by_its_pid_too():
    assert looks_like_server(Ident(5, 1.0, "ana", "python my_launcher.py"), server_pids=[5])
    assert not looks_like_server(Ident(5, 1.0, "ana", "python my_launcher.py"), server_pids=[6])
