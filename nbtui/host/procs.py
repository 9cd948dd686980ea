"""Local processes through psutil: kernels, their process trees, Jupyter leftovers.

Nothing here talks to a kernel. A kernel's process is the one whose command line names
its connection file (``kernel-<id>.json``); Jupyter processes also carry
``JPY_SESSION_NAME`` (the notebook) and ``JPY_PARENT_PID`` (the server that launched
them) in their environment, which their children inherit.

A process is known by (pid, create time): a PID that comes back with another create
time is another process, and nothing measured for the old one is kept.

Memory is RSS (resident set size), summed over a tree; shared pages count once per
process, so a tree's sum can exceed what freeing it would return.
"""

from __future__ import annotations

import functools
import os
import re
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional

import psutil

_CONN_FILE = re.compile(r"kernel-([0-9A-Za-z][0-9A-Za-z_.-]*?)\.json")
_ERRORS = (psutil.Error, OSError, ValueError)

Ident = tuple[int, float]  # (pid, create_time)


def kernel_id_in(cmdline: Iterable[str]) -> Optional[str]:
    """The kernel id of a connection file named on a command line, if one is.

    A client attached to a kernel (``jupyter console --existing kernel-<id>.json``) names
    the file too, but is not the kernel: it does not count.
    """
    previous = ""
    for arg in cmdline:
        m = _CONN_FILE.search(arg)
        if m and previous != "--existing" and not arg.startswith("--existing="):
            return m.group(1)
        previous = arg
    return None


def connection_folder(cmdline: Iterable[str]) -> Optional[str]:
    """The folder of the connection file a kernel's command line names (None: a bare name)."""
    for arg in cmdline:
        m = _CONN_FILE.search(arg)
        if m:
            path = arg.split("=", 1)[-1] if arg.startswith("-") else arg
            folder = os.path.dirname(path[: path.find(m.group(0)) + len(m.group(0))])
            return os.path.realpath(folder) if folder else None
    return None


def listening_pid(port: Optional[int]) -> Optional[int]:
    """The local process listening on TCP ``port`` (None: not found, or not ours to see)."""
    if not port:
        return None
    return listening_pids().get(port)


def listening_pids() -> dict[int, int]:
    """TCP port -> the one local process listening on it, from ONE look at the socket
    table (it reads every process's sockets: ~0.1-0.5 s on a busy host, so a sample asks
    once for all its servers, never once per server)."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except _ERRORS:
        return {}
    by_port: dict[int, set[int]] = {}
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.pid:
            by_port.setdefault(c.laddr.port, set()).add(c.pid)
    return {port: next(iter(pids)) for port, pids in by_port.items() if len(pids) == 1}


@dataclass(frozen=True)
class Facts:
    """What does not change in a process's life (read once per pid and create time)."""

    cmdline: tuple[str, ...]
    user: Optional[str]
    kernel_id: Optional[str]  # from a connection file on its own command line
    session_name: Optional[str] = None  # JPY_SESSION_NAME
    jpy_parent_pid: Optional[int] = None  # JPY_PARENT_PID
    environ_readable: bool = True
    # A JupyterHub single-user server's children carry its user and server name (the
    # spawner's JUPYTERHUB_USER / JUPYTERHUB_SERVER_NAME): a leftover is named by user.
    hub_user: Optional[str] = None
    hub_server_name: Optional[str] = None

    @property
    def jupyter_env(self) -> bool:
        return self.session_name is not None or self.jpy_parent_pid is not None

    @property
    def shown_cmdline(self) -> str:
        """The command line as shown anywhere (screen, JSON, plans, audit): secrets scrubbed
        (``secrets.redact_cmdline``), its secret arguments once for the process's life (a
        leftover is shown at every refresh), the tokens known now each time."""
        from nbtui.files.secrets import redact  # here, not at import: the server extension loads this module

        return redact(self._args_scrubbed)

    @functools.cached_property
    def _args_scrubbed(self) -> str:
        from nbtui.files.secrets import scrub_args

        return scrub_args(" ".join(self.cmdline))


@dataclass
class Proc:
    pid: int
    ppid: int
    create_time: float
    facts: Facts

    @property
    def ident(self) -> Ident:
        return (self.pid, self.create_time)


@dataclass(frozen=True)
class Stat:
    """One process's use at one sample; None where it could not be measured."""

    cpu_percent: Optional[float]
    memory_bytes: Optional[int]


@dataclass
class Scan:
    """Every visible process at one moment, as a forest."""

    procs: dict[int, Proc]
    time: float  # time.time() of the scan
    children: dict[int, list[int]] = field(default_factory=dict)
    # pid -> (CPU seconds, time.monotonic() of the read) as the scan read them (Linux: from
    # the same read of /proc/PID/stat); empty where the scan did not. Each its own moment: a
    # scan descheduled halfway (a busy host) would skew a CPU % timed from its start.
    cpu: dict[int, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.children:
            for p in self.procs.values():
                if p.ppid in self.procs and p.ppid != p.pid:
                    self.children.setdefault(p.ppid, []).append(p.pid)

    def tree(self, pid: int) -> list[int]:
        """``pid`` and all its descendants (empty if ``pid`` is not here)."""
        if pid not in self.procs:
            return []
        out, todo, seen = [], [pid], set()
        while todo:
            p = todo.pop()
            if p in seen:
                continue
            seen.add(p)
            out.append(p)
            todo.extend(self.children.get(p, ()))
        return out

    def ancestors(self, pid: int) -> Iterator[Proc]:
        seen = {pid}
        p = self.procs.get(pid)
        while p is not None and p.ppid in self.procs and p.ppid not in seen:
            seen.add(p.ppid)
            p = self.procs[p.ppid]
            yield p

    def kernel_roots(self) -> dict[str, int]:
        """kernel id -> the topmost process naming its connection file (oldest on a tie)."""
        found: dict[str, Proc] = {}
        for p in self.procs.values():
            kid = p.facts.kernel_id
            if kid is None:
                continue
            parent = self.procs.get(p.ppid)
            if parent is not None and parent.facts.kernel_id == kid:
                continue  # a wrapper (conda run, a launcher) carries it too: keep the top
            if kid not in found or p.create_time < found[kid].create_time:
                found[kid] = p
        return {kid: p.pid for kid, p in found.items()}

    def descends_from(self, pid: int, ancestor: int) -> bool:
        """Whether ``ancestor`` is ``pid``'s parent, grandparent, …"""
        return any(a.pid == ancestor for a in self.ancestors(pid))

    def belongs_to_server(self, pid: int, server_pid: Optional[int]) -> bool:
        """Whether the host confirms that process ``pid`` is a kernel of the server whose
        process is ``server_pid``: it descends from that process, or the connection file on
        its command line lies in that server's runtime folder (the folder of its
        ``jpserver-<pid>.json``) and it runs as the server's own user (a command line is its
        owner's to write: another user's process naming root's folder is not root's kernel).
        What a server *says* never counts."""
        if server_pid is None or server_pid not in self.procs or pid not in self.procs:
            return False
        if self.descends_from(pid, server_pid):
            return True
        user = self.procs[pid].facts.user
        if user is None or user != self.procs[server_pid].facts.user:
            return False
        folder = connection_folder(self.procs[pid].facts.cmdline)
        return folder is not None and os.path.isfile(os.path.join(folder, f"jpserver-{server_pid}.json"))

    def jupyter_pids(self) -> set[int]:
        """Kernels, processes with Jupyter's variables in their environment, and their descendants."""
        seeds = [p.pid for p in self.procs.values() if p.facts.kernel_id is not None or p.facts.jupyter_env]
        out: set[int] = set()
        for pid in seeds:
            if pid not in out:
                out.update(self.tree(pid))
        return out

    def kernel_id_of(self, pid: int) -> Optional[str]:
        """The kernel a process belongs to: from its own command line or an ancestor's."""
        p = self.procs.get(pid)
        if p is None:
            return None
        if p.facts.kernel_id:
            return p.facts.kernel_id
        return next((a.facts.kernel_id for a in self.ancestors(pid) if a.facts.kernel_id), None)

    def alive(self, pid: int, born_before: Optional[float] = None) -> bool:
        """Whether ``pid`` runs here (and, given ``born_before``, was created no later than that)."""
        p = self.procs.get(pid)
        if p is None:
            return False
        return born_before is None or p.create_time <= born_before + 1.0


def _read_facts(p: psutil.Process) -> Facts:
    try:
        cmdline = tuple(p.cmdline())
    except _ERRORS:
        cmdline = ()
    try:
        user: Optional[str] = p.username()
    except _ERRORS:
        user = None
    try:
        env: Optional[dict[str, str]] = p.environ()
    except _ERRORS:
        env = None
    return _facts(cmdline, user, env)


def _facts(cmdline: tuple[str, ...], user: Optional[str], env: Optional[dict[str, str]]) -> Facts:
    """A process's facts from its command line, user and environment (None: not ours to read)."""
    kid = kernel_id_in(cmdline)
    if env is None:
        return Facts(cmdline, user, kid, environ_readable=False)
    parent = env.get("JPY_PARENT_PID")
    try:
        parent_pid = int(parent) if parent else None
    except ValueError:
        parent_pid = None
    return Facts(cmdline, user, kid, env.get("JPY_SESSION_NAME") or None, parent_pid,
                 hub_user=env.get("JUPYTERHUB_USER") or None,
                 hub_server_name=env.get("JUPYTERHUB_SERVER_NAME", "") if env.get("JUPYTERHUB_USER") else None)


_PROC = "/proc"
# Linux: a scan reads each process's /proc/PID/stat itself, once: its parent, state, start
# and CPU times are all there, and measure() reads statm for RSS alone. Through psutil the
# scan read stat with as_dict's machinery around (most of a sample's CPU on a busy host),
# and measure() read stat again per process. The figures are psutil's own: the same files,
# the same fields, the same arithmetic. (stat's own rss field is not statm's: on Linux 6 it
# is a per-CPU approximation, a few pages off.)
_FAST = os.path.isfile(f"{_PROC}/self/stat") and hasattr(psutil, "_pslinux")
if _FAST:
    import pwd

    from psutil._common import parse_environ_block
    from psutil._pslinux import CLOCK_TICKS as _TICKS, PAGESIZE as _PAGE


# The most of a process's command line or environment read (kernel's ARG_MAX for both is 2 MiB
# by default, but a process may point them at any memory of its own: PR_SET_MM_MAP): a
# command line is cut there, an environment's variables after it are not seen.
FACTS_CAP = 4 << 20
# A child caught between its fork and its exec still shows its parent's command line and
# environment (a kernel so caught would be its server for good), and its start time does not
# move at the exec. What does move: where its arguments and environment lie (stat's
# arg_start..env_end, ``_layout``: a new address space at each exec), and most often its
# command name. Kept facts go when either moves, or, while a process is younger than this,
# its owner (a setuid without an exec). Where the layout is not shown (another user's
# process, read without the right to trace it; a host that does not randomize addresses), a
# process younger than this has its facts read again at each scan, not kept for its life.
FACTS_SETTLE = 5.0


def _whole(path: str, cap: int) -> Optional[bytes]:
    """A /proc file's bytes, at most ``cap`` of them (None: gone, or not ours to read)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        data = bytearray()  # grown in place (bytes += would copy all read so far at each chunk)
        while len(data) < cap:
            chunk = os.read(fd, min(1 << 16, cap - len(data)))
            if not chunk:
                break
            data += chunk
        return bytes(data)
    except OSError:
        return None
    finally:
        os.close(fd)


def _stat_fields(stat: bytes) -> list[bytes]:
    """A /proc/PID/stat line's fields after the command name (which may hold spaces and ")"),
    from its state up to its start time (the 22nd field, here [19]), no further."""
    return stat[stat.rfind(b")") + 2:].split(None, 20)


def _layout(stat: bytes) -> bytes:
    """Where a process's arguments and environment lie: a /proc/PID/stat line's arg_start,
    arg_end, env_start and env_end (Linux 3.5+, the four fields before the last), new at each
    exec; b"" where they are not shown (zeros: a kernel thread, or a process not ours to trace)
    or not in order (no such fields)."""
    tail = stat.rsplit(None, 5)
    if len(tail) != 6 or tail[1] == b"0":
        return b""
    try:
        in_order = 0 < int(tail[1]) < int(tail[2]) <= int(tail[3]) < int(tail[4])
    except ValueError:
        return b""
    return b" ".join(tail[1:5]) if in_order else b""


def _randomized() -> bool:
    """Whether the host places each program's stack at random (``kernel.randomize_va_space``
    not 0): else an exec into a program with arguments and environment of the same sizes
    lands at the same ``_layout``, which then says nothing. (A process may turn it off for
    itself and its children, ``setarch -R``: it only keeps its own facts stale so.)"""
    try:
        with open(f"{_PROC}/sys/kernel/randomize_va_space", "rb") as f:
            return f.read().strip() not in (b"0", b"")
    except OSError:
        return False


_UID = re.compile(rb"Uid:\t(\d+)\t")


def _proc_facts(pid: int, start: bytes, users: dict[int, str]) -> Optional[Facts]:
    """Linux: a process's facts read from /proc as psutil reads them (its command line split
    as psutil splits it, the name of its real uid, its environment), without a psutil
    Process (which reads the boot time for its create time, and stat twice over): 40 us a
    process instead of 115 on this project's machine, paid by every process in a first scan
    (each `ls`, each screen's start). Bytes are decoded
    as psutil decodes them, but exactly (no newline translation). None where the PID is
    another process's by the end (its start field moved) or it is gone. ``users``: uid ->
    name, kept for the scan."""
    base = f"{_PROC}/{pid}/"
    raw = _whole(base + "cmdline", FACTS_CAP)
    if raw is not None and len(raw) >= FACTS_CAP and b"\0" in raw:
        raw = raw[:raw.rfind(b"\0") + 1]  # cut at the cap: its whole arguments
    cmdline: tuple[str, ...] = ()
    if raw:
        data = os.fsdecode(raw)
        sep = "\x00" if data.endswith("\x00") else " "
        if data.endswith(sep):
            data = data[:-1]
        args = data.split(sep)
        if sep == "\x00" and len(args) == 1 and " " in data:  # (a process that set its title with spaces)
            args = data.split(" ")
        cmdline = tuple(args)
    user: Optional[str] = None
    status = _whole(base + "status", FACTS_CAP)
    found = _UID.search(status) if status else None
    if found is not None:
        uid = int(found.group(1))
        user = users.get(uid)
        if user is None:
            try:
                user = pwd.getpwuid(uid).pw_name
            except KeyError:  # a uid with no name: its number, as psutil says it
                user = str(uid)
            users[uid] = user
    block = _whole(base + "environ", FACTS_CAP)
    env = parse_environ_block(os.fsdecode(block)) if block is not None else None
    again = _whole(base + "stat", FACTS_CAP)
    if again is None or _stat_fields(again)[19:20] != [start]:
        return None
    return _facts(cmdline, user, env)


def _rss(pid: int) -> Optional[int]:
    """RSS in bytes from /proc/PID/statm, as psutil's memory_info (None: gone, unreadable)."""
    try:
        fd = os.open(f"{_PROC}/{pid}/statm", os.O_RDONLY)
    except OSError:
        return None
    try:
        return int(os.read(fd, 512).split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None
    finally:
        os.close(fd)


def _boot_time() -> float:
    with open(f"{_PROC}/stat", "rb") as f:
        for line in f:
            if line.startswith(b"btime"):
                return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


class ProcessTable:
    """Scans the host's processes; keeps facts and CPU baselines across scans."""

    def __init__(self) -> None:
        # ident -> (its command name and ``_layout`` when its facts were read (Linux; b"" through psutil), facts)
        self._facts: dict[Ident, tuple[bytes, Facts]] = {}
        self._handles: dict[Ident, psutil.Process] = {}
        self._cpu: dict[Ident, tuple[float, float]] = {}  # ident -> (cpu seconds, monotonic time)
        self._last_measure: Optional[float] = None  # time.time() of the last measure()

    def scan(self) -> Scan:
        if _FAST:
            try:
                return self._scan_proc()
            except OSError:  # /proc itself unreadable: psutil says what it can
                pass
        return self._scan_psutil()

    def _scan_proc(self) -> Scan:
        """Linux: every process's stat read once, here (see _FAST); facts as before, read
        through psutil for a process not seen before."""
        boot = _boot_time()  # as psutil: the create time is boot time + start ticks / CLOCK_TICKS
        procs: dict[int, Proc] = {}
        cpu: dict[int, tuple[float, float]] = {}
        facts_of, kept = self._facts, {}
        # A process read in the middle of its exec has no command line yet (the kernel sets it
        # up after closing the parent's pipe): its facts are read again at the next scan. One
        # read before its exec has its parent's: they go once its layout or command name moves
        # (see FACTS_SETTLE), not kept for its life (a kernel caught so would never be known by
        # its connection file). Kernel threads (kthreadd's children) have no command line for good.
        settled = time.time() - FACTS_SETTLE
        randomized = _randomized()  # (the layout tells an exec only where addresses are random)
        users: dict[int, str] = {}  # uid -> name, for this scan's new processes
        clock = time.monotonic
        for name in os.listdir(_PROC):
            if not name.isdigit():
                continue
            try:  # os.open, not open(): no buffered file object per process (half the cost)
                fd = os.open(f"{_PROC}/{name}/stat", os.O_RDONLY)
            except OSError:
                continue  # gone meanwhile, or not ours to read
            try:
                data = os.read(fd, 4096)  # one read: a stat line is a few hundred bytes
                read_at = clock()
            except OSError:
                continue
            finally:
                os.close(fd)
            fields = _stat_fields(data)
            if len(fields) < 20 or fields[0] == b"Z":
                continue  # a zombie holds nothing
            pid, ctime = int(name), float(fields[19]) / _TICKS + boot
            ident = (pid, ctime)
            layout = _layout(data) if randomized else b""
            mark = data[data.find(b"(") + 1:data.rfind(b")")] + b"\0" + layout  # its command name, where its arguments lie
            if layout and ctime > settled:
                # Young: its owner too (a setuid without an exec moves no layout), until it settles.
                try:
                    mark += b"\0%d" % os.stat(f"{_PROC}/{name}").st_uid
                except OSError:
                    continue  # gone meanwhile
            known = facts_of.get(ident)
            if known is not None and known[0] == mark:
                facts = known[1]
            else:  # new, or exec'd since
                read = _proc_facts(pid, fields[19], users)
                if read is None:
                    continue  # gone, or another process took the PID since the read: the next scan sees it
                facts = read
            ppid = int(fields[1])
            if (layout or ctime <= settled) and (facts.cmdline or ppid in (0, 2) or pid == 2):
                kept[ident] = (mark, facts)
            procs[pid] = Proc(pid, ppid, ctime, facts)
            cpu[pid] = (float(fields[11]) / _TICKS + float(fields[12]) / _TICKS, read_at)  # utime + stime, as psutil
        self._facts = kept
        self._handles = {}
        live = {p.ident for p in procs.values()}  # (a process whose facts are read again keeps its baseline)
        self._cpu = {i: v for i, v in self._cpu.items() if i in live}
        return Scan(procs, time.time(), cpu=cpu)

    def _scan_psutil(self) -> Scan:
        procs: dict[int, Proc] = {}
        handles: dict[Ident, psutil.Process] = {}
        for p in psutil.process_iter(["ppid", "create_time", "status"]):
            ppid, ctime = p.info.get("ppid"), p.info.get("create_time")
            if ppid is None or ctime is None or p.info.get("status") == psutil.STATUS_ZOMBIE:
                continue  # gone, dead, or not ours to read
            ident = (p.pid, ctime)
            known = self._facts.get(ident)
            facts = known[1] if known is not None else _read_facts(p)
            procs[p.pid] = Proc(p.pid, ppid, ctime, facts)
            handles[ident] = self._handles.get(ident, p)
        settled = time.time() - FACTS_SETTLE  # (see _scan_proc)
        self._facts = {i: (b"", procs[i[0]].facts) for i in handles if i[1] <= settled}
        self._handles = handles
        self._cpu = {i: v for i, v in self._cpu.items() if i in handles}
        return Scan(procs, time.time())

    def measure(self, scan: Scan, pids: Iterable[int]) -> dict[int, Stat]:
        """CPU % (since the previous measure, or since birth for a process born after it)
        and RSS of each pid; CPU % is None for a process with no earlier baseline."""
        now_mono, now_wall = time.monotonic(), time.time()
        previous = self._last_measure
        out: dict[int, Stat] = {}
        for pid in pids:
            proc = scan.procs.get(pid)
            if proc is None:
                continue
            if scan.cpu:
                (cpu, at), rss = scan.cpu[pid], _rss(pid)  # CPU % up to the scan's read of it
                if rss is None:
                    out[pid] = Stat(None, None)
                    continue
            else:
                handle = self._handles.get(proc.ident)
                if handle is None:
                    continue
                try:
                    with handle.oneshot():
                        t = handle.cpu_times()
                        rss = handle.memory_info().rss
                except _ERRORS:
                    out[pid] = Stat(None, None)
                    continue
                cpu, at = t.user + t.system, now_mono
            base = self._cpu.get(proc.ident)
            pct: Optional[float] = None
            if base is not None:
                elapsed = at - base[1]
                if elapsed > 0:
                    pct = max(0.0, (cpu - base[0]) / elapsed * 100.0)
            elif previous is not None and proc.create_time >= previous:
                # Born since the last measure: its whole life is the interval.
                life = now_wall - proc.create_time
                if life > 0.05:
                    pct = max(0.0, cpu / life * 100.0)
            self._cpu[proc.ident] = (cpu, at)
            out[pid] = Stat(None if pct is None else round(pct, 1), int(rss))
        self._last_measure = now_wall
        return out


def uses_nvidia(pid: int) -> Optional[bool]:
    """Whether a process has an NVIDIA device open (None: cannot tell, e.g. not ours to read).

    Used to confirm that a PID reported by NVML is this process and not a namesake from
    another PID namespace.
    """
    base = f"/proc/{pid}/fd"
    try:
        names = os.listdir(base)
    except OSError:
        return None
    from nbtui.host.nvml_standin import device_prefix  # the simulated GPU's device node (tests, demo)

    standin = device_prefix()
    prefixes = ("/dev/nvidia",) if standin is None else ("/dev/nvidia", standin)
    for name in names:
        try:
            if os.readlink(f"{base}/{name}").startswith(prefixes):
                return True
        except OSError:
            continue
    return False
