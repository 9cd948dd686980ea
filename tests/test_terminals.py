"""Jupyter terminals as holders: a real server, a real terminal opened as JupyterLab opens
one (REST, then its websocket), a job in it that allocates memory. The terminal's row
covers the job; the job is no leftover; `nbtui kill terminal:SERVER/NAME` ends both."""

from __future__ import annotations

import asyncio
import json
import os
import secrets

import psutil
import pytest
import websockets

from nbtui.files.config import ServerConfig
from nbtui.service.fleet import Fleet
from nbtui.host.local import LocalHost
from tests.conftest import add_server, run_nbtui
from tests.jupyter import JupyterServer, wait_for

MB = 1024**2
JOB_MB = 120
# Unique to this run: find_job looks at every process on the host, where a second run of the
# suite (or another worker) may have a terminal job of the same tag.
MARK = f"nbtui-terminal-job-{os.getpid()}-{secrets.token_hex(3)}"


def open_terminal(server: JupyterServer) -> str:
    return server.api("POST", "api/terminals").json()["name"]


async def type_into(server: JupyterServer, name: str, line: str) -> None:
    """Connect to the terminal's websocket as Lab does, type one line, leave (the terminal,
    and what it runs, stay)."""
    url = server.url.replace("http://", "ws://") + f"terminals/websocket/{name}"
    async with websockets.connect(url, additional_headers=server.headers, open_timeout=20) as ws:
        await asyncio.wait_for(ws.recv(), 20)  # ["setup", {}] or the first output
        await ws.send(json.dumps(["stdin", line + "\r"]))
        await asyncio.sleep(0.3)


def job_line(tag: str, *, nohup: bool = False) -> str:
    # JPY_PARENT_PID as a Jupyter child would carry it: still the terminal's, never a leftover.
    code = f"b = b'x' * ({JOB_MB} << 20); import time; time.sleep(600)  # {MARK}-{tag}"
    run = "nohup python3" if nohup else "python3"
    return f'JPY_PARENT_PID=1 {run} -c "{code}"' + (" > /dev/null 2>&1 &" if nohup else " &")


def find_job(tag: str) -> psutil.Process:
    def find():
        for p in psutil.process_iter(["cmdline"]):
            if any(f"{MARK}-{tag}" in a for a in (p.info["cmdline"] or [])):
                if p.memory_info().rss >= JOB_MB * MB:
                    return p
        return None

    return wait_for(find, 30, 0.1, f"the terminal job {tag}")


@pytest.fixture(scope="module")
def term_server(tmp_path_factory):
    server = JupyterServer(tmp_path_factory.mktemp("jupyter-terms"), name="terms").start()
    yield server
    server.stop()


def local_cfg(server: JupyterServer, name: str = "terms", pid: bool = True) -> ServerConfig:
    return ServerConfig(name=name, url=server.url, token_source="discovered", source="discovered",
                        token=server.token, pid=server.pid if pid else None, timeout=15.0)


async def _snapshot_until(fleet: Fleet, predicate, what: str, timeout: float = 30.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        snap = await fleet.snapshot()
        if predicate(snap):
            return snap
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; terminals: {snap.terminals}")
        await asyncio.sleep(0.3)


async def test_terminal_row_covers_its_job_which_is_no_leftover(term_server):
    name = open_terminal(term_server)
    await type_into(term_server, name, job_line("row"))
    job = find_job("row")
    async with Fleet([local_cfg(term_server)], host=LocalHost()) as fleet:
        snap = await _snapshot_until(
            fleet, lambda s: any(t.name == name and t.usage and t.usage.memory_bytes
                                 and t.usage.memory_bytes >= JOB_MB * MB for t in s.terminals), "the terminal's usage")
    t = next(t for t in snap.terminals if t.name == name)
    shell = psutil.Process(t.pid)
    assert shell.ppid() == term_server.pid  # the shell terminado started, a child of the server
    assert job.pid in t.usage.pids and t.usage.source == "local"
    assert t.user == psutil.Process().username()
    assert t.idle_seconds is not None and t.orphan_reasons == ()
    assert job.pid not in {p.pid for p in snap.processes}  # carries JPY_PARENT_PID, yet not a leftover
    # ls --json carries it as the contract says
    from nbtui.display.report import snapshot_json
    row = next(r for r in snapshot_json(snap)["terminals"] if r["name"] == name)
    assert row["pid"] == t.pid and row["memory_bytes"] >= JOB_MB * MB and row["server"] == "terms"


async def test_the_extension_names_each_shell_when_the_host_cannot(term_server):
    """Two terminals and a server nbtui does not know the process of (as for another host):
    the server extension names each terminal's shell; nothing is guessed."""
    a, b = open_terminal(term_server), open_terminal(term_server)
    await type_into(term_server, b, job_line("ext"))
    job = find_job("ext")
    async with Fleet([local_cfg(term_server, "far", pid=False)], host=None) as fleet:
        snap = await _snapshot_until(
            fleet, lambda s: any(t.name == b and t.usage and job.pid in t.usage.pids for t in s.terminals),
            "the extension's view of the terminal")
    tb = next(t for t in snap.terminals if t.name == b)
    ta = next(t for t in snap.terminals if t.name == a)
    assert tb.usage.source == "extension" and tb.usage.memory_bytes >= JOB_MB * MB
    assert tb.clients == 0 and tb.user
    assert ta.pid is not None and ta.pid != tb.pid and job.pid not in ta.usage.pids


async def test_two_new_shells_on_a_host_with_no_extension_are_not_guessed(tmp_path_factory):
    server = JupyterServer(tmp_path_factory.mktemp("jupyter-noext"), name="noext",
                           extra_args=("--ServerApp.jpserver_extensions=nbtui=False",)).start()
    try:
        open_terminal(server)
        open_terminal(server)
        wait_for(lambda: len([c for c in psutil.Process(server.pid).children()]) >= 2, 20, 0.1, "two shells")
        host = LocalHost()
        async with Fleet([local_cfg(server, "noext")], host=host) as fleet:
            snap = await fleet.snapshot()
            assert len(snap.terminals) == 2
            assert all(t.pid is None and t.usage is None and "cannot be told apart" in t.note for t in snap.terminals)
            # One goes: one terminal and one shell left, so that shell is known to be its.
            gone = snap.terminals[0].name
            server.api("DELETE", f"api/terminals/{gone}")
            wait_for(lambda: len(psutil.Process(server.pid).children()) == 1, 20, 0.1, "one shell")
            snap = await fleet.snapshot()
        assert [t.name for t in snap.terminals] != [gone] and len(snap.terminals) == 1
        t = snap.terminals[0]
        assert t.pid == psutil.Process(server.pid).children()[0].pid and t.usage.source == "local"
    finally:
        server.stop()


async def test_a_server_with_terminals_off_keeps_its_kernels(tmp_path_factory):
    server = JupyterServer(tmp_path_factory.mktemp("jupyter-noterm"), name="noterm",
                           extra_args=("--ServerApp.terminals_enabled=False",)).start()
    try:
        async with Fleet([local_cfg(server, "noterm")]) as fleet:
            snap = await fleet.snapshot()
        assert snap.servers[0].ok and snap.terminals == ()
    finally:
        server.stop()


def test_kill_terminal_ends_the_terminal_and_its_surviving_job(term_server):
    name = open_terminal(term_server)
    asyncio.run(type_into(term_server, name, job_line("kill", nohup=True)))
    job = find_job("kill")
    add_server("tk", term_server)
    target = f"terminal:tk/{name}"

    dry = run_nbtui("kill", target, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"terminal tk/{name}" in dry.stdout and str(job.pid) in dry.stdout
    assert any(t["name"] == name for t in term_server.api("GET", "api/terminals").json())

    r = run_nbtui("kill", target, "--yes", "--grace", "2", "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    out = json.loads(r.stdout)
    assert out["results"][0]["result"] == "ok"
    assert not any(t["name"] == name for t in term_server.api("GET", "api/terminals").json())
    wait_for(lambda: not job.is_running() or job.status() == psutil.STATUS_ZOMBIE, 15, 0.1, "the job to end")
    audit = (os.environ["NBTUI_STATE_DIR"] + "/audit.jsonl")
    lines = [json.loads(x) for x in open(audit, encoding="utf-8")]
    assert [(x["action"], x["result"]) for x in lines[-2:]] == [("kill-terminal", "acting"), ("kill", "ok")]
    assert lines[-1]["target"]["terminal"] == name and lines[-2]["target"]["pid"] == lines[-1]["target"]["pid"]
    assert job.pid in lines[-2]["target"]["children"]



def test_kill_terminal_whose_job_exits_with_it_is_a_success(term_server):
    """A job of the terminal's session (no nohup) ends with the terminal: the kill did what it
    was asked, so it says ok, exits 0 and its JSON says ok (issue 24: it said ok, exited 1)."""
    name = open_terminal(term_server)
    asyncio.run(type_into(term_server, name, job_line("hup")))
    job = find_job("hup")
    add_server("th", term_server)
    r = run_nbtui("kill", f"terminal:th/{name}", "--yes", "--grace", "2", "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    result = json.loads(r.stdout)["results"][0]
    assert (result["result"], result["ok"]) == ("ok", True)
    fates = {p["pid"]: p["fate"] for p in result["processes"]}
    assert fates.get(job.pid) in ("exited with its terminal", "exited after SIGTERM", "already gone")
    wait_for(lambda: not job.is_running() or job.status() == psutil.STATUS_ZOMBIE, 15, 0.1, "the job to end")


def test_terminal_targets_resolve_or_say_why():
    import datetime as dt

    from nbtui.core import targets
    from nbtui.core.errors import NbtuiError, NotFound, UsageError
    from nbtui.core.model import ServerInfo, Snapshot, Terminal
    now = dt.datetime.now(dt.timezone.utc)
    snap = Snapshot(generated_at=now, servers=(ServerInfo("hub/alice", "http://h/", "hub"),
                                               ServerInfo("down", "http://d/", "config", status="unreachable")),
                    terminals=(Terminal("hub/alice", "3", now),))
    t = targets.resolve(snap, "terminal:hub/alice/3")
    assert isinstance(t, targets.TerminalTarget) and str(t) == "terminal:hub/alice/3"
    with pytest.raises(UsageError, match="needs a kernel"):
        t.kernel  # rebind, migrate: a clear refusal
    for text, err, words in (("terminal:hub/alice/9", NotFound, "its terminals: 3"),
                             ("terminal:nope/1", NotFound, "unknown server"),
                             ("terminal:hub", UsageError, "terminal:SERVER/NAME"),
                             ("terminal:down/1", NbtuiError, "cannot resolve")):
        with pytest.raises(err, match=words):
            targets.resolve(snap, text)
    with pytest.raises(NotFound) as e:
        targets.resolve(snap, "terminal:hub/alice/\x1b[2J")
    assert "\x1b" not in str(e.value) and "'\\x1b[2J'" in str(e.value)


async def test_ledger_accounts_for_every_holder_with_real_processes(term_server):
    """Recorded NVML figures on real PIDs: a kernel, a terminal's job, a Jupyter leftover,
    a program that is not Jupyter, a PID of another namespace; the parts sum to used. The
    server has several terminals by now, new to this host view: their shells are named by
    the extension, confirmed here, and the job counts as its terminal's."""
    import subprocess
    import sys

    from nbtui.host import ledger
    from nbtui.display import gpu_line
    from nbtui.host.gpu import DeviceSample, GpuReading, ProcMemory
    from tests.test_host_usage import Recorded

    kid = term_server.start_kernel()
    kpid = term_server.kernel_pid(kid)
    name = open_terminal(term_server)
    await type_into(term_server, name, job_line("ledger"))
    job = find_job("ledger")
    sleeper = [sys.executable, "-c", "import time; time.sleep(600)"]
    left = subprocess.Popen(sleeper, env=dict(os.environ, JPY_SESSION_NAME="/tmp/gone.ipynb", JPY_PARENT_PID="1"))
    plain = subprocess.Popen(sleeper)
    try:
        ghost = 4_000_000  # above pid_max: a PID from another namespace
        reading = GpuReading(
            devices=(DeviceSample(0, "GPU-a", "NVIDIA H100", 10 * 1024 * MB, 80 * 1024 * MB, 5.0),),
            memory=(ProcMemory(0, kpid, 3000 * MB), ProcMemory(0, job.pid, 2000 * MB),
                    ProcMemory(0, left.pid, 1000 * MB), ProcMemory(0, plain.pid, 500 * MB),
                    ProcMemory(0, ghost, 100 * MB)))
        host = LocalHost(nvml=Recorded(reading), gpu_pid_check=lambda pid: None)
        async with Fleet([local_cfg(term_server)], host=host) as fleet:
            snap = await _snapshot_until(
                fleet, lambda s: any(t.name == name and t.pid for t in s.terminals)
                and any(p.pid == left.pid for p in s.processes)
                and any(k.kernel_id == kid and k.usage and k.usage.pid == kpid for k in s.kernels), "every holder")
        led = snap.gpus[0].ledger
        assert (led.kernels, led.terminals, led.leftovers, led.other, led.unattributed) == (
            3000 * MB, 2000 * MB, 1000 * MB, 500 * MB, 100 * MB)
        assert ledger.total(led) == snap.gpus[0].memory_used
        assert [(o.pid, o.user) for o in led.others] == [(plain.pid, psutil.Process().username())]
        t = next(t for t in snap.terminals if t.name == name)
        assert t.usage.gpu_memory_bytes == 2000 * MB
        k = next(k for k in snap.kernels if k.kernel_id == kid)
        assert k.user == psutil.Process().username()
        assert "kernels 2.9G, terminals 2.0G, leftovers 1000M, other 500M" in gpu_line.line(snap.gpus[0])
    finally:
        for p in (left, plain):
            p.kill()
            p.wait()
        term_server.shutdown_kernel(kid)
