"""GPU attribution, pure: recorded NVML samples in, per-tree and per-GPU figures out.

No GPU exists here, so NVML itself is replaced by a recorded module (``FakeNvml``) that
answers as a driver does, errors included. The real binding's C calls, struct layouts and
errors are exercised end to end against the stand-in libnvidia-ml (test_gpu_standin.py);
the device check (bench/gpu_check.py) is where this meets a real GPU.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from nbtui.host import gpu
from nbtui.host.gpu import DeviceSample, GpuReading, ProcMemory, ProcUtil
GIB = 1024**3

# Recorded on an H100 (DESIGN.md): kernel 4531 holds 2566 MiB, its child 4600 holds 1542 MiB;
# 9999 is a PID from another namespace.
H100 = DeviceSample(0, "GPU-aaaa", "NVIDIA H100 80GB HBM3", 5 * GIB, 80 * GIB, 37.0)
A100 = DeviceSample(1, "GPU-bbbb", "NVIDIA A100", 1 * GIB, 40 * GIB, 0.0)
READING = GpuReading(
    devices=(H100, A100),
    memory=(
        ProcMemory(0, 4531, 2566 * 1024**2),
        ProcMemory(0, 4600, 1542 * 1024**2),
        ProcMemory(1, 4600, 512 * 1024**2),
        ProcMemory(0, 9999, 123),
    ),
    util=(
        ProcUtil(0, 4531, 30.0, 1_000_000),
        ProcUtil(0, 4531, 50.0, 1_200_000),
        ProcUtil(0, 4600, 5.0, 1_200_000),
    ),
)


def test_tree_sums_memory_per_gpu_over_every_pid():
    t = gpu.tree_gpu(READING, [4531, 4600, 77])
    by_index = {g.index: g for g in t.gpus}
    assert by_index[0].memory_bytes == (2566 + 1542) * 1024**2
    assert by_index[0].uuid == "GPU-aaaa"
    assert by_index[1].memory_bytes == 512 * 1024**2
    assert t.memory_bytes == (2566 + 1542 + 512) * 1024**2
    # SM %: mean over each PID's samples (40 for 4531, 5 for 4600), summed over the tree.
    assert by_index[0].sm_percent == 45.0
    assert by_index[1].sm_percent == 0.0  # on the GPU, no samples: measured idle
    assert t.percent == 45.0


def test_tree_on_no_gpu_holds_a_measured_zero_but_no_gpu_readable_is_unknown():
    t = gpu.tree_gpu(READING, [12345])
    assert (t.memory_bytes, t.percent, t.gpus) == (0, 0.0, ())
    none = gpu.tree_gpu(GpuReading(note="no NVIDIA driver library (libnvidia-ml) on this host"), [4531])
    assert (none.memory_bytes, none.percent) == (None, None)


def test_memory_not_available_for_a_pid_makes_the_sum_unknown():
    r = GpuReading(devices=(H100,), memory=(ProcMemory(0, 1, 100), ProcMemory(0, 2, None)))
    assert gpu.tree_gpu(r, [1]).memory_bytes == 100
    assert gpu.tree_gpu(r, [1, 2]).memory_bytes is None


def test_utilisation_not_supported_is_unknown_not_zero():
    r = GpuReading(devices=(H100,), memory=(ProcMemory(0, 1, 100),), util_unknown=frozenset({"0"}))
    t = gpu.tree_gpu(r, [1])
    assert t.memory_bytes == 100
    assert t.percent is None and t.gpus[0].sm_percent is None


def test_per_process_memory_unreadable_gpu_makes_tree_memory_unknown():
    r = GpuReading(devices=(H100, A100), memory=(ProcMemory(1, 1, 100),), memory_unknown=frozenset({"0"}))
    assert gpu.tree_gpu(r, [1]).memory_bytes is None
    assert gpu.tree_gpu(r, [2]).memory_bytes is None


def test_same_pid_on_two_mig_instances_of_one_gpu_adds_up():
    r = GpuReading(devices=(H100,), memory=(ProcMemory(0, 1, 100), ProcMemory(0, 1, 50)))
    assert gpu.tree_gpu(r, [1]).memory_bytes == 150


def test_unattributed_is_every_pid_not_attributed():
    un = gpu.unattributed(READING, attributed_pids=[4531, 4600])
    assert [(u.gpu_index, u.pid, u.memory_bytes) for u in un] == [(0, 9999, 123)]


def test_host_summary_counts_memory_of_idle_kernels_per_gpu():
    devs = gpu.devices(READING, idle_trees=[[4600]], host="gpu1")
    d0, d1 = devs
    assert (d0.name, d0.memory_used, d0.memory_total, d0.utilization) == ("NVIDIA H100 80GB HBM3", 5 * GIB, 80 * GIB, 37.0)
    assert d0.idle_kernel_memory == 1542 * 1024**2
    assert d1.idle_kernel_memory == 512 * 1024**2
    assert d0.host == "gpu1"
    assert gpu.devices(READING)[0].idle_kernel_memory == 0


@pytest.mark.parametrize("size", [16, 24, 32])
def test_the_probe_tells_the_record_size_from_the_bytes_the_driver_wrote(size):
    a, b = bytearray(b"\xa5" * 400), bytearray(b"\x5a" * 400)
    a[:3 * size] = b[:3 * size] = bytes(range(3 * size))  # three records, alike in both calls
    assert gpu._probe(bytes(a), bytes(b), 3) == size


def test_a_probe_that_cannot_tell_says_so():
    assert gpu._probe(b"\xa5" * 100, b"\x5a" * 100, 2) is None  # nothing written
    a, b = bytearray(b"\xa5" * 100), bytearray(b"\x5a" * 100)
    a[:40] = b[:40] = bytes(40)
    assert gpu._probe(bytes(a), bytes(b), 2) is None  # 20-byte records: no layout NVML has


# -- the NVML reader, against a recorded driver --------------------------------------------------


class NVMLError(Exception):
    def __init__(self, value=999):
        self.value = value


def _error(name):
    return type(name, (NVMLError,), {})


class FakeNvml:
    """Answers like pynvml does, from recorded data; ``fail`` maps a function name to an error."""

    NVML_DEVICE_MIG_ENABLE = 1

    def __init__(self, devices=(H100,), procs=None, samples=None, fail=None, mig=None):
        self.devices = list(devices)
        now_us = int(time.time() * 1e6)  # NVML's sample timestamps are CPU time in µs since the epoch
        self.procs = procs or {0: [SimpleNamespace(pid=4531, usedGpuMemory=2566 * 1024**2)]}
        self.samples = samples if samples is not None else {0: [SimpleNamespace(pid=4531, smUtil=40, timeStamp=now_us)]}
        self.fail = dict(fail or {})
        self.mig = mig or {}
        self.calls: list = []
        self.init_calls = 0

    def _maybe_fail(self, fn):
        self.calls.append(fn)
        if fn in self.fail:
            raise self.fail[fn]

    def nvmlInit(self):
        self.init_calls += 1
        self._maybe_fail("nvmlInit")

    def nvmlDeviceGetCount(self):
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i):
        return ("gpu", i)

    def nvmlDeviceGetUUID(self, h):
        return self.devices[h[1]].uuid.encode()

    def nvmlDeviceGetName(self, h):
        return self.devices[h[1]].name

    def nvmlDeviceGetMemoryInfo(self, h):
        self._maybe_fail("nvmlDeviceGetMemoryInfo")
        d = self.devices[h[1]]
        return SimpleNamespace(used=d.memory_used, total=d.memory_total)

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=self.devices[h[1]].utilization)

    def nvmlDeviceGetMigMode(self, h):
        self._maybe_fail("nvmlDeviceGetMigMode")
        return (1, 1) if h[1] in self.mig else (0, 0)

    def nvmlDeviceGetMaxMigDeviceCount(self, h):
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h, j):
        if j >= len(self.mig[h[1]]):
            raise _error("NVMLError_NotFound")(6)
        return ("mig", h[1], j)

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        self._maybe_fail("nvmlDeviceGetComputeRunningProcesses")
        if h[0] == "mig":
            return self.mig[h[1]][h[2]]
        return self.procs.get(h[1], [])

    def nvmlDeviceGetProcessUtilization(self, h, last_seen):
        self._maybe_fail("nvmlDeviceGetProcessUtilization")
        out = [s for s in self.samples.get(h[1], []) if s.timeStamp > last_seen]
        if not out:
            raise _error("NVMLError_NotFound")(6)
        return out


def test_reader_reads_memory_and_utilisation_and_initialises_once():
    nv = FakeNvml()
    reader = gpu.Nvml(nv)
    r = reader.read()
    assert r.note is None
    assert [(d.index, d.uuid, d.name) for d in r.devices] == [(0, "GPU-aaaa", "NVIDIA H100 80GB HBM3")]
    assert r.memory == (ProcMemory(0, 4531, 2566 * 1024**2),)
    assert [(u.pid, u.sm_percent) for u in r.util] == [(4531, 40.0)]
    # The next read asks only for samples after the newest one seen: none, a measured 0.
    r2 = reader.read()
    assert r2.util == () and not r2.util_unknown
    assert gpu.tree_gpu(r2, [4531]).percent == 0.0
    assert nv.init_calls == 1


def test_no_library_is_one_note_and_never_retried():
    nv = FakeNvml(fail={"nvmlInit": _error("NVMLError_LibraryNotFound")(12)})
    reader = gpu.Nvml(nv)
    for _ in range(3):
        r = reader.read()
        assert not r.available and r.note == "no NVIDIA driver library (libnvidia-ml) on this host"
    assert nv.init_calls == 1


def test_the_real_nvml_here_says_why_there_is_no_gpu():
    # This machine has no NVIDIA driver: the real pynvml must give a reason, not raise.
    r = gpu.Nvml().read()
    assert not r.available
    assert r.note


def test_no_gpu_and_driver_not_loaded():
    assert gpu.Nvml(FakeNvml(devices=[])).read().note == "no NVIDIA GPU on this host"
    nv = FakeNvml(fail={"nvmlInit": _error("NVMLError_DriverNotLoaded")(9)})
    assert gpu.Nvml(nv).read().note == "the NVIDIA driver is not loaded"


def test_gpu_falling_off_the_bus_mid_run():
    nv = FakeNvml(devices=(H100, A100), procs={0: [SimpleNamespace(pid=1, usedGpuMemory=10)],
                                               1: [SimpleNamespace(pid=2, usedGpuMemory=20)]})
    reader = gpu.Nvml(nv)
    assert len(reader.read().devices) == 2
    lost = _error("NVMLError_GpuIsLost")(15)
    nv.fail["nvmlDeviceGetMemoryInfo"] = lost
    r = reader.read()
    assert r.devices == () and r.memory == ()
    assert "fell off the bus" in r.note
    assert gpu.tree_gpu(r, [1]).memory_bytes is None


def test_utilisation_not_supported_and_processes_not_permitted():
    nv = FakeNvml(fail={
        "nvmlDeviceGetProcessUtilization": _error("NVMLError_NotSupported")(3),
        "nvmlDeviceGetComputeRunningProcesses": _error("NVMLError_NoPermission")(4),
    })
    r = gpu.Nvml(nv).read()
    assert r.util_unknown == {"0"} and r.memory_unknown == {"0"}
    assert "per-process memory unavailable" in r.note
    t = gpu.tree_gpu(r, [4531])
    assert (t.memory_bytes, t.percent) == (None, None)
    assert r.devices[0].memory_used == 5 * GIB  # the device itself still reads


def test_mig_processes_are_read_per_instance():
    nv = FakeNvml(mig={0: [[SimpleNamespace(pid=7, usedGpuMemory=100)], [SimpleNamespace(pid=8, usedGpuMemory=None)]]},
                  samples={})
    r = gpu.Nvml(nv).read()
    assert {(m.pid, m.memory_bytes) for m in r.memory} == {(7, 100), (8, None)}
    assert gpu.tree_gpu(r, [7]).memory_bytes == 100
    assert gpu.tree_gpu(r, [8]).memory_bytes is None


@pytest.mark.parametrize("fn", ["nvmlDeviceGetMigMode"])
def test_mig_query_not_supported_falls_back_to_the_device(fn):
    nv = FakeNvml(fail={fn: _error("NVMLError_NotSupported")(3)})
    assert gpu.Nvml(nv).read().memory == (ProcMemory(0, 4531, 2566 * 1024**2),)
