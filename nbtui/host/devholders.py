"""Who holds the GPU memory NVML names nobody for: processes with an NVIDIA device node open.

NVML lists the processes it knows; the ledger (``nbtui.host.ledger``) books the rest as
``unattributed`` (a PID that is no process here) or ``unassigned`` (no process listed: a
zombie or a process stuck in the driver, a container's process, the driver's own). The
admin's next step was ``fuser -v /dev/nvidia*`` by hand; this is that step, done by nbtui
wherever a GPU has such memory: ONE pass over /proc per read (each process's
``/proc/PID/fd`` links; a zombie leader's fd table is gone, its live threads'
``/proc/PID/task/TID/fd`` still hold the files), kernel threads skipped, a process that
vanishes mid-scan or refuses (EACCES) skipped, the pass bounded in time. As root every
process is read; as a user only one's own, and the GPU's ``holders_note`` says so.

A process NVML already lists (a kernel, a leftover, another program, booked in the ledger)
and nbtui itself are no holders here. A node named ``nvidiaN`` is the GPU whose device minor
is N (matched to NVML's GPU by UUID through ``/proc/driver/nvidia/gpus/*/information``); where
the host does not say, a holder is listed on every GPU with unnamed memory, never guessed
onto one. A process with only ``nvidiactl`` / ``nvidia-uvm`` open holds no GPU's memory.

A holder in D (uninterruptible) or Z (zombie) state cannot be freed by any signal: it is
marked ``unkillable (GPU reset or reboot needed)`` and ``kill`` refuses it
(``kill_refusal``).

The node pattern is a glob over the path an open file's link names:
``$NBTUI_GPU_DEVICE_NODES``, default ``/dev/nvidia*``.
"""

from __future__ import annotations

import fnmatch
import os
import pwd
import re
import time
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Optional

from nbtui.core.model import UNKILLABLE, DeviceHolder, GpuDevice
from nbtui.core.text import visible

ENV = "NBTUI_GPU_DEVICE_NODES"
DEFAULT_PATTERN = "/dev/nvidia*"
PROC = "/proc"
DRIVER_GPUS = "/proc/driver/nvidia/gpus"
BUDGET = 1.0  # seconds one pass may take; the processes past it are not looked at, and it says so
REUSE = 1.0  # seconds a pass serves a second sample of the same read
CMDLINE_BYTES = 4096  # of a holder's command line read
STATES = {"R": "running", "S": "sleeping", "D": "uninterruptible", "Z": "zombie", "T": "stopped",
          "t": "traced", "I": "idle", "X": "dead", "W": "paging", "P": "parked"}

_PF_KTHREAD = 0x00200000  # /proc/PID/stat flags: a kernel thread
_NUMBERED = re.compile(r"nvidia(\d+)")


def pattern() -> str:
    return os.environ.get(ENV) or DEFAULT_PATTERN


@dataclass(frozen=True)
class Found:
    """One pass: every process with a node open, and why the list may be short."""

    holders: tuple[DeviceHolder, ...] = ()
    note: Optional[str] = None


def _matcher(glob: str) -> Callable[[str], bool]:
    rx = re.compile(fnmatch.translate(glob))
    prefix = re.split(r"[*?\[]", glob, maxsplit=1)[0]  # most links (sockets, pipes, files) fail here
    return lambda target: target.startswith(prefix) and rx.match(target) is not None


def _stat(pid: int, proc: str) -> Optional[tuple[str, str, int]]:
    """(command name, state letter, flags) from /proc/PID/stat; None: gone or unreadable."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    head, _, tail = raw.rpartition(b")")  # the name may hold ")" and spaces: the last one ends it
    fields = tail.split()
    if len(fields) < 7:
        return None
    try:
        flags = int(fields[6])
    except ValueError:
        return None
    return head.partition(b"(")[2].decode("utf-8", "replace"), fields[0].decode("ascii", "replace"), flags


def _fd_dirs(pid: int, state: str, proc: str) -> list[str]:
    if state != "Z":
        return [f"{proc}/{pid}/fd"]
    # A zombie leader's own fd table is gone; threads of it that still live hold the files.
    try:
        tids = os.listdir(f"{proc}/{pid}/task")
    except OSError:
        return []
    return [f"{proc}/{pid}/task/{t}/fd" for t in tids if t != str(pid)]


def _open_nodes(dirs: Iterable[str], match: Callable[[str], bool]) -> tuple[tuple[str, ...], bool]:
    """(the matching nodes open in these fd folders, whether one could not be read)."""
    nodes: set[str] = set()
    denied = False
    for d in dirs:
        try:
            names = os.listdir(d)
        except PermissionError:
            denied = True
            continue
        except OSError:
            continue  # gone meanwhile
        for n in names:
            try:
                target = os.readlink(f"{d}/{n}")
            except OSError:
                continue  # closed meanwhile
            if match(target):
                nodes.add(target)
    return tuple(sorted(nodes)), denied


_USERS: dict[int, str] = {}


def _owner(pid: int, proc: str) -> Optional[str]:
    try:
        uid = os.stat(f"{proc}/{pid}").st_uid
    except OSError:
        return None
    name = _USERS.get(uid)
    if name is None:
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)  # as ps shows a uid with no name
        _USERS[uid] = name
    return name


def _cmdline(pid: int, comm: str, state: str, proc: str) -> str:
    from nbtui.files.secrets import redact_cmdline  # here, not at import: the server extension loads nbtui.host

    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as f:
            raw = f.read(CMDLINE_BYTES)
    except OSError:
        raw = b""
    args = [os.fsdecode(a) for a in raw.split(b"\0") if a]
    if not args:  # a zombie (or a process without memory) keeps only its name, as ps shows it
        return f"[{comm}]" + (" <defunct>" if state == "Z" else "")
    return redact_cmdline(" ".join(args))


def scan(node_pattern: Optional[str] = None, *, exclude: Iterable[int] = (), budget: float = BUDGET,
         proc: str = PROC) -> Found:
    """Every process (but ``exclude`` and nbtui itself) with a node matching the pattern
    open, in one pass over ``proc``; bounded by ``budget`` seconds."""
    match = _matcher(node_pattern or pattern())
    skip = set(exclude) | {os.getpid()}
    start = time.monotonic()
    try:
        pids = [int(n) for n in os.listdir(proc) if n.isdigit()]
    except OSError as e:
        return Found(note=f"holders: {proc} cannot be read ({e.strerror})")
    out: list[DeviceHolder] = []
    denied = left = 0
    for i, pid in enumerate(pids):
        if time.monotonic() - start > budget:
            left = len(pids) - i
            break
        if pid in skip:
            continue
        st = _stat(pid, proc)
        if st is None:
            continue  # gone
        comm, state, flags = st
        if flags & _PF_KTHREAD:
            continue
        nodes, no = _open_nodes(_fd_dirs(pid, state, proc), match)
        denied += no
        if nodes:
            out.append(DeviceHolder(pid=pid, user=_owner(pid, proc), cmdline=_cmdline(pid, comm, state, proc),
                                    state=state, nodes=nodes))
    notes = []
    if denied:
        notes.append("holders: only your own processes were looked at (run as root to see every holder)"
                     if os.geteuid() != 0 else f"holders: {denied} processes could not be read")
    if left:
        notes.append(f"holders: the scan stopped after {budget:g} s; {left} processes not looked at")
    return Found(tuple(out), "; ".join(notes) or None)


def gpu_minors(root: str = DRIVER_GPUS) -> dict[str, int]:
    """GPU UUID -> its device minor (``/dev/nvidiaN``), as the driver says; {} where it does not."""
    out: dict[str, int] = {}
    try:
        entries = os.listdir(root)
    except OSError:
        return out
    for e in entries:
        try:
            with open(f"{root}/{e}/information") as f:
                text = f.read(8192)
        except OSError:
            continue
        uuid = re.search(r"^GPU UUID:\s*(\S+)", text, re.M)
        minor = re.search(r"^Device Minor:\s*(\d+)", text, re.M)
        if uuid and minor:
            out[uuid.group(1)] = int(minor.group(1))
    return out


def unnamed(d: GpuDevice) -> Optional[int]:
    """The GPU's used memory the ledger names no process for (None: unknown)."""
    if d.ledger is None:
        return d.memory_used
    return d.ledger.unattributed + d.ledger.unassigned


def _on(h: DeviceHolder, minor: Optional[int]) -> bool:
    numbered = {int(m.group(1)) for n in h.nodes if (m := _NUMBERED.fullmatch(os.path.basename(n)))}
    return bool(numbered) and (minor is None or minor in numbered)


def attach(devices: Iterable[GpuDevice], found: Found, booked: Iterable[int],
           minors: dict[str, int]) -> tuple[GpuDevice, ...]:
    """``devices`` with their holders: for a GPU with unnamed memory, the processes of
    ``found`` holding its node that NVML lists for nothing (not in ``booked``); () where
    every byte is named."""
    booked = set(booked)
    out = []
    for d in devices:
        left = unnamed(d)
        if left is not None and left <= 0:
            out.append(replace(d, holders=(), holders_note=None))
            continue
        minor = minors.get(d.uuid)
        mine = tuple(h for h in found.holders if h.pid not in booked and _on(h, minor))
        out.append(replace(d, holders=mine, holders_note=found.note))
    return tuple(out)


class Watch:
    """A host view's holder scans: none while every GPU's bytes are named, at most one pass
    over /proc per read (a second sample within ``REUSE`` seconds reuses it)."""

    def __init__(self, node_pattern: Optional[str] = None):
        self.node_pattern = node_pattern
        self._last: Optional[tuple[float, Found]] = None
        self._minors: Optional[dict[str, int]] = None

    def join(self, devices: Iterable[GpuDevice], booked: Iterable[int]) -> tuple[GpuDevice, ...]:
        devices = tuple(devices)
        if all((u := unnamed(d)) is not None and u <= 0 for d in devices):
            return attach(devices, Found(), booked, {})
        now = time.monotonic()
        if self._last is None or now - self._last[0] > REUSE:
            self._last = (now, scan(self.node_pattern))
        if self._minors is None:
            self._minors = gpu_minors()  # fixed until the driver reloads
        return attach(devices, self._last[1], booked, self._minors)


def kill_refusal(pid: int, node_pattern: Optional[str] = None, proc: str = PROC) -> Optional[str]:
    """Why no signal can free ``pid``: it holds a GPU device node in D or Z state (None:
    no such reason). A D state seen once may be a moment's wait in the kernel: it is looked
    at again before it is called stuck."""
    st = _stat(pid, proc)
    if st is None or st[1] not in ("D", "Z"):
        return None
    nodes, _ = _open_nodes(_fd_dirs(pid, st[1], proc), _matcher(node_pattern or pattern()))
    if not nodes:
        return None
    for _ in range(3 if st[1] == "D" else 0):
        time.sleep(0.05)
        again = _stat(pid, proc)
        if again is None or again[1] != "D":
            return None
    return f"pid {pid} is in state {st[1]} ({STATES[st[1]]}) with {visible(nodes[0])} open: {UNKILLABLE}"
