"""The local host view against real Jupyter servers and real kernels: CPU and memory of a
kernel's whole process tree, GPU attribution from recorded NVML samples on real PIDs,
and the leftover child of a server killed with SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal

import psutil
import pytest

from nbtui.files.config import ServerConfig, Settings
from nbtui.service.fleet import Fleet
from nbtui.host.gpu import DeviceSample, GpuReading, ProcMemory, ProcUtil
from nbtui.host.procs import Facts, Proc, Scan, kernel_id_in
from nbtui.host.local import MIN_CPU_INTERVAL, LocalHost
from nbtui.core.model import Kernel
from tests.conftest import run_nbtui
from tests.jupyter import wait_for

MB = 1024**2
CHILD = ("import subprocess, sys\n"
         "_child = subprocess.Popen([sys.executable, '-c', "
         "'import time; b = bytearray({mb} * 1024 * 1024); time.sleep(600)'])\n")


def server_config(server, name="srv") -> ServerConfig:
    return ServerConfig(name=name, url=server.url, token_source="discovered", source="discovered",
                        token=server.token, pid=server.pid, timeout=5.0)


async def snapshot(server, host, name="srv"):
    async with Fleet([server_config(server, name)], host=host) as fleet:
        return await fleet.snapshot()


def kernel_of(snap, kid):
    return next(k for k in snap.kernels if k.kernel_id == kid)


class Recorded:
    """NVML replaced by a recorded reading (no GPU exists here)."""

    def __init__(self, reading):
        self.reading = reading

    def read(self):
        return self.reading


def child_pid(kernel_pid: int) -> int:
    return wait_for(lambda: next((c.pid for c in psutil.Process(kernel_pid).children()), None), 30, 0.1,
                    "the kernel's child")


# -- real kernels ---------------------------------------------------------------------------------


async def test_spinning_allocating_kernel_shows_cpu_and_memory(shared_jupyter):
    server = shared_jupyter
    kid = server.start_kernel()
    try:
        server.run_code(kid, "_block = bytearray(520 * 1024 * 1024)")
        server.start_code(kid, "while True: pass")
        host = LocalHost()
        async with Fleet([server_config(server)], host=host) as fleet:
            first = kernel_of(await fleet.snapshot(), kid)
            # The one-shot path primes CPU baselines before reading the servers: a number, not a fake 0.
            assert first.usage is not None and first.usage.source == "local"
            assert first.usage.cpu_percent is not None
            assert first.usage.memory_bytes >= 520 * MB
            assert first.usage.pid == server.kernel_pid(kid)
            assert first.usage.host

            async def spinning():
                u = kernel_of(await fleet.snapshot(), kid).usage
                return u.cpu_percent >= 40  # idle reads ~0; a busy shared machine may halve it

            # A shared 2-core machine may starve it for a moment: poll with a deadline.
            for _ in range(60):
                if await spinning():
                    break
                await asyncio.sleep(0.3)
            else:
                pytest.fail("a spinning kernel never showed >= 40% CPU in 60 refreshes")
    finally:
        server.shutdown_kernel(kid)


async def test_baselines_taken_as_ls_starts_measure_its_first_listing(shared_jupyter):
    """`nbtui ls` takes the CPU baselines as it starts (prime_early): its host view adopts
    them, scans for none of its own and waits only what is left of the interval, and a
    spinning kernel's first CPU % is measured from them."""
    from nbtui.host import local

    server = shared_jupyter
    kid = server.start_kernel()
    try:
        server.start_code(kid, "while True: pass")
        local.prime_early()
        host = LocalHost()
        assert LocalHost().early_wait() is None  # the baselines are one host view's
        left = host.early_wait()
        assert left is not None and 0.0 <= left <= MIN_CPU_INTERVAL
        assert host.prime() == 0.0  # adopted: no scan of its own
        local.prime_early()
        early = local._early
        host = LocalHost()
        assert early is not None and host.table is early.table
        async with Fleet([server_config(server)], host=host) as fleet:
            usage = kernel_of(await fleet.snapshot(), kid).usage
        assert usage is not None and usage.cpu_percent is not None and usage.cpu_percent > 0
    finally:
        server.shutdown_kernel(kid)


async def test_tree_sums_the_kernel_and_its_child(shared_jupyter):
    server = shared_jupyter
    kid = server.start_kernel()
    try:
        server.run_code(kid, CHILD.format(mb=300))
        kpid = server.kernel_pid(kid)
        cpid = child_pid(kpid)
        wait_for(lambda: psutil.Process(cpid).memory_info().rss >= 300 * MB, 30, 0.1, "the child to allocate")
        snap = await snapshot(server, LocalHost())
        u = kernel_of(snap, kid).usage
        assert u.pid == kpid
        assert set(u.pids) == {kpid, cpid}
        kernel_rss = psutil.Process(kpid).memory_info().rss
        assert u.memory_bytes >= 300 * MB + kernel_rss * 0.9
        assert u.cpu_percent is not None
        # The child of a live kernel is not a leftover.
        assert cpid not in {p.pid for p in snap.processes}
        assert kpid not in {p.pid for p in snap.processes}
    finally:
        server.shutdown_kernel(kid)


async def test_recorded_gpu_samples_attribute_to_real_trees(shared_jupyter):
    server = shared_jupyter
    kid = server.start_kernel()
    try:
        server.run_code(kid, CHILD.format(mb=1))
        kpid = server.kernel_pid(kid)
        cpid = child_pid(kpid)
        other = os.getpid()  # a local program that is not Jupyter
        ghost = 4_000_000  # above pid_max: a PID from another namespace
        reading = GpuReading(
            devices=(DeviceSample(0, "GPU-aaaa", "NVIDIA H100", 6 * 1024 * MB, 80 * 1024 * MB, 20.0),),
            memory=(ProcMemory(0, kpid, 2566 * MB), ProcMemory(0, cpid, 1542 * MB),
                    ProcMemory(0, other, 7 * MB), ProcMemory(0, ghost, 11 * MB)),
            util=(ProcUtil(0, kpid, 12.0, 1), ProcUtil(0, cpid, 3.0, 1)),
        )
        snap = await snapshot(server, LocalHost(nvml=Recorded(reading), gpu_pid_check=lambda pid: None))
        u = kernel_of(snap, kid).usage
        assert u.gpu_memory_bytes == (2566 + 1542) * MB
        assert u.gpu_percent == 15.0
        assert [(g.index, g.uuid, g.memory_bytes) for g in u.gpus] == [(0, "GPU-aaaa", (2566 + 1542) * MB)]
        assert {(x.pid, x.memory_bytes) for x in snap.unattributed_gpu} == {(other, 7 * MB), (ghost, 11 * MB)}
        assert snap.gpus[0].memory_total == 80 * 1024 * MB and snap.gpu_note is None
        assert snap.gpus[0].idle_kernel_memory == 0  # the kernel was just used
        # With an idle threshold it has passed, its whole tree's GPU memory counts as idle.
        idle_host = LocalHost(Settings(orphan_idle=0.001), nvml=Recorded(reading), gpu_pid_check=lambda pid: None)
        snap = await snapshot(server, idle_host)
        assert snap.gpus[0].idle_kernel_memory == (2566 + 1542) * MB

        # The same PIDs, but the processes here have no NVIDIA device open: NVML speaks of
        # namesakes in another PID namespace. Never guessed onto the kernel.
        snap = await snapshot(server, LocalHost(nvml=Recorded(reading), gpu_pid_check=lambda pid: False))
        u = kernel_of(snap, kid).usage
        assert u.gpu_memory_bytes == 0
        assert {x.pid for x in snap.unattributed_gpu} == {kpid, cpid, other, ghost}
    finally:
        server.shutdown_kernel(kid)


async def test_no_gpu_here_gives_null_gpu_fields_with_a_reason(shared_jupyter):
    kid = shared_jupyter.start_kernel()
    try:
        shared_jupyter.run_code(kid, "1")
        snap = await snapshot(shared_jupyter, LocalHost())
        u = kernel_of(snap, kid).usage
        assert u.memory_bytes > 0
        assert u.gpu_memory_bytes is None and u.gpu_percent is None and u.gpus == ()
        assert snap.gpu_note and "gpu: " + snap.gpu_note in (u.note or "")
    finally:
        shared_jupyter.shutdown_kernel(kid)


async def test_kernel_gone_between_listing_and_sampling(shared_jupyter):
    server = shared_jupyter
    kid = server.start_kernel()
    server.run_code(kid, "1")
    kpid = server.kernel_pid(kid)
    host = LocalHost()
    listed = Kernel(server="srv", kernel_id=kid, kernel_name="python3", state="idle", connections=0,
                    last_activity=None)
    ghost = Kernel(server="srv", kernel_id="0000dead-0000-0000-0000-000000000000", kernel_name="python3",
                   state="idle", connections=0, last_activity=None)
    server.shutdown_kernel(kid)
    wait_for(lambda: not psutil.pid_exists(kpid) or psutil.Process(kpid).status() == psutil.STATUS_ZOMBIE,
             30, 0.1, "the kernel to exit")
    sample = host.sample([], [listed, ghost])
    assert sample.usage == {}


def test_cli_ls_json_fills_usage_for_a_discovered_server(shared_jupyter):
    server = shared_jupyter
    session = server.create_session("cli.ipynb")
    kid = session["kernel"]["id"]
    try:
        server.run_code(kid, "_b = bytearray(50 * 1024 * 1024)")
        r = run_nbtui("ls", "--json", env={"JUPYTER_RUNTIME_DIR": str(server.runtime_dir)})
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        k = next(k for k in data["kernels"] if k["kernel_id"] == kid)
        assert k["pid"] == server.kernel_pid(kid)
        assert k["usage_source"] == "local"
        assert k["cpu_percent"] is not None  # primed, never a fake 0 from one sample
        assert k["memory_bytes"] >= 50 * MB
        assert k["gpu_memory_bytes"] is None and data["gpu_note"]
        assert data["servers"][0]["usage_source"] == "local"
        table = run_nbtui("ls", env={"JUPYTER_RUNTIME_DIR": str(server.runtime_dir)})
        row = next(line for line in table.stdout.splitlines() if kid[:8] in line)
        assert re.search(r" \d+M ", row), row  # a MEM figure in the table (binary units)
    finally:
        server.shutdown_kernel(kid)


# -- the leftover child of a dead server ----------------------------------------------------------


def test_child_of_a_killed_server_is_a_leftover_with_its_notebook(jupyter):
    server = jupyter
    server.write_notebook("work/gpu.ipynb")
    session = server.create_session("work/gpu.ipynb")
    kid = session["kernel"]["id"]
    server.run_code(kid, CHILD.format(mb=64))
    kpid = server.kernel_pid(kid)
    cpid = child_pid(kpid)
    env = {"JUPYTER_RUNTIME_DIR": str(server.runtime_dir)}
    try:
        server.kill_hard()
        # ipykernel's parent poller ends the kernel; the child lives on.
        wait_for(lambda: not psutil.pid_exists(kpid), 30, 0.2, "the kernel to exit after its server")
        assert psutil.pid_exists(cpid)
        r = run_nbtui("ls", "--orphans", "--json", env=env)
        assert r.returncode in (0, 4), r.stderr
        data = json.loads(r.stdout)
        x = next((p for p in data["processes"] if p["pid"] == cpid), None)
        assert x is not None, data["processes"]
        assert x["notebook"] == str(server.root_dir / "work" / "gpu.ipynb")
        assert x["server_pid"] == server.pid
        assert set(x["orphan_reasons"]) == {"server-gone", "kernel-gone"}
        assert x["memory_bytes"] >= 64 * MB
        assert x["create_time"] == pytest.approx(psutil.Process(cpid).create_time(), abs=0.01)
        assert x["user"] and "bytearray" in x["cmdline"]
        assert x["gpu_memory_bytes"] is None  # no GPU here: unknown, not 0
    finally:
        try:
            os.kill(cpid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# -- pure: the process forest ---------------------------------------------------------------------


def _proc(pid, ppid, ctime=100.0, cmd=(), session=None, parent=None, readable=True):
    facts = Facts(tuple(cmd), "ana", kernel_id_in(cmd), session, parent, readable)
    return Proc(pid, ppid, ctime, facts)


def test_scan_finds_kernel_roots_under_wrappers_and_descendants():
    conn = "/run/jupyter/kernel-80442938-aaaa.json"
    scan = Scan({
        1: _proc(1, 0),
        420: _proc(420, 1, cmd=("jupyter-server",)),
        430: _proc(430, 420, cmd=("conda", "run", "python", "-m", "ipykernel", "-f", conn), parent=420),
        431: _proc(431, 430, cmd=("python", "-m", "ipykernel", "-f", conn), parent=420, session="/w/a.ipynb"),
        464: _proc(464, 431, cmd=("python", "-c", "work"), readable=False),
        500: _proc(500, 1, cmd=("python", "-c", "left"), session="/w/b.ipynb", parent=999),
        600: _proc(600, 1, cmd=("vim",)),
    }, time=0.0)
    assert scan.kernel_roots() == {"80442938-aaaa": 430}
    assert sorted(scan.tree(430)) == [430, 431, 464]
    assert scan.jupyter_pids() == {430, 431, 464, 500}
    assert scan.kernel_id_of(464) == "80442938-aaaa"  # from an ancestor's command line
    assert scan.kernel_id_of(500) is None
    assert scan.tree(12345) == []


def test_a_process_naming_a_file_in_another_users_server_folder_is_not_that_servers_kernel(tmp_path):
    """The connection-file route of 'whose kernel is this process': its command line names a
    file in a server's runtime folder. That line is its owner's to write, so another user's
    process naming root's runtime folder (and, rewriting its argv, root's kernel id before
    root's kernel started) is not root's server's kernel: usage, kill and cull would follow it."""
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    (runtime / "jpserver-420.json").write_text("{}")
    conn = str(runtime / "kernel-k1.json")

    def proc(pid, ppid, user, cmd):
        return Proc(pid, ppid, 50.0, Facts(tuple(cmd), user, kernel_id_in(cmd)))

    scan = Scan({
        1: proc(1, 0, "root", ()),
        420: proc(420, 1, "root", ("jupyter-server",)),
        900: proc(900, 1, "mallory", ("python", "-m", "ipykernel", "-f", conn)),
        901: proc(901, 1, "root", ("python", "-m", "ipykernel", "-f", conn)),
    }, time=0.0)
    assert not scan.belongs_to_server(900, 420)
    assert scan.belongs_to_server(901, 420)  # its own user's process: the folder still decides


def test_a_scan_reads_the_figures_psutil_reads():
    """On Linux a scan reads /proc/PID/stat itself: parent, create time (the process's
    identity), CPU seconds and RSS are psutil's own, and a zombie is left out."""
    import subprocess
    import sys

    from nbtui.host import procs
    if not procs._FAST:
        pytest.skip("the /proc scan is Linux's")
    quiet = subprocess.Popen(["sleep", "60"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        wait_for(lambda: psutil.Process(dead.pid).status() == psutil.STATUS_ZOMBIE, 30, 0.05, "a zombie")
        table = procs.ProcessTable()
        scan = table.scan()
        p = psutil.Process(quiet.pid)
        got = scan.procs[quiet.pid]
        assert (got.ppid, got.create_time) == (os.getpid(), p.create_time())
        assert got.facts.cmdline == ("sleep", "60")
        t = p.cpu_times()
        assert scan.cpu[quiet.pid][0] == t.user + t.system
        assert dead.pid not in scan.procs
        assert table.measure(scan, [quiet.pid])[quiet.pid].memory_bytes == p.memory_info().rss
    finally:
        quiet.kill()
        quiet.wait()
        dead.wait()


def test_a_host_view_without_cpu_takes_no_baselines_and_waits_for_none():
    """cull and kill show no CPU %: their host view neither scans for CPU baselines nor asks
    the fleet to wait for a second sample (a view that shows CPU % does both)."""
    class Counted:
        scans = 0

        def scan(self):
            Counted.scans += 1
            return Scan({1: _proc(1, 0), 420: _proc(420, 1, cmd=("jupyter-server",))}, time=0.0)

        def measure(self, scan, pids):
            return {}

    assert LocalHost(table=Counted(), cpu=False).prime() == 0.0  # type: ignore[arg-type]
    assert Counted.scans == 0
    assert LocalHost(table=Counted()).prime() == MIN_CPU_INTERVAL  # type: ignore[arg-type]
    assert Counted.scans == 1


def test_scan_alive_checks_identity_by_create_time():
    scan = Scan({7: _proc(7, 1, ctime=2000.0)}, time=0.0)
    assert scan.alive(7)
    assert scan.alive(7, born_before=2000.0)
    assert not scan.alive(7, born_before=1000.0)  # PID 7 was reused after our process started
    assert not scan.alive(8)


def test_kernel_id_in_command_lines():
    assert kernel_id_in(["python", "-m", "ipykernel_launcher", "-f", "/r/kernel-80442938-5a2b.json"]) == "80442938-5a2b"
    assert kernel_id_in(["python", "--f=/r/kernel-abc.json"]) == "abc"
    assert kernel_id_in(["python", "kernel.json"]) is None
    assert kernel_id_in(["jupyter-console", "--existing", "/r/kernel-abc.json"]) is None
    assert kernel_id_in(["jupyter-console", "--existing=/r/kernel-abc.json"]) is None
    assert kernel_id_in([]) is None


def test_leftover_reasons_from_a_recorded_forest():
    """Which leftover is an orphan, and why, from a recorded process forest (no guessing:
    where nobody can tell, no reason is given)."""
    from nbtui.core import orphans
    from nbtui.core.model import ServerInfo, Session
    host = LocalHost(nvml=Recorded(GpuReading(note="no GPU")))
    scan = Scan({
        1: _proc(1, 0),
        420: _proc(420, 1, ctime=10.0, cmd=("jupyter-server",)),
        777: _proc(777, 1, ctime=10.0, cmd=("jupyter-server", "--other-user")),
        502: _proc(502, 420, cmd=("python", "-f", "/r/kernel-k2.json"), parent=420),
        503: _proc(503, 420, ctime=100.0, cmd=("python", "-f", "/r/kernel-k3.json"), parent=420, session="/w/c.ipynb"),
        506: _proc(506, 420, cmd=("python", "-f", "/r/kernel-k9.json"), parent=420),
        500: _proc(500, 1, cmd=("python", "-c", "x"), session="/w/a.ipynb", parent=333),
        501: _proc(501, 1, cmd=("python", "-c", "y"), session="/w/b.ipynb", parent=420),
        504: _proc(504, 1, ctime=200.0, cmd=("nohup", "train"), session="/w/c.ipynb", parent=420),
        505: _proc(505, 1, ctime=50.0, cmd=("worker",), session="/w/c.ipynb", parent=420),
        507: _proc(507, 1, cmd=("worker",), session="/w/d.ipynb", parent=777),
    }, time=0.0)
    servers = [ServerInfo(name="s", url="http://127.0.0.1:1/", source="discovered", pid=420)]

    def kernel(kid, path=None):
        return Kernel(server="s", kernel_id=kid, kernel_name="python3", state="idle", connections=0,
                      last_activity=None,
                      session=Session(id="x", path=path, name=path, type="notebook") if path else None)

    kernels = [kernel("k2"), kernel("k3", "c.ipynb")]
    pids = [500, 501, 502, 504, 505, 506, 507]
    procs = {p.pid: p for p in orphans.judge_processes(*host._leftovers(scan, pids, {}, GpuReading(), {}, servers, kernels))}
    # Its server and its kernel are gone.
    assert procs[500].orphan_reasons == ("server-gone", "kernel-gone")
    assert procs[500].notebook == "/w/a.ipynb" and procs[500].server_pid == 333
    # Its server lives and lists no kernel for its notebook.
    assert procs[501].orphan_reasons == ("kernel-gone",)
    # A kernel process its live, read server does not list.
    assert procs[506].orphan_reasons == ("kernel-gone",) and procs[506].kernel_id == "k9"
    assert procs[502].orphan_reasons == () and procs[502].kernel_id == "k2"
    # Same notebook as a live kernel: younger than it, maybe let go by it (nohup): unknown;
    # older than it, it belonged to a kernel before a restart: gone.
    assert procs[504].orphan_reasons == ()
    assert procs[505].orphan_reasons == ("kernel-gone",)
    # Its server lives but was not read: nobody can say.
    assert procs[507].orphan_reasons == ()
    assert procs[500].cpu_percent is None and procs[500].memory_bytes is None  # not measured: unknown


def test_baselines_a_command_did_not_use_do_not_pass_to_a_later_host_view():
    """`nbtui ls` that fails before its host view exists (a bad option, a bad config) leaves
    no baselines for a host view made later in the same process."""
    from nbtui import cli
    from nbtui.host import local

    for argv in (["ls", "--no-such-option"], ["ls", "--config", "/nonexistent/nbtui"]):
        try:
            cli.main(argv)
        except SystemExit:
            pass
        assert local._early is None, argv
