"""Immutable data that flows from the sources to the views.

Unknown is not zero: a value nobody measured is ``None`` here, ``null`` in JSON
and an em dash on screen.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Optional

# Server statuses of the CLI contract (`ls --json` servers[].status).
OK = "ok"
UNREACHABLE = "unreachable"
AUTH_FAILED = "auth-failed"
TIMEOUT = "timeout"
ERROR = "error"

# Kernel states of the CLI contract.
KERNEL_STATES = ("idle", "busy", "starting", "restarting", "dead", "unknown")


@dataclass(frozen=True)
class ServerInfo:
    """One Jupyter server as nbtui sees it after a read."""

    name: str
    url: str
    source: str  # config | discovered | hub
    status: str = OK
    error: Optional[str] = None
    # Finer than status: unreachable, timeout, auth-failed, not-jupyter, server-error.
    error_kind: Optional[str] = None
    version: Optional[str] = None
    latency_ms: Optional[float] = None
    pid: Optional[int] = None  # local server process, when discovered
    root_dir: Optional[str] = None
    local: bool = False  # its kernels run on this host
    usage_source: Optional[str] = None  # local | extension | None
    usage_note: Optional[str] = None  # why its kernels have no usage, when they have none

    @property
    def ok(self) -> bool:
        return self.status == OK


@dataclass(frozen=True)
class Session:
    id: str
    path: str
    name: str
    type: str


@dataclass(frozen=True)
class GpuUse:
    """GPU memory and utilisation of one process tree on one GPU."""

    index: int
    uuid: str
    memory_bytes: Optional[int]
    sm_percent: Optional[float] = None


@dataclass(frozen=True)
class Usage:
    """Resource use of a kernel's whole process tree."""

    source: str  # local | extension | control
    pid: Optional[int] = None
    host: Optional[str] = None
    cpu_percent: Optional[float] = None
    memory_bytes: Optional[int] = None
    gpu_memory_bytes: Optional[int] = None
    gpu_percent: Optional[float] = None
    gpus: tuple[GpuUse, ...] = ()
    pids: tuple[int, ...] = ()  # the kernel and its descendants
    note: Optional[str] = None  # why a field is unknown


@dataclass(frozen=True)
class Kernel:
    server: str
    kernel_id: str
    kernel_name: str
    state: str
    connections: Optional[int]
    last_activity: Optional[_dt.datetime]
    idle_seconds: Optional[float]
    session: Optional[Session] = None
    usage: Optional[Usage] = None
    orphan_reasons: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """Identity across refreshes and servers."""
        return f"{self.server}:{self.kernel_id}"


@dataclass(frozen=True)
class Process:
    """A local process that belongs to Jupyter but to no live kernel we can see."""

    pid: int
    user: Optional[str]
    cmdline: str
    create_time: float
    notebook: Optional[str] = None
    kernel_id: Optional[str] = None
    server_pid: Optional[int] = None
    cpu_percent: Optional[float] = None
    memory_bytes: Optional[int] = None
    gpu_memory_bytes: Optional[int] = None
    gpus: tuple[GpuUse, ...] = ()
    orphan_reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class UnattributedGpu:
    gpu_index: int
    pid: int
    memory_bytes: Optional[int]


@dataclass(frozen=True)
class GpuDevice:
    """Host summary of one GPU."""

    index: int
    uuid: str
    name: str
    memory_used: Optional[int]
    memory_total: Optional[int]
    utilization: Optional[float]
    idle_kernel_memory: Optional[int] = None  # held by kernels idle past the threshold
    host: Optional[str] = None  # the host it is on (set for GPUs a server extension reported)


@dataclass(frozen=True)
class Snapshot:
    """Everything nbtui knows at one moment; views render it, never mutate it."""

    generated_at: _dt.datetime
    servers: tuple[ServerInfo, ...] = ()
    kernels: tuple[Kernel, ...] = ()
    processes: tuple[Process, ...] = ()
    unattributed_gpu: tuple[UnattributedGpu, ...] = ()
    gpus: tuple[GpuDevice, ...] = ()
    gpu_note: Optional[str] = None  # why there is no GPU data, when there is none
    stale_files: tuple[str, ...] = ()  # runtime files whose process is dead
    idle_threshold: float = 3600.0
    notes: tuple[str, ...] = field(default=())

    @property
    def failed_servers(self) -> tuple[ServerInfo, ...]:
        return tuple(s for s in self.servers if not s.ok)
