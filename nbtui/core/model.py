"""Immutable data that flows from the sources to the views.

Unknown is not zero: a value nobody measured is ``None`` here, ``null`` in JSON
and an em dash on screen.
"""

from __future__ import annotations

import datetime as _dt
import operator
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Final, Generic, Iterable, Optional, TypeVar, overload

# The types of the few-strings fields, re-exported: model.KernelState and so on.
from nbtui.core.kinds import ErrorKind as ErrorKind, KernelState as KernelState, Pending as Pending
from nbtui.core.kinds import Route as Route, ServerErrorKind as ServerErrorKind, ServerSource as ServerSource
from nbtui.core.kinds import ServerStatus as ServerStatus, UsageSource as UsageSource

_Item = TypeVar("_Item")
_V = TypeVar("_V")

# The wall clock idle times are measured against (tests stand it still: ``model.clock = ...``).
clock: "Callable[[], float]" = time.time


def idle_since(last: Optional[_dt.datetime], now: Optional[float] = None) -> Optional[float]:
    """Seconds since ``last`` (a server's ``last_activity``) as of ``now`` (a ``clock()``
    reading; by default the clock now): never negative (a server's clock ahead of ours), None
    where unknown."""
    if last is None:
        return None
    return max(0.0, (clock() if now is None else now) - last.timestamp())


class _once(Generic[_V]):
    """``functools.cached_property`` without its lock (Python 3.11's takes an RLock at each
    first access: a read asks 50,000 kernels their key). Kept as an attribute of the instance:
    read again, it is found before this descriptor is asked. Set as ``__init__`` sets fields
    (not through ``__dict__``, which would give each instance a dict of its own: 64 bytes)."""

    def __init__(self, fn: Callable[[Any], _V]) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.__doc__ = fn.__doc__

    @overload
    def __get__(self, obj: None, cls: Any = None) -> "_once[_V]": ...
    @overload
    def __get__(self, obj: object, cls: Any = None) -> _V: ...
    def __get__(self, obj: Any, cls: Any = None) -> Any:
        if obj is None:
            return self
        value = self.fn(obj)
        object.__setattr__(obj, self.name, value)  # past a frozen dataclass's __setattr__
        return value


class _Idle:
    """``idle_seconds`` of a kernel or terminal: measured when asked, from its
    ``last_activity``, not stored. So a kernel no server changed is the same object from one
    read to the next (nbtui.service.fleet keeps it), and so is everything built from it:
    its row, its cells on screen, its metric lines."""

    last_activity: Optional[_dt.datetime]
    # ``last_activity`` as a POSIX time (None: unknown), once per object: a refresh asks it of
    # every kernel several times (its idle time, its place in the fleet's order, the summary's
    # idle count), and a kept kernel is the same object from read to read.
    seen_at: Optional[float]

    def __post_init__(self) -> None:
        object.__setattr__(self, "seen_at", posix_time(self.last_activity))

    @property
    def idle_seconds(self) -> Optional[float]:
        seen = self.seen_at
        return None if seen is None else max(0.0, clock() - seen)


def posix_time(when: Optional[_dt.datetime]) -> Optional[float]:
    return None if when is None else when.timestamp()


# Server statuses of the CLI contract (`ls --json` servers[].status).
OK: Final = "ok"
UNREACHABLE: Final = "unreachable"
AUTH_FAILED: Final = "auth-failed"
TIMEOUT: Final = "timeout"
ERROR: Final = "error"
# Not read on purpose: a hub user's server read through the proxy by another nbtui within
# its proxy_interval (a read there marks it active); error_kind "proxy-interval".
SKIPPED: Final = "skipped"

# Kernel states of the CLI contract.
KERNEL_STATES: tuple[KernelState, ...] = ("idle", "busy", "starting", "restarting", "dead", "unknown")
_STATES: dict[str, KernelState] = {s: s for s in KERNEL_STATES}


def normalize_state(value: object) -> KernelState:
    """A server's ``execution_state`` as one of KERNEL_STATES (anything else: "unknown"):
    the one string object of it, not the parser's (50,000 kernels hold four strings)."""
    return _STATES.get(value, "unknown") if isinstance(value, str) else "unknown"


@dataclass(frozen=True)
class ServerInfo:
    """One Jupyter server as nbtui sees it after a read."""

    name: str
    url: str
    source: ServerSource
    status: ServerStatus = OK
    error: Optional[str] = None
    # Finer than status: unreachable, timeout, auth-failed, not-jupyter, server-error.
    error_kind: Optional[ServerErrorKind] = None
    version: Optional[str] = None
    latency_ms: Optional[float] = None
    pid: Optional[int] = None  # local server process, when discovered
    root_dir: Optional[str] = None
    owner: Optional[str] = None  # the OS user its process runs as (discovered servers; None: unknown)
    local: bool = False  # its kernels run on this host
    usage_source: Optional[str] = None  # local | extension | None
    usage_note: Optional[str] = None  # why its kernels have no usage, when they have none
    # A single-user server reached through a JupyterHub (source "hub"): the hub's name,
    # the user, the named server ("" for the default one), a spawn/stop in progress
    # ("spawn" | "stop" | None), and the hub's own timestamps.
    hub: Optional[str] = None
    user: Optional[str] = None
    server_name: Optional[str] = None
    pending: Optional[Pending] = None
    started: Optional[_dt.datetime] = None
    hub_last_activity: Optional[_dt.datetime] = None
    # How a hub user's server is read: "direct" (its internal target: moves no timestamp) or
    # "proxy" (through the hub's proxy, which marks it active), and why when not direct.
    route: Optional[Route] = None
    route_note: Optional[str] = None

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
    id: str = ""  # "0", or "0/1/0" for a MIG instance (GPU 0, GPU instance 1, compute instance 0)
    simulated: bool = False  # the demo's stand-in GPU

    @property
    def label(self) -> str:
        return self.id or str(self.index)


@dataclass(frozen=True)
class Usage:
    """Resource use of a kernel's whole process tree."""

    source: UsageSource
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
class Kernel(_Idle):
    server: str
    kernel_id: str
    kernel_name: str
    state: KernelState
    connections: Optional[int]
    last_activity: Optional[_dt.datetime]
    session: Optional[Session] = None
    usage: Optional[Usage] = None
    orphan_reasons: tuple[str, ...] = ()
    # The person: the hub user of a hub's server, else the owner of its process, else None.
    user: Optional[str] = None
    gpu_idle_seconds: Optional[float] = None  # holding GPU memory at 0 % SM this long (None: unknown)
    process_user: Optional[str] = None  # the OS owner of its process, where known (on a hub often root)
    own_connections: int = 0  # of ``connections``, nbtui's own (a console open on it): no one else's
    # A digest of what its server said of it at the read that built it (nbtui.jupyter.join):
    # a later read that hears the same keeps this very kernel. -1: none.
    read_digest: int = field(default=-1, compare=False, repr=False)
    # (_Idle.seen_at) Made with the kernel (_Idle.__post_init__, or ``evolve``), not lazily: a
    # second lazy attribute after ``key`` turns each kernel's dict from shared keys into one of
    # its own (0.8 KB a kernel: 40 MB at 50,000).
    seen_at: Optional[float] = field(default=None, init=False, compare=False, repr=False)

    @_once
    def key(self) -> str:
        """Identity across refreshes and servers (built once per kernel: a read asks it of
        every kernel several times; ``evolve`` keeps it unless the server or id changes)."""
        return kernel_key(self.server, self.kernel_id)


@dataclass(frozen=True)
class OverCap:
    """One server's kernels beyond the cap: counted, then dropped (no per-kernel series,
    usage or orphan verdict). ``kept``: how many of its kernels were kept beside them."""

    kept: int
    n: int
    states: dict[KernelState, int]
    types: dict[str, int]  # session types of the kernels not kept (a session of a kernel not listed counts too)
    idle: int


def kernel_key(server: str, kernel_id: str) -> str:
    """A kernel's identity across refreshes and servers: ``server:kernel_id`` (the one place
    it is built; ``split_kernel_key`` the one place it is read back)."""
    return f"{server}:{kernel_id}"


def evolve(item: _Item, **changes: Any) -> _Item:
    """``dataclasses.replace`` for a read's hot path, where every kernel is copied on every
    refresh: the same result at a fifth of the cost (5,000 kernels: 4 ms, not 19), since it
    copies the values instead of walking the fields and calling the frozen ``__init__``. For
    the model's frozen classes (no slots, no ``__post_init__`` but _Idle's, done here too);
    elsewhere ``replace``."""
    values = item.__dict__
    new = object.__new__(type(item))
    copied = new.__dict__
    copied.update(values)
    copied.update(changes)
    if len(copied) != len(values):  # a change named no field of it (a length, not a lookup per change)
        unknown = sorted(changes.keys() - values.keys())[0]
        raise TypeError(f"{type(item).__name__} has no field {unknown!r}")
    if "server" in changes or "kernel_id" in changes:
        copied.pop("key", None)  # a Kernel's cached key, no longer its own
    if "last_activity" in changes and "seen_at" in copied:
        copied["seen_at"] = posix_time(changes["last_activity"])  # (_Idle.__post_init__'s)
    return new


def split_kernel_key(key: str) -> tuple[str, str]:
    """``(server, kernel_id)`` of a ``kernel_key`` (kernel ids hold no colon)."""
    server, _, kernel_id = key.rpartition(":")
    return server, kernel_id


def in_fleet_order(kernels: "Iterable[Kernel]") -> "list[Kernel]":
    """The fleet's order of kernels: by server, then the longest idle first (the earliest
    last activity; unknown last), then by id. Each server's kernels are sorted on their own,
    by id and then, stably, by when: two sorts the interpreter compares natively (strings,
    floats), a third of one sort on a tuple of all three (50,000 kernels: 35 ms, not 95)."""
    by_server: dict[str, list[Kernel]] = {}
    for k in kernels:
        group = by_server.get(k.server)
        if group is None:
            group = by_server[k.server] = []
        group.append(k)
    ordered: list[Kernel] = []
    for server in sorted(by_server):
        group = by_server[server]
        group.sort(key=_kernel_id)
        group.sort(key=_last_seen)
        ordered += group
    return ordered


_kernel_id = operator.attrgetter("kernel_id")
_NEVER = float("inf")


def _last_seen(k: "Kernel") -> float:
    seen = k.seen_at
    return seen if seen is not None else _NEVER


@dataclass(frozen=True)
class Terminal(_Idle):
    """A Jupyter terminal (terminado) of a server: its shell and everything it started."""

    server: str
    name: str
    last_activity: Optional[_dt.datetime]
    pid: Optional[int] = None  # its shell, when the host (or the extension) can tell
    user: Optional[str] = None  # the person, as a kernel's; process_user below is the shell's OS owner
    usage: Optional[Usage] = None  # the shell's whole process tree
    orphan_reasons: tuple[str, ...] = ()
    note: Optional[str] = None  # why its shell (and so its usage) is unknown, when it is
    clients: Optional[int] = None  # open websockets (from the server extension; None: unknown)
    gpu_idle_seconds: Optional[float] = None  # holding GPU memory at 0 % SM this long (None: unknown)
    process_user: Optional[str] = None

    seen_at: Optional[float] = field(default=None, init=False, compare=False, repr=False)  # (_Idle.seen_at)

    @property
    def key(self) -> str:
        return f"terminal:{self.server}/{self.name}"


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
    gpu_percent: Optional[float] = None  # SM %, summed over its GPUs
    gpu_idle_seconds: Optional[float] = None  # holding GPU memory at 0 % SM this long (None: unknown)
    # Of a JupyterHub single-user server (its JUPYTERHUB_USER / _SERVER_NAME): the hub user,
    # the named server ("" the default), and its name HUB/USER[/SERVER] where the hub is known.
    hub_user: Optional[str] = None
    hub_server_name: Optional[str] = None
    hub_server: Optional[str] = None


@dataclass(frozen=True)
class UnattributedGpu:
    gpu_index: int
    pid: int
    memory_bytes: Optional[int]
    gpu_id: str = ""  # "0/1/0" on a MIG instance


@dataclass(frozen=True)
class OtherGpuHolder:
    """A process holding GPU memory that is no kernel, terminal or Jupyter leftover."""

    pid: int
    user: Optional[str]
    command: str
    memory_bytes: Optional[int]


# A device holder no signal can free (``DeviceHolder.unkillable``): said so wherever it is shown.
UNKILLABLE = "unkillable (GPU reset or reboot needed)"


@dataclass(frozen=True)
class DeviceHolder:
    """A process with an NVIDIA device node open that NVML names for no memory: a holder of
    the GPU memory the ledger cannot name (``nbtui.host.devholders``)."""

    pid: int
    user: Optional[str]
    cmdline: str  # secrets scrubbed; outside text, shown only through nbtui.core.text
    state: str  # the kernel's state letter (/proc/PID/stat): R, S, D, Z, T, …
    nodes: tuple[str, ...] = ()  # the device nodes it has open

    @property
    def unkillable(self) -> bool:
        """D (uninterruptible) or Z (zombie): no signal frees it; a GPU reset or a reboot does."""
        return self.state in ("D", "Z")


@dataclass(frozen=True)
class GpuLedger:
    """Who holds one GPU's used memory; the parts sum to NVML's ``memory_used``.

    ``unassigned`` is what NVML counts as used but assigns to no process (the driver's
    own reservations, contexts of processes it does not list).
    """

    kernels: int = 0
    terminals: int = 0
    leftovers: int = 0
    other: int = 0
    unattributed: int = 0
    unassigned: int = 0
    others: tuple[OtherGpuHolder, ...] = ()  # the "other" part, by process
    # Set when NVML's per-process figures exceed its used total (the GPU changed between
    # the two NVML calls): ``unassigned`` is then 0 and the parts sum to more than used.
    note: Optional[str] = None


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
    ledger: Optional[GpuLedger] = None
    # Processes with its device node open that NVML lists for no memory, where the ledger has
    # memory it cannot name (None: not looked, e.g. a GPU a server's extension reported).
    holders: Optional[tuple[DeviceHolder, ...]] = None
    holders_note: Optional[str] = None  # why the list may be short (not root, the scan's time bound)
    id: str = ""  # "0", or "0/1/0" for a MIG instance, a GPU of its own; uuid is then the instance's
    parent_uuid: Optional[str] = None  # a MIG instance's GPU
    utilization_note: Optional[str] = None  # why utilisation is not measured ("not supported on MIG")
    simulated: bool = False  # the demo's stand-in GPU

    @property
    def label(self) -> str:
        return self.id or str(self.index)


@dataclass(frozen=True, repr=False)
class Snapshot:
    """Everything nbtui knows at one moment; views render it, never mutate it.

    Its repr counts instead of listing: ``asyncio.run`` reprs its main task, result and all,
    as it ends (checking its SIGINT handler), which at 50,000 kernels took 0.4 s."""

    generated_at: _dt.datetime
    servers: tuple[ServerInfo, ...] = ()
    kernels: tuple[Kernel, ...] = ()
    terminals: tuple[Terminal, ...] = ()
    processes: tuple[Process, ...] = ()
    unattributed_gpu: tuple[UnattributedGpu, ...] = ()
    gpus: tuple[GpuDevice, ...] = ()
    gpu_note: Optional[str] = None  # why there is no GPU data, when there is none
    stale_files: tuple[str, ...] = ()  # runtime files whose process is dead
    untrusted_files: tuple[str, ...] = ()  # other users' runtime files not trusted ("path: why"), never contacted
    idle_threshold: float = 3600.0
    notes: tuple[str, ...] = field(default=())
    # Whether sessions' notebooks were checked (the orphan rule notebook-missing): a plain
    # `nbtui ls` does not hold its listing back for one request per folder.
    notebooks_checked: bool = True

    def __repr__(self) -> str:
        return (f"Snapshot({self.generated_at.isoformat()}: {len(self.servers)} servers, "
                f"{len(self.kernels)} kernels, {len(self.terminals)} terminals, {len(self.processes)} processes)")

    @property
    def failed_servers(self) -> tuple[ServerInfo, ...]:
        return tuple(s for s in self.servers if not s.ok)
