"""GPUs through NVML (the ``pynvml`` module of nvidia-ml-py), and pure attribution.

``Nvml`` reads the driver: initialised once, and tolerant of no library, no driver,
no GPU, MIG, ``NOT_SUPPORTED`` and permission errors. When it cannot read, it says why
in one line (``note``) and its reading is empty; it never raises and never warns per
refresh.

Process lists are read at the C ABI, as the field has learnt to: the driver's process-info
layout changed without a version bump (``_v3`` functions filling the 24-byte v2 struct, the
32-byte struct of driver 535.43, 16-byte v1 records from a 2026 driver: nvitop #79, #88, #89,
#226), and the binding's struct and the driver's disagree in the field. So ``ProcessLists``
calls the newest function the library has, sizes the buffer from the count call with margin,
and probes once which record size the driver writes (the same call into two buffers filled
with different bytes: the bytes both calls wrote alike end at ``count * size``). Graphics
processes count as compute ones do. MIG instances are GPUs of their own (``0/1/0``).

The functions below ``Nvml`` are pure: they turn a ``GpuReading`` (recorded in tests)
into per-process, per-tree and per-GPU figures. GPU memory held by a PID that no local
process matches is never guessed onto a kernel; it is left for ``unattributed``.
"""

from __future__ import annotations

import struct
import threading
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Iterable, Mapping, Optional

from nbtui.core.model import GpuDevice, GpuUse, UnattributedGpu

# A first read asks NVML for the samples of this last stretch only (``lastSeenTimeStamp`` is
# CPU time in µs since the epoch), so a one-shot `nbtui ls` reports recent use, not whatever
# sits in NVML's buffer.
FIRST_READ_WINDOW_US = 5_000_000


MIG_UTIL_NOTE = "not supported on MIG"
STANDIN_DRIVER_SUFFIX = "-standin"  # nvmlSystemGetDriverVersion of nbtui's stand-in library (nvml_standin)


def gpu_id(index: int, instance: Optional[tuple[int, int]] = None) -> str:
    """A GPU's id: ``"0"``, or ``"0/1/0"`` for compute instance 0 of GPU instance 1 on GPU 0."""
    return str(index) if instance is None else f"{index}/{instance[0]}/{instance[1]}"


@dataclass(frozen=True)
class DeviceSample:
    index: int
    uuid: str
    name: str
    memory_used: Optional[int] = None
    memory_total: Optional[int] = None
    utilization: Optional[float] = None
    instance: Optional[tuple[int, int]] = None  # (GPU instance, compute instance) of a MIG device
    parent_uuid: Optional[str] = None  # a MIG device's GPU

    @property
    def id(self) -> str:
        return gpu_id(self.index, self.instance)


@dataclass(frozen=True)
class ProcMemory:
    """One PID's memory on one GPU, as NVML reports it (None: not available)."""

    gpu_index: int
    pid: int
    memory_bytes: Optional[int]
    instance: Optional[tuple[int, int]] = None

    @property
    def gpu_id(self) -> str:
        return gpu_id(self.gpu_index, self.instance)


@dataclass(frozen=True)
class ProcUtil:
    """One per-process utilisation sample (``nvmlDeviceGetProcessUtilization``)."""

    gpu_index: int
    pid: int
    sm_percent: float
    timestamp_us: int = 0
    instance: Optional[tuple[int, int]] = None

    @property
    def gpu_id(self) -> str:
        return gpu_id(self.gpu_index, self.instance)


@dataclass(frozen=True)
class GpuReading:
    devices: tuple[DeviceSample, ...] = ()
    memory: tuple[ProcMemory, ...] = ()
    util: tuple[ProcUtil, ...] = ()
    # GPU ids whose per-process utilisation could not be read (None there, not 0).
    util_unknown: frozenset[str] = frozenset()
    # GPU ids whose per-process memory could not be read.
    memory_unknown: frozenset[str] = frozenset()
    # NVML figures that cannot be true (bytes above the GPU's total, PID 0): reported, never booked.
    implausible: tuple[ProcMemory, ...] = ()
    note: Optional[str] = None  # why something is missing; None when all was read
    simulated: bool = False  # the stand-in libnvidia-ml (nbtui demo), not a driver

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


# -- process lists at the C ABI --------------------------------------------------------------

NOT_AVAILABLE = 0xFFFFFFFFFFFFFFFF  # NVML_VALUE_NOT_AVAILABLE (usedGpuMemory under WDDM)
_RECORDS = {16: "<I4xQ", 24: "<I4xQII", 32: "<I4xQIIQ"}  # v1, v2, the 535.43 v3 (pid, bytes, GI, CI, …)
_DEFAULT_SIZE = {"_v3": 24, "_v2": 24, "": 16}  # what the header says, when a probe cannot tell
_SENTINELS = (0xA5, 0x5A)
NVML_SUCCESS, NVML_ERROR_INSUFFICIENT_SIZE, NVML_ERROR_FUNCTION_NOT_FOUND = 0, 7, 13


class ProcessLists:
    """``nvmlDevice{Compute,Graphics}RunningProcesses`` called directly: the newest version the
    library exports, the buffer sized from the count call with margin, the record size the
    driver fills probed once per function. ``read`` gives ``[(pid, bytes or None, GI, CI)]``."""

    def __init__(self, nv: ModuleType) -> None:  # pynvml (or a stand-in)
        self.nv = nv
        self._fn: dict[str, tuple[str, Any]] = {}  # kind -> (suffix, C function)
        self.size: dict[str, int] = {}  # kind -> record size the driver fills (probed)

    def _function(self, kind: str, skip: tuple[str, ...] = ()) -> tuple[str, Any]:
        for suffix in ("_v3", "_v2", ""):
            if suffix in skip:
                continue
            try:
                return suffix, self.nv._nvmlGetFunctionPointer(f"nvmlDeviceGet{kind}RunningProcesses{suffix}")
            except Exception:  # NVMLError_FunctionNotFound: an older driver
                continue
        raise self.nv.NVMLError(NVML_ERROR_FUNCTION_NOT_FOUND)

    def read(self, handle: object, kind: str) -> list[tuple[int, Optional[int], int, int]]:
        import ctypes

        skip: tuple[str, ...] = ()
        while True:
            if kind not in self._fn:
                self._fn[kind] = self._function(kind, skip)
            suffix, fn = self._fn[kind]
            count = ctypes.c_uint(0)
            ret = fn(handle, ctypes.byref(count), None)
            if ret == NVML_ERROR_FUNCTION_NOT_FOUND and suffix:  # exported, but not by this driver
                del self._fn[kind]
                skip += (suffix,)
                continue
            break
        if ret == NVML_SUCCESS:
            return []
        for _ in range(4):  # the list may grow between the count call and the next
            if ret != NVML_ERROR_INSUFFICIENT_SIZE:
                raise self.nv.NVMLError(ret)
            room = count.value * 2 + 8
            ret, n, buf = self._call(fn, handle, room, _SENTINELS[0])
            if ret == NVML_SUCCESS:
                break
            count = ctypes.c_uint(n)
        else:
            raise self.nv.NVMLError(ret)
        if n == 0:
            return []
        size = self.size.get(kind)
        if size is None:
            ret2, n2, buf2 = self._call(fn, handle, room, _SENTINELS[1])
            size = _probe(buf, buf2, n) if ret2 == NVML_SUCCESS and n2 == n else None
            if size is None:
                size = _DEFAULT_SIZE[suffix]
            else:
                self.size[kind] = size
        fmt = _RECORDS[size]
        out = []
        for i in range(n):
            rec = struct.unpack_from(fmt, buf, i * size)
            pid, used = rec[0], rec[1]
            gi, ci = (rec[2], rec[3]) if size > 16 else (0xFFFFFFFF, 0xFFFFFFFF)
            out.append((pid, None if used == NOT_AVAILABLE else used, gi, ci))
        return out

    @staticmethod
    def _call(fn: Callable[..., int], handle: object, room: int, fill: int) -> tuple[int, int, bytes]:
        import ctypes

        buf = ctypes.create_string_buffer(bytes([fill]) * (room * 32), room * 32)
        count = ctypes.c_uint(room)
        ret = fn(handle, ctypes.byref(count), buf)
        return ret, count.value, buf.raw


def _probe(a: bytes, b: bytes, n: int) -> Optional[int]:
    """The record size a driver wrote ``n`` records with: bytes it wrote are alike in both
    buffers, bytes it left keep their (different) fill."""
    end = 0
    for i in range(min(len(a), len(b)) - 1, -1, -1):
        if a[i] == b[i]:
            end = i + 1
            break
    size, rest = divmod(end, n)
    return size if rest == 0 and size in _RECORDS else None


# -- the driver ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Dev:
    index: int
    handle: object
    uuid: str
    name: str
    instance: Optional[tuple[int, int]] = None
    parent_uuid: Optional[str] = None

    @property
    def id(self) -> str:
        return gpu_id(self.index, self.instance)


class Nvml:
    """NVML, initialised on first use, once. Thread-safe (the server extension reads it from threads)."""

    def __init__(self, module: Optional[ModuleType] = None) -> None:  # pynvml (or a stand-in)
        self._module: Any = module  # pynvml (no stubs: its calls are unchecked) once _start has it
        self._lock = threading.Lock()
        self._started = False
        self._devs: list[_Dev] = []
        self._lists: Optional[ProcessLists] = None
        self._last_seen: dict[str, int] = {}  # GPU id -> newest util sample timestamp read
        self._util_failed: set[str] = set()  # GPU ids whose last utilisation read failed
        self.simulated = False  # the library is nbtui's stand-in (it says so in its driver version)
        self.note: Optional[str] = None  # why NVML is not usable at all

    def _start(self) -> bool:
        if self._started:
            return bool(self._devs)
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
        if hasattr(nv, "_nvmlGetFunctionPointer"):
            self._lists = ProcessLists(nv)
        try:
            self.simulated = _text(nv.nvmlSystemGetDriverVersion()).endswith(STANDIN_DRIVER_SUFFIX)
        except Exception:
            self.simulated = False
        for i in range(count):
            try:
                h = nv.nvmlDeviceGetHandleByIndex(i)
                uuid = _text(nv.nvmlDeviceGetUUID(h))
                name = _text(nv.nvmlDeviceGetName(h))
            except Exception as e:
                self.note = f"GPU {i}: {_nvml_reason(e)}"
                continue
            migs = self._mig_devices(i, h, uuid)
            self._devs += migs or [_Dev(i, h, uuid, name)]
        return bool(self._devs)

    def _mig_devices(self, i: int, h: object, parent_uuid: str) -> list[_Dev]:
        """A MIG-enabled GPU's instances, each a GPU of its own (none when MIG is off)."""
        nv = self._module
        try:
            current, _pending = nv.nvmlDeviceGetMigMode(h)
            if current != getattr(nv, "NVML_DEVICE_MIG_ENABLE", 1):
                return []
            slots = nv.nvmlDeviceGetMaxMigDeviceCount(h)
        except Exception:
            return []
        out = []
        for j in range(slots):
            try:
                mh = nv.nvmlDeviceGetMigDeviceHandleByIndex(h, j)
            except Exception:
                continue  # an empty MIG slot
            try:
                instance = (int(nv.nvmlDeviceGetGpuInstanceId(mh)), int(nv.nvmlDeviceGetComputeInstanceId(mh)))
            except Exception:
                instance = (j, 0)
            try:
                uuid = _text(nv.nvmlDeviceGetUUID(mh))
            except Exception:
                uuid = f"{parent_uuid}/{instance[0]}/{instance[1]}"
            try:
                name = _text(nv.nvmlDeviceGetName(mh))
            except Exception:
                name = "MIG instance"
            out.append(_Dev(i, mh, uuid, name, instance, parent_uuid))
        return out

    def read(self) -> GpuReading:
        with self._lock:
            if not self._start():
                return GpuReading(note=self.note)
            return self._read()

    def _processes(self, h: object) -> list[tuple[int, Optional[int]]]:
        """(pid, bytes) of compute and graphics processes (one figure per PID: a process in
        both lists holds one context's memory, listed twice)."""
        nv = self._module
        found: dict[int, Optional[int]] = {}
        if self._lists is not None:
            rows = [(pid, used) for pid, used, _gi, _ci in self._lists.read(h, "Compute")]
            try:
                rows += [(pid, used) for pid, used, _gi, _ci in self._lists.read(h, "Graphics")]
            except Exception as e:
                if type(e).__name__ not in ("NVMLError_NotSupported", "NVMLError_FunctionNotFound"):
                    raise
        else:  # a recorded module (tests): its own lists
            rows = [(int(p.pid), getattr(p, "usedGpuMemory", None))
                    for p in nv.nvmlDeviceGetComputeRunningProcesses(h)]
        for pid, used in rows:
            used = None if used is None else int(used)
            if pid in found:
                prev = found[pid]
                found[pid] = None if prev is None or used is None else max(prev, used)
            else:
                found[pid] = used
        return list(found.items())

    def _read(self) -> GpuReading:
        nv = self._module
        devices, memory, util, implausible = [], [], [], []
        util_unknown, memory_unknown, notes = set(), set(), []
        for d in self._devs:
            label = f"GPU {d.id}"
            try:
                mem = nv.nvmlDeviceGetMemoryInfo(d.handle)
                used: Optional[int] = int(mem.used)
                total: Optional[int] = int(mem.total)
            except Exception as e:
                notes.append(f"{label}: {_nvml_reason(e)}")
                if "GpuIsLost" in type(e).__name__:
                    memory_unknown.add(d.id)  # gone: no device, and who held what on it is unknown
                    continue
                used = total = None
            utilization: Optional[float] = None
            if d.instance is None:
                try:
                    utilization = float(nv.nvmlDeviceGetUtilizationRates(d.handle).gpu)
                except Exception:
                    utilization = None
            devices.append(DeviceSample(d.index, d.uuid, d.name, used, total, utilization, d.instance, d.parent_uuid))
            try:
                for pid, nbytes in self._processes(d.handle):
                    m = ProcMemory(d.index, pid, nbytes, d.instance)
                    if pid <= 0 or (nbytes is not None and total is not None and nbytes > total):
                        implausible.append(m)
                    else:
                        memory.append(m)
            except Exception as e:
                memory_unknown.add(d.id)
                notes.append(f"{label}: per-process memory unavailable ({_nvml_reason(e)})")
            if d.instance is not None:
                util_unknown.add(d.id)  # NVML has no per-process utilisation on MIG
                continue
            util.extend(self._util(d))
            if d.id in self._util_failed:
                util_unknown.add(d.id)
        for m in implausible:
            shown = "unknown" if m.memory_bytes is None else f"{m.memory_bytes} bytes"
            notes.append(f"GPU {m.gpu_id}: NVML reported pid {m.pid} with {shown}, which cannot be true: not booked")
        return GpuReading(
            devices=tuple(devices), memory=tuple(memory), util=tuple(util),
            util_unknown=frozenset(util_unknown), memory_unknown=frozenset(memory_unknown),
            implausible=tuple(implausible), note="; ".join(notes) or None, simulated=self.simulated,
        )

    def _util(self, d: _Dev) -> list[ProcUtil]:
        """Samples newer than the last one read (``lastSeenTimeStamp``); ``NOT_FOUND``: none is new."""
        nv = self._module
        self._util_failed.discard(d.id)
        last = self._last_seen.get(d.id)
        if last is None:
            last = max(0, int(time.time() * 1e6) - FIRST_READ_WINDOW_US)
        try:
            samples = nv.nvmlDeviceGetProcessUtilization(d.handle, last)
        except Exception as e:
            if type(e).__name__ != "NVMLError_NotFound":
                self._util_failed.add(d.id)
            samples = []  # NOT_FOUND: no process used the GPU since the last read, a measured 0
        raw = [ProcUtil(d.index, int(s.pid), float(s.smUtil), int(s.timeStamp)) for s in samples]
        # A driver may still hand back older samples, or garbage beside a zombie (nvtop #110).
        raw = [s for s in raw if s.timestamp_us > last and 0 <= s.sm_percent <= 100]
        self._last_seen[d.id] = max([last] + [s.timestamp_us for s in raw])
        return raw


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# -- pure attribution ---------------------------------------------------------------------


def per_pid(reading: GpuReading) -> dict[int, dict[str, GpuUse]]:
    """pid -> GPU id -> that PID's memory and mean SM % on that GPU."""
    devs = {d.id: d for d in reading.devices}
    mem: dict[tuple[int, str], Optional[int]] = {}
    for m in reading.memory:
        if m.gpu_id not in devs:
            continue
        key = (m.pid, m.gpu_id)
        if key in mem:  # listed twice on one GPU
            prev = mem[key]
            mem[key] = None if prev is None or m.memory_bytes is None else prev + m.memory_bytes
        else:
            mem[key] = m.memory_bytes
    sm: dict[tuple[int, str], list[float]] = {}
    for s in reading.util:
        sm.setdefault((s.pid, s.gpu_id), []).append(s.sm_percent)
    out: dict[int, dict[str, GpuUse]] = {}
    for (pid, gid), memory_bytes in mem.items():
        if gid in reading.util_unknown:
            pct = None
        else:
            vals = sm.get((pid, gid))
            pct = round(sum(vals) / len(vals), 1) if vals else 0.0
        d = devs[gid]
        out.setdefault(pid, {})[gid] = GpuUse(d.index, d.uuid, memory_bytes, pct, id=gid, simulated=reading.simulated)
    return out


@dataclass(frozen=True)
class TreeGpu:
    gpus: tuple[GpuUse, ...]
    memory_bytes: Optional[int]
    percent: Optional[float]


UNKNOWN_TREE = TreeGpu((), None, None)


def tree_gpu(reading: GpuReading, pids: Iterable[int], by_pid: Mapping[int, Mapping[str, GpuUse]] | None = None) -> TreeGpu:
    """GPU use of a process tree: memory summed per GPU over its PIDs, SM % summed too.

    With no GPU readable, everything is unknown (None). With GPUs readable and no PID
    of the tree on any, the tree holds a measured 0 bytes.
    """
    if not reading.available:
        return UNKNOWN_TREE
    by_pid = per_pid(reading) if by_pid is None else by_pid
    per_gpu: dict[str, list[GpuUse]] = {}
    for pid in set(pids):
        for gid, use in by_pid.get(pid, {}).items():
            per_gpu.setdefault(gid, []).append(use)
    order = {d.id: n for n, d in enumerate(reading.devices)}
    gpus = []
    for gid in sorted(per_gpu, key=lambda g: order.get(g, len(order))):
        uses = per_gpu[gid]
        mems = [u.memory_bytes for u in uses]
        pcts = [u.sm_percent for u in uses]
        gpus.append(GpuUse(
            index=uses[0].index, uuid=uses[0].uuid,
            memory_bytes=None if any(m is None for m in mems) else sum(m or 0 for m in mems),
            sm_percent=None if any(p is None for p in pcts) else min(100.0, round(sum(p or 0.0 for p in pcts), 1)),
            id=gid, simulated=uses[0].simulated,
        ))
    some_unknown = bool(reading.memory_unknown)
    if some_unknown and not gpus:
        return UNKNOWN_TREE
    total_mem = None if any(g.memory_bytes is None for g in gpus) else sum(g.memory_bytes or 0 for g in gpus)
    if some_unknown:
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
        UnattributedGpu(gpu_index=m.gpu_index, pid=m.pid, memory_bytes=m.memory_bytes, gpu_id=m.gpu_id)
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
        if d.id in reading.memory_unknown:
            idle_mem = None
        else:
            mems = [by_pid[p][d.id].memory_bytes for p in idle_pids if d.id in by_pid.get(p, {})]
            idle_mem = None if any(m is None for m in mems) else sum(m or 0 for m in mems)
        out.append(GpuDevice(
            index=d.index, uuid=d.uuid, name=d.name, memory_used=d.memory_used,
            memory_total=d.memory_total, utilization=d.utilization, idle_kernel_memory=idle_mem, host=host,
            id=d.id, parent_uuid=d.parent_uuid, utilization_note=MIG_UTIL_NOTE if d.instance is not None else None,
            simulated=reading.simulated,
        ))
    return tuple(out)
