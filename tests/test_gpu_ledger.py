"""The GPU ledger and gpu-idle, pure: recorded NVML samples in, who-holds-what out.

Recorded cases: several GPUs, MIG (one PID on two instances), a PID from another PID
namespace, a process that exits between NVML's two calls, per-process memory that NVML
cannot give, and the one-line rendering with a hostile command line.
"""

from __future__ import annotations

import datetime as dt

import pytest

from nbtui.core import orphans
from nbtui.host import ledger, wire
from nbtui.display import gpu_line
from nbtui.host.gpu import DeviceSample, GpuReading, ProcMemory
from nbtui.core.model import GpuDevice, Kernel, Process, Terminal, Usage
MIB = 1024**2
GIB = 1024**3

KINDS = {100: ledger.KERNELS, 101: ledger.KERNELS, 200: ledger.TERMINALS, 300: ledger.LEFTOVERS, 400: ledger.OTHER}
NAMES = {400: ("bob", "python train.py --epochs 90")}
TWO_GPUS = GpuReading(
    devices=(DeviceSample(0, "GPU-a", "NVIDIA H100", 12 * GIB, 80 * GIB, 40.0),
             DeviceSample(1, "GPU-b", "NVIDIA H100", 3 * GIB, 80 * GIB, 0.0)),
    memory=(ProcMemory(0, 100, 4 * GIB), ProcMemory(0, 101, 1 * GIB), ProcMemory(0, 200, 2 * GIB),
            ProcMemory(0, 300, 1 * GIB), ProcMemory(0, 400, 1536 * MIB), ProcMemory(0, 4_000_000, 256 * MIB),
            ProcMemory(1, 101, 2 * GIB)),
)


def test_parts_sum_to_nvml_used_on_every_gpu():
    books = ledger.build(TWO_GPUS, KINDS, NAMES)
    g0, g1 = books["0"], books["1"]
    assert (g0.kernels, g0.terminals, g0.leftovers, g0.other, g0.unattributed) == (
        5 * GIB, 2 * GIB, 1 * GIB, 1536 * MIB, 256 * MIB)
    assert g0.unassigned == 12 * GIB - (5 * GIB + 2 * GIB + 1 * GIB + 1536 * MIB + 256 * MIB)
    assert ledger.total(g0) == 12 * GIB and ledger.total(g1) == 3 * GIB
    assert (g1.kernels, g1.unassigned) == (2 * GIB, 1 * GIB)
    assert [(o.pid, o.user, o.command, o.memory_bytes) for o in g0.others] == [
        (400, "bob", "python train.py --epochs 90", 1536 * MIB)]
    assert g0.note is None


def test_a_pid_listed_twice_on_one_gpu_adds_up_in_its_ledger():
    # The same PID listed twice on one GPU adds up.
    r = GpuReading(devices=(DeviceSample(0, "GPU-a", "A100 MIG", 10 * GIB, 40 * GIB, None),),
                   memory=(ProcMemory(0, 100, 3 * GIB), ProcMemory(0, 100, 2 * GIB), ProcMemory(0, 400, 1 * GIB)))
    g = ledger.build(r, KINDS, NAMES)["0"]
    assert (g.kernels, g.other, g.unassigned) == (5 * GIB, 1 * GIB, 4 * GIB)
    assert ledger.total(g) == 10 * GIB


def test_another_namespace_and_a_process_that_exited_between_two_nvml_calls():
    # Memory info was read while pid 500 still ran (used includes it); the process list that
    # followed no longer has it: its bytes are NVML's but no process's -> unassigned. PID 600
    # is listed by NVML but not a process here (another namespace, or gone before our scan).
    r = GpuReading(devices=(DeviceSample(0, "GPU-a", "H100", 9 * GIB, 80 * GIB, 1.0),),
                   memory=(ProcMemory(0, 100, 4 * GIB), ProcMemory(0, 600, 1 * GIB)))
    g = ledger.build(r, KINDS, NAMES)["0"]
    assert (g.kernels, g.unattributed, g.unassigned) == (4 * GIB, 1 * GIB, 4 * GIB)
    assert ledger.total(g) == 9 * GIB
    # The other order: a process started between the calls is listed but not in `used`.
    r = GpuReading(devices=(DeviceSample(0, "GPU-a", "H100", 4 * GIB, 80 * GIB, 1.0),),
                   memory=(ProcMemory(0, 100, 4 * GIB), ProcMemory(0, 200, 1 * GIB)))
    g = ledger.build(r, KINDS, NAMES)["0"]
    assert g.unassigned == 0 and g.note and "1.0G more" in g.note


def test_unknown_figures_are_never_made_up():
    r = GpuReading(devices=(DeviceSample(0, "GPU-a", "H100", 9 * GIB, 80 * GIB, 1.0),
                            DeviceSample(1, "GPU-b", "H100", None, None, None),
                            DeviceSample(2, "GPU-c", "H100", 2 * GIB, 80 * GIB, None)),
                   memory=(ProcMemory(0, 100, None), ProcMemory(0, 200, 1 * GIB)),
                   memory_unknown=frozenset({"2"}))
    books = ledger.build(r, KINDS, NAMES)
    assert set(books) == {"0"}  # GPU 1: used unknown; GPU 2: who holds it unknown
    assert (books["0"].kernels, books["0"].terminals, books["0"].unassigned) == (0, 1 * GIB, 8 * GIB)


def test_one_line_names_the_other_holders_safely():
    g = ledger.build(TWO_GPUS, KINDS, {400: ("bob", "python \x1b[2Jevil.py")})["0"]
    d = GpuDevice(0, "GPU-a", "H100", 12 * GIB, 80 * GIB, 40.0, ledger=g)
    text = gpu_line.line(d)
    assert text.startswith("GPU 0 12.0G used: kernels 5.0G, terminals 2.0G, leftovers 1.0G, other 1.5G")
    assert "\x1b" not in text and "\\x1b[2Jevil.py (bob)" in text
    assert "unattributed 256M" in text and "unassigned" in text
    assert len(gpu_line.line(d, width=60)) <= 60
    assert "unknown" in gpu_line.line(GpuDevice(1, "GPU-b", "H100", 3 * GIB, 80 * GIB, None))


def test_the_ledger_crosses_the_extension_wire():
    g = ledger.build(TWO_GPUS, KINDS, NAMES)["0"]
    d = GpuDevice(0, "GPU-a", "H100", 12 * GIB, 80 * GIB, 40.0, ledger=g)
    body = wire.dump("gpu1", "0", {}, [d], None)
    _usage, devices, _note = wire.load("far", body)
    assert devices[0].ledger == g
    body["gpus"][0]["ledger"]["kernels"] = "lots"  # a part of the wrong type: the whole ledger is unknown
    assert wire.load("far", body)[1][0].ledger is None


# -- gpu-idle -------------------------------------------------------------------------------

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(autouse=True)
def _clock(still_clock):
    still_clock(T0)  # idle times are as of when asked: the hand-built kernels' stay as named


def ago(seconds: float) -> dt.datetime:
    return T0 - dt.timedelta(seconds=seconds)


def _kernel(gpu_bytes, sm):
    return Kernel("s", "k1", "python3", "idle", 0, ago(0.0),
                  usage=Usage("local", pid=1, gpu_memory_bytes=gpu_bytes, gpu_percent=sm))


def test_gpu_idle_needs_history_and_resets_on_any_use():
    tr = orphans.GpuIdleTracker(threshold=1800)
    at = lambda minutes: T0 + dt.timedelta(minutes=minutes)  # noqa: E731
    ks, _, _ = tr.apply(at(0), [_kernel(GIB, 0.0)], [], [])
    assert ks[0].gpu_idle_seconds is None and orphans.GPU_IDLE not in ks[0].orphan_reasons  # one sample: unknown
    ks, _, _ = tr.apply(at(20), [_kernel(GIB, 0.0)], [], [])
    assert ks[0].gpu_idle_seconds == 1200 and orphans.GPU_IDLE not in ks[0].orphan_reasons
    ks, _, _ = tr.apply(at(31), [_kernel(GIB, 0.0)], [], [])
    assert ks[0].gpu_idle_seconds == 31 * 60 and orphans.GPU_IDLE in ks[0].orphan_reasons
    assert "0 % SM utilisation for 31m" in orphans.explain_kernel(ks[0])
    ks, _, _ = tr.apply(at(32), [_kernel(GIB, 3.0)], [], [])  # it computed: not idle, count again
    assert ks[0].gpu_idle_seconds == 0.0 and orphans.GPU_IDLE not in ks[0].orphan_reasons
    ks, _, _ = tr.apply(at(33), [_kernel(GIB, None)], [], [])  # SM unknown: never a reason
    assert ks[0].gpu_idle_seconds is None
    ks, _, _ = tr.apply(at(34), [_kernel(0, 0.0)], [], [])  # holds no GPU memory: not gpu-idle
    assert ks[0].gpu_idle_seconds is None


def test_gpu_idle_for_terminals_and_leftovers_and_forgets_the_gone():
    tr = orphans.GpuIdleTracker(threshold=60)
    term = Terminal("s", "1", ago(10.0), pid=5, usage=Usage("local", pid=5, gpu_memory_bytes=GIB, gpu_percent=0.0))
    proc = Process(77, "ana", "python job.py", 1000.0, gpu_memory_bytes=GIB, gpu_percent=0.0,
                   orphan_reasons=(orphans.SERVER_GONE,))
    tr.apply(T0, [], [term], [proc])
    _, ts, ps = tr.apply(T0 + dt.timedelta(seconds=90), [], [term], [proc])
    assert ts[0].orphan_reasons == (orphans.GPU_IDLE,) and ps[0].orphan_reasons == (orphans.SERVER_GONE, orphans.GPU_IDLE)
    assert "at 0 % SM for 1m" in orphans.explain_process(ps[0])
    tr.apply(T0 + dt.timedelta(seconds=100), [], [], [])
    assert tr._since == {}


def test_an_idle_terminal_holding_gpu_memory_is_reported_like_an_idle_kernel():
    held = Usage("local", pid=5, gpu_memory_bytes=GIB, gpu_percent=0.0)
    idle = Terminal("s", "1", ago(7200.0), pid=5, usage=held)
    assert orphans.terminal_reasons(idle, idle_threshold=3600) == (orphans.TERMINAL_IDLE,)
    assert orphans.terminal_reasons(Terminal("s", "1", ago(60.0), usage=held), idle_threshold=3600) == ()
    assert orphans.terminal_reasons(Terminal("s", "1", ago(7200.0), usage=None), idle_threshold=3600) == ()
    idle = Terminal("s", "1", ago(7200.0), pid=5, usage=held, orphan_reasons=(orphans.TERMINAL_IDLE,))
    assert orphans.explain_terminal(idle) == (
        "terminal s/1 (shell pid 5): a terminal idle for 2h whose processes hold GPU memory; holds 1.0G of GPU memory")


# -- cull --gpu-idle ----------------------------------------------------------------------------


def test_cull_gpu_idle_selects_kernels_terminals_and_leftovers_idle_that_long():
    from nbtui.core.kinds import TERMINAL
    from nbtui.service.actions.cull import CullPolicy, cull_selects_process, cull_selects_terminal, plan_cull
    from nbtui.core.model import ServerInfo, Snapshot
    held = dict(gpu_memory_bytes=GIB, gpu_percent=0.0)
    k_idle = Kernel("far", "k-idle", "python3", "idle", 1, ago(10.0), usage=Usage("extension", pid=1, **held),
                    gpu_idle_seconds=3600.0)
    k_busy = Kernel("far", "k-busy", "python3", "idle", 1, ago(10.0), usage=Usage("extension", pid=2, **held),
                    gpu_idle_seconds=0.0)
    k_unknown = Kernel("far", "k-new", "python3", "idle", 1, ago(10.0), usage=Usage("extension", pid=3, **held))
    term = Terminal("far", "1", ago(10.0), pid=9, usage=Usage("extension", pid=9, **held), gpu_idle_seconds=2000.0)
    snap = Snapshot(generated_at=T0, servers=(ServerInfo("far", "http://gpu1:8888/", "config"),),
                    kernels=(k_idle, k_busy, k_unknown), terminals=(term,))
    policy = CullPolicy(gpu_idle=1800.0)
    assert policy.selects_anything
    plan = plan_cull(snap, policy)
    assert [s.target for s in plan] == ["far:k-idle", "terminal:far/1"]
    assert plan[1].kind == TERMINAL and plan[1].process is None  # not this host's: the server ends it
    assert "terminal far/1" in plan[1].describe()
    proc = Process(77, "ana", "python job.py", 1000.0, gpu_memory_bytes=GIB, gpu_idle_seconds=1900.0)
    assert cull_selects_process(proc, policy)
    assert not cull_selects_process(proc, CullPolicy(gpu_idle=7200.0))
    assert not cull_selects_terminal(term, CullPolicy(idle=1.0))  # --idle alone: never a terminal


def test_cull_gpu_idle_on_a_host_without_gpu_says_so_and_culls_nothing():
    from tests.conftest import run_nbtui

    r = run_nbtui("cull", "--gpu-idle", "30m", "--dry-run", "--no-discover")
    assert r.returncode == 0, r.stderr
    assert "nothing holds GPU memory" in r.stderr and "nothing to cull" in r.stdout
    bad = run_nbtui("cull", "--gpu-idle", "soon", "--dry-run", "--no-discover")
    assert bad.returncode == 2 and "--gpu-idle" in bad.stderr and "Traceback" not in bad.stderr


def test_extension_terminals_and_owners_trust_nothing():
    body = {"nbtui_usage": 1, "hostname": "gpu1", "kernels": {"k1": {"pid": 5, "user": "ana"}, "k2": {"user": 7}},
            "terminals": {"1": {"pid": 40, "pids": [40, 41, "x"], "memory_bytes": 10, "user": "bob", "clients": 2},
                          "2": {"pid": None, "clients": -1}, "3": "garbage", 4: {"pid": 1}},
            "gpus": []}
    extra = wire.load_extra("far", body)
    assert extra.users == {"k1": "ana"}
    t1 = extra.terminals["1"]
    assert (t1.pid, t1.user, t1.clients, t1.usage.pids, t1.usage.source, t1.usage.host) == (
        40, "bob", 2, (40, 41), "extension", "gpu1")
    assert extra.terminals["2"] == wire.ExtTerminal(None, None, None, None)
    assert set(extra.terminals) == {"1", "2"}
    assert wire.load_extra("far", {"nbtui_usage": 1, "kernels": {}}) == wire.Extra({}, {})  # an older extension


def test_rows_of_every_kind_are_planned_as_their_targets():
    import subprocess

    from nbtui.core.kinds import KERNEL, PROCESS, TERMINAL
    from nbtui.service.actions.kill import plan_rows
    from nbtui.core.model import ServerInfo, Snapshot
    job = subprocess.Popen(["sleep", "60"])
    try:
        k = Kernel("far", "k1", "python3", "idle", 0, ago(10.0))
        t = Terminal("far", "2", ago(10.0))
        p = Process(job.pid, None, "sleep 60", psutil_create_time(job.pid), orphan_reasons=(orphans.SERVER_GONE,))
        snap = Snapshot(generated_at=T0, servers=(ServerInfo("far", "http://gpu1:8888/", "config"),),
                        kernels=(k,), terminals=(t,), processes=(p,))
        steps = plan_rows(snap, [k, t, p])
        assert [(s.kind, s.target) for s in steps] == [
            (KERNEL, "far:k1"), (TERMINAL, "terminal:far/2"), (PROCESS, f"pid:{job.pid}")]
        assert steps[2].refusal is None and steps[2].reasons == (orphans.SERVER_GONE,)
    finally:
        job.kill()
        job.wait()


def psutil_create_time(pid: int) -> float:
    import psutil

    return psutil.Process(pid).create_time()
