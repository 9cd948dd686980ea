"""Observing does not disturb: polling usage never moves a kernel's last_activity or
connections. Only an explicit probe (control channel) touches a kernel.

The issue states the property as 20 runs over 60 s; here it is 20 polls (local host view
and server extension alternating, plus one real `nbtui ls --json`) over about 10 s, to
keep the suite lean. The property is the same: not one field may move.
"""

from __future__ import annotations

import asyncio
import time

import psutil
import pytest

from nbtui.files.config import ServerConfig
from nbtui.service.fleet import Fleet
from nbtui.host.local import LocalHost
from nbtui.jupyter.probe import probe_missing, usage_from_reply
from tests.conftest import run_nbtui
from tests.jupyter import JupyterServer, wait_for
from tests.test_usage_extension import NO_EXTENSION

POLLS = 20
SPAN = 10.0  # seconds


def cfg(server, name, local: bool) -> ServerConfig:
    return ServerConfig(name=name, url=server.url, token_source="discovered", source="discovered" if local else "config",
                        token=server.token, pid=server.pid if local else None, timeout=10.0)


def kernel_fields(server) -> dict:
    return {k["id"]: (k["last_activity"], k["connections"], k["execution_state"]) for k in server.kernels()}


def settled(server):
    """The kernels' fields once they stop moving: every kernel process done starting (its
    CPU time flat for a second; a kernel's start-up publishes a message that moves
    last_activity) and the fields unchanged over the same second."""
    before: tuple = ()

    def state():
        fields = kernel_fields(server)
        cpu = {}
        for kid in fields:
            try:
                cpu[kid] = sum(psutil.Process(server.kernel_pid(kid)).cpu_times()[:2])
            except psutil.Error:
                cpu[kid] = None
        return fields, cpu

    def same():
        nonlocal before
        now = state()
        stable = now == before
        before = now
        return stable

    wait_for(same, 60, 1.0, "kernels to finish starting and their fields to settle")
    return before[0]


async def test_twenty_polls_leave_last_activity_and_connections_alone(jupyter):
    server = jupyter
    server.write_notebook("a.ipynb")
    used = server.create_session("a.ipynb")["kernel"]["id"]
    server.run_code(used, "x = 1")
    bare = server.start_kernel()  # started, never connected: stays "starting"
    before = settled(server)
    assert set(before) == {used, bare}

    local = Fleet([cfg(server, "here", local=True)], host=LocalHost())
    remote = Fleet([cfg(server, "far", local=False)], host=None)  # usage from the server extension
    sources = set()
    async with local, remote:
        start = time.monotonic()
        for i in range(POLLS - 1):
            snap = await (local if i % 2 == 0 else remote).snapshot()
            assert {k.kernel_id for k in snap.kernels} == {used, bare}
            sources |= {k.usage.source for k in snap.kernels if k.usage}
            await asyncio.sleep(max(0.0, start + SPAN * (i + 1) / POLLS - time.monotonic()))
    r = run_nbtui("ls", "--json", env={"JUPYTER_RUNTIME_DIR": str(server.runtime_dir)})
    assert r.returncode == 0, r.stderr
    assert sources == {"local", "extension"}  # both sources really measured
    assert kernel_fields(server) == before


@pytest.fixture(scope="module")
def noext_server(tmp_path_factory):
    server = JupyterServer(tmp_path_factory.mktemp("jupyter-probe"), name="probe", extra_args=NO_EXTENSION)
    server.start()
    yield server
    server.stop()


async def test_probe_fills_what_no_other_source_covers_and_says_it_touches(noext_server):
    server = noext_server
    kid = server.create_session("p.ipynb")["kernel"]["id"]
    server.run_code(kid, "_b = bytearray(30 * 1024 * 1024)")
    before = settled(server)[kid]
    async with Fleet([cfg(server, "far", local=False)], host=None) as fleet:
        snap = await fleet.snapshot()
        assert next(k for k in snap.kernels if k.kernel_id == kid).usage is None
        probed, errors = await probe_missing(fleet, snap, timeout=20)
    assert errors == []
    u = next(k for k in probed.kernels if k.kernel_id == kid).usage
    assert u.source == "control"
    assert u.pid == server.kernel_pid(kid)
    assert u.memory_bytes >= 30 * 1024 * 1024
    assert u.cpu_percent is not None
    assert u.gpu_memory_bytes is None  # the kernel's reply has no GPU field
    after = settled(server)[kid]
    assert after[1] == before[1] == 0  # nbtui's socket closed: no connection left behind
    assert after[0] != before[0]  # as documented: a probe resets the kernel's idle time


def test_a_first_reply_alone_never_gives_a_cpu_figure():
    u = usage_from_reply({"pid": 5, "hostname": "h", "kernel_cpu": 0.0, "kernel_memory": 1000}, None)
    assert u.cpu_percent is None and u.memory_bytes == 1000 and u.pid == 5
    u = usage_from_reply({"kernel_cpu": 0.0}, {"pid": 5, "kernel_cpu": 99.0, "kernel_memory": "x"})
    assert u.cpu_percent == 99.0 and u.memory_bytes is None


def test_probe_flag_on_the_command_line(shared_jupyter):
    # Every kernel here is covered by the local view: --probe asks none of them.
    kid = shared_jupyter.start_kernel()
    try:
        r = run_nbtui("ls", "--probe", "--json", env={"JUPYTER_RUNTIME_DIR": str(shared_jupyter.runtime_dir)})
        assert r.returncode == 0, r.stderr
        assert r.stderr == ""
    finally:
        shared_jupyter.shutdown_kernel(kid)
