"""GPUs through NVML (the ``pynvml`` module of nvidia-ml-py), and pure attribution.

``Nvml`` reads the driver: initialised once, and tolerant of no library, no driver,
no GPU, MIG, ``NOT_SUPPORTED`` and permission errors. When it cannot read, it says why
in one line (``note``) and its reading is empty; it never raises and never warns per
refresh.

The functions below ``Nvml`` are pure: they turn a ``GpuReading`` (recorded in tests)
into per-process, per-tree and per-GPU figures. GPU memory held by a PID that no local
process matches is never guessed onto a kernel; it is left for ``unattributed``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

from nbtui.model import GpuDevice, GpuUse, UnattributedGpu

# Samples older than this (relative to the newest one) are ignored on a first read,
# so a one-shot `nbtui ls` reports recent use, not whatever sits in NVML's buffer.
FIRST_READ_WINDOW_US = 5_000_000


@dataclass(frozen=True)
class DeviceSample:
    index: int
    uuid: str
    name: str
    memory_used: Optional[int] = None
    memory_total: Optional[int] = None
    utilization: Optional[float] = None


@dataclass(frozen=True)
class ProcMemory:
    """One PID's memory on one GPU, as NVML reports it (None: not available)."""

    gpu_index: int
    pid: int
    memory_bytes: Optional[int]


@dataclass(frozen=True)
class ProcUtil:
    """One per-process utilisation sample (``nvmlDeviceGetProcessUtilization``)."""

    gpu_index: int
    pid: int
    sm_percent: float
    timestamp_us: int = 0


@dataclass(frozen=True)
class GpuReading:
    devices: tuple[DeviceSample, ...] = ()
    memory: tuple[ProcMemory, ...] = ()
    util: tuple[ProcUtil, ...] = ()
    # GPUs whose per-process utilisation could not be read (None there, not 0).
    util_unknown: frozenset[int] = frozenset()
    # GPUs whose per-process memory could not be read.
    memory_unknown: frozenset[int] = frozenset()
    note: Optional[str] = None  # why something is missing; None when all was read

    @property
    def available(self) -> bool:
        return bool(self.devices)


# -- the driver ------------------------------------------------------------------------


def _nvml_reason(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    name = type(e).__name__
    if "LibraryNotFound" in name:
        return "no NVIDIA driver library (libnvidia-ml) on this host"
    if "DriverNotLoaded" in name:
        return "the NVIDIA driver is not loaded"
    if "NoPermission" in name:
        return "no permission to query the GPU (NVML)"
    if "GpuIsLost" in name:
        return "a GPU fell off the bus (NVML: GPU is lost)"
    if "LibRmVersionMismatch" in name:
        return "NVML library and driver versions differ (reboot or reload the driver)"
    return f"NVML: {text}"


class Nvml:
    """NVML, initialised on first use, once. Thread-safe (the server extension reads it from threads)."""

    def __init__(self, module=None):
        self._module = module
        self._lock = threading.Lock()
        self._started = False
        self._handles: list = []
        self._static: dict[int, tuple[str, str]] = {}  # index -> (uuid, name)
        self._last_seen: dict[int, int] = {}  # index -> newest util sample timestamp read
        self.note: Optional[str] = None  # why NVML is not usable at all

    def _start(self) -> bool:
        if self._started:
            return bool(self._handles)
        self._started = True
        try:
            nv = self._module
            if nv is None:
                import pynvml  # nvidia-ml-py

                self._module = nv = pynvml
            nv.nvmlInit()
            count = nv.nvmlDeviceGetCount()
        except ImportError:
            self.note = "no NVML Python module (install nvidia-ml-py)"
            return False
        except Exception as e:  # NVMLError and anything a broken driver throws
            self.note = _nvml_reason(e)
            return False
        if count == 0:
            self.note = "no NVIDIA GPU on this host"
            return False
        for i in range(count):
            try:
                h = nv.nvmlDeviceGetHandleByIndex(i)
                uuid = _text(nv.nvmlDeviceGetUUID(h))
                name = _text(nv.nvmlDeviceGetName(h))
            except Exception as e:
                self.note = f"GPU {i}: {_nvml_reason(e)}"
                continue
            self._handles.append((i, h))
            self._static[i] = (uuid, name)
        if not self._handles:
            return False
        return True

    def read(self) -> GpuReading:
        with self._lock:
            if not self._start():
                return GpuReading(note=self.note)
            return self._read()

    def _read(self) -> GpuReading:
        nv = self._module
        devices, memory, util = [], [], []
        util_unknown, memory_unknown, notes = set(), set(), []
        for i, h in self._handles:
            uuid, name = self._static[i]
            try:
                mem = nv.nvmlDeviceGetMemoryInfo(h)
                used: Optional[int] = int(mem.used)
                total: Optional[int] = int(mem.total)
            except Exception as e:
                notes.append(f"GPU {i}: {_nvml_reason(e)}")
                if "GpuIsLost" in type(e).__name__:
                    # Gone: no device, no process figures from it.
                    continue
                used = total = None
            try:
                utilization: Optional[float] = float(nv.nvmlDeviceGetUtilizationRates(h).gpu)
            except Exception:
                utilization = None
            devices.append(DeviceSample(i, uuid, name, used, total, utilization))
            handles = self._process_handles(h)
            try:
                for ph in handles:
                    for p in nv.nvmlDeviceGetComputeRunningProcesses(ph):
                        used_mem = getattr(p, "usedGpuMemory", None)
                        memory.append(ProcMemory(i, int(p.pid), None if used_mem is None else int(used_mem)))
            except Exception as e:
                memory_unknown.add(i)
                notes.append(f"GPU {i}: per-process memory unavailable ({_nvml_reason(e)})")
            try:
                samples = nv.nvmlDeviceGetProcessUtilization(h, self._last_seen.get(i, 0))
            except Exception as e:
                if type(e).__name__ == "NVMLError_NotFound":
                    samples = []  # no process used the GPU since the last read: a measured 0
                else:
                    util_unknown.add(i)
                    samples = []
            newest = self._last_seen.get(i, 0)
            raw = [ProcUtil(i, int(s.pid), float(s.smUtil), int(s.timeStamp)) for s in samples]
            if i not in self._last_seen:
                raw = recent(raw)
            for s in raw:
                newest = max(newest, s.timestamp_us)
            self._last_seen[i] = newest
            util.extend(raw)
        return GpuReading(
            devices=tuple(devices), memory=tuple(memory), util=tuple(util),
            util_unknown=frozenset(util_unknown), memory_unknown=frozenset(memory_unknown),
            note="; ".join(notes) or None,
        )

    def _process_handles(self, h) -> list:
        """The handles to ask for processes: the GPU itself, or its MIG instances."""
        nv = self._module
        try:
            current, _pending = nv.nvmlDeviceGetMigMode(h)
        except Exception:
            return [h]
        if current != getattr(nv, "NVML_DEVICE_MIG_ENABLE", 1):
            return [h]
        out = []
        try:
            for j in range(nv.nvmlDeviceGetMaxMigDeviceCount(h)):
                try:
                    out.append(nv.nvmlDeviceGetMigDeviceHandleByIndex(h, j))
                except Exception:
                    continue  # an empty MIG slot
        except Exception:
            return [h]
        return out or [h]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- pure attribution ---------------------------------------------------------------------


def recent(samples: Iterable[ProcUtil], window_us: int = FIRST_READ_WINDOW_US) -> list[ProcUtil]:
    """Samples within ``window_us`` of the newest one."""
    samples = list(samples)
    if not samples:
        return samples
    newest = max(s.timestamp_us for s in samples)
    return [s for s in samples if s.timestamp_us >= newest - window_us]


def per_pid(reading: GpuReading) -> dict[int, dict[int, GpuUse]]:
    """pid -> GPU index -> that PID's memory and mean SM % on that GPU."""
    uuids = {d.index: d.uuid for d in reading.devices}
    mem: dict[tuple[int, int], Optional[int]] = {}
    for m in reading.memory:
        if m.gpu_index not in uuids:
            continue
        key = (m.pid, m.gpu_index)
        if key in mem:  # the same PID on two MIG instances of one GPU
            prev = mem[key]
            mem[key] = None if prev is None or m.memory_bytes is None else prev + m.memory_bytes
        else:
            mem[key] = m.memory_bytes
    sm: dict[tuple[int, int], list[float]] = {}
    for s in reading.util:
        sm.setdefault((s.pid, s.gpu_index), []).append(s.sm_percent)
    out: dict[int, dict[int, GpuUse]] = {}
    for (pid, idx), memory_bytes in mem.items():
        if idx in reading.util_unknown:
            pct = None
        else:
            vals = sm.get((pid, idx))
            pct = round(sum(vals) / len(vals), 1) if vals else 0.0
        out.setdefault(pid, {})[idx] = GpuUse(idx, uuids[idx], memory_bytes, pct)
    return out


@dataclass(frozen=True)
class TreeGpu:
    gpus: tuple[GpuUse, ...]
    memory_bytes: Optional[int]
    percent: Optional[float]


UNKNOWN_TREE = TreeGpu((), None, None)


def tree_gpu(reading: GpuReading, pids: Iterable[int], by_pid: Mapping[int, Mapping[int, GpuUse]] | None = None) -> TreeGpu:
    """GPU use of a process tree: memory summed per GPU over its PIDs, SM % summed too.

    With no GPU readable, everything is unknown (None). With GPUs readable and no PID
    of the tree on any, the tree holds a measured 0 bytes.
    """
    if not reading.available:
        return UNKNOWN_TREE
    by_pid = per_pid(reading) if by_pid is None else by_pid
    per_gpu: dict[int, list[GpuUse]] = {}
    for pid in set(pids):
        for idx, use in by_pid.get(pid, {}).items():
            per_gpu.setdefault(idx, []).append(use)
    gpus = []
    for idx in sorted(per_gpu):
        uses = per_gpu[idx]
        mems = [u.memory_bytes for u in uses]
        pcts = [u.sm_percent for u in uses]
        gpus.append(GpuUse(
            index=idx, uuid=uses[0].uuid,
            memory_bytes=None if any(m is None for m in mems) else sum(m or 0 for m in mems),
            sm_percent=None if any(p is None for p in pcts) else min(100.0, round(sum(p or 0.0 for p in pcts), 1)),
        ))
    if any(d.index in reading.memory_unknown for d in reading.devices) and not gpus:
        return UNKNOWN_TREE
    total_mem = None if any(g.memory_bytes is None for g in gpus) else sum(g.memory_bytes or 0 for g in gpus)
    if any(d.index in reading.memory_unknown for d in reading.devices):
        total_mem = None  # some GPU could not say who holds its memory
    if any(g.sm_percent is None for g in gpus):
        total_pct = None
    elif not gpus and reading.util_unknown:
        total_pct = None if len(reading.util_unknown) == len(reading.devices) else 0.0
    else:
        total_pct = round(sum(g.sm_percent or 0.0 for g in gpus), 1)
    return TreeGpu(tuple(gpus), total_mem, total_pct)


def unattributed(reading: GpuReading, attributed_pids: Iterable[int]) -> tuple[UnattributedGpu, ...]:
    """GPU memory held by PIDs outside every kernel tree and Jupyter process we know."""
    known = set(attributed_pids)
    return tuple(
        UnattributedGpu(gpu_index=m.gpu_index, pid=m.pid, memory_bytes=m.memory_bytes)
        for m in reading.memory if m.pid not in known
    )


def devices(
    reading: GpuReading, idle_trees: Iterable[Iterable[int]] = (), host: Optional[str] = None,
) -> tuple[GpuDevice, ...]:
    """Host summary per GPU; ``idle_kernel_memory`` sums the memory of ``idle_trees``
    (the PIDs of kernels idle past the threshold) on that GPU."""
    by_pid = per_pid(reading)
    idle_pids: set[int] = set()
    for tree in idle_trees:
        idle_pids.update(tree)
    out = []
    for d in reading.devices:
        if d.index in reading.memory_unknown:
            idle_mem = None
        else:
            mems = [by_pid[p][d.index].memory_bytes for p in idle_pids if d.index in by_pid.get(p, {})]
            idle_mem = None if any(m is None for m in mems) else sum(m or 0 for m in mems)
        out.append(GpuDevice(
            index=d.index, uuid=d.uuid, name=d.name, memory_used=d.memory_used,
            memory_total=d.memory_total, utilization=d.utilization, idle_kernel_memory=idle_mem, host=host,
        ))
    return tuple(out)
