"""``LocalHost``, the local host's view of a fleet (a ``nbtui.sources.HostView``): usage of
every kernel found here, leftover Jupyter processes and the facts about them, unattributed
GPU memory and the GPU summary. Zero contact with any kernel.

One ``LocalHost`` lives as long as the view (the TUI keeps it across refreshes): CPU %
needs two samples of the same process. A one-shot command calls ``prime()`` as it
begins to read the servers, and waits what is left of the interval it returns once they
have answered, so its CPU % is measured rather than a meaningless 0; a refresh that
samples sooner gets an unknown CPU % (measured from the next one), never a noisy figure.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Container, Iterable, Mapping, Optional, Sequence

from nbtui.core import model, orphans
from nbtui.host import gpu as gpu_mod
from nbtui.host import devholders, ledger
from nbtui.host.procs import Ident, Proc, ProcessTable, Scan, Stat, listening_pids, uses_nvidia
from nbtui.sources import HostSample
from nbtui.sources.cmdline import is_jupyter_server
if TYPE_CHECKING:  # the server extension loads this module: no config (nor httpx) at run time
    from nbtui.files.config import Settings
LOCAL: model.UsageSource = "local"
DEFAULT_IDLE = 3600.0  # seconds; config's [orphans] idle default
# The shortest interval a CPU % is measured over: psutil's CPU times tick every 10 ms.
MIN_CPU_INTERVAL = 0.15
FIRST_SAMPLE_NOTE = "cpu: measured from the next refresh (needs two samples)"


@dataclass(frozen=True)
class TreeUsage:
    """Usage of one process tree, before it is tied to a kernel key."""

    pid: int
    pids: tuple[int, ...]
    cpu_percent: Optional[float]
    memory_bytes: Optional[int]
    gpu: gpu_mod.TreeGpu
    note: Optional[str]
    user: Optional[str] = None  # the owner of its root process

    def usage(self, source: model.UsageSource, host: Optional[str]) -> model.Usage:
        return model.Usage(
            source=source, pid=self.pid, host=host, cpu_percent=self.cpu_percent,
            memory_bytes=self.memory_bytes, gpu_memory_bytes=self.gpu.memory_bytes,
            gpu_percent=self.gpu.percent, gpus=self.gpu.gpus, pids=self.pids, note=self.note,
        )


def _orphan_kernel_alive(scan: Scan, proc: Proc, kernel_id: Optional[str], session: Optional[str],
                         server_alive: Optional[bool], server: Optional[model.ServerInfo],
                         kernels: Sequence[model.Kernel], roots: Mapping[str, int]) -> Optional[bool]:
    """Whether the kernel that started a Jupyter process with no kernel above it lives.

    Usually it is gone (the process was reparented when its kernel died). But a live
    kernel of the same id (a restart keeps the id) or the same notebook that is OLDER than
    the process may have started it and let it go (``nohup … &``): nobody can say (None).
    A live one younger than the process is a restart: the process's own kernel is gone.
    """
    candidates = []
    if kernel_id is not None:
        candidates.append(kernel_id)
    elif session and server is not None:
        candidates += [k.kernel_id for k in kernels if k.server == server.name and k.session
                       and (session == k.session.path or session.endswith("/" + k.session.path.lstrip("/")))]
    elif server_alive and server is None:
        return None  # its server lives but was not read: its kernels are unknown
    for kid in candidates:
        root = roots.get(kid)
        if root is not None and scan.procs[root].create_time <= proc.create_time:
            return None
    return False


def ledger_kinds(scan: Scan, by_pid: Mapping[int, Mapping[str, model.GpuUse]], in_kernels: Container[int],
                 in_terminals: Container[int], leftovers: Container[int],
                 ) -> tuple[dict[int, str], dict[int, tuple[Optional[str], str]]]:
    """Each local GPU-holding PID's ledger part, and (user, command) of the other ones."""
    kinds: dict[int, str] = {}
    for pid in by_pid:
        if pid in in_kernels:
            kinds[pid] = ledger.KERNELS
        elif pid in in_terminals:
            kinds[pid] = ledger.TERMINALS
        elif pid in leftovers:
            kinds[pid] = ledger.LEFTOVERS
        else:
            kinds[pid] = ledger.OTHER
    names = {pid: (scan.procs[pid].facts.user, scan.procs[pid].facts.shown_cmdline)
             for pid, kind in kinds.items() if kind == ledger.OTHER}
    return kinds, names


def _session_leader(pid: int) -> bool:
    try:
        return os.getsid(pid) == pid
    except OSError:
        return False


def _on_gpu(pids: Iterable[int], by_pid: Mapping[int, Mapping[str, model.GpuUse]]) -> list[int]:
    """The PIDs of a tree that NVML reports and that are confirmed as these processes."""
    return [p for p in pids if p in by_pid]


def _sum(values: Iterable[Optional[float]]) -> Optional[float]:
    values = list(values)
    if not values or any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None)  # (every one is known here)


def _baselines(table: ProcessTable) -> bool:
    """Take CPU baselines of every Jupyter process in ``table``; whether there was any."""
    scan = table.scan()
    pids = scan.jupyter_pids()
    # Terminals' shells and jobs carry no Jupyter variables: everything under a server.
    for p in scan.procs.values():
        if is_jupyter_server(p.facts.cmdline):
            pids.update(scan.tree(p.pid))
    table.measure(scan, pids)
    return bool(pids)


class _EarlyPrime:
    """CPU baselines taken as a one-shot command starts (``prime_early``), for the LocalHost it
    makes later: the MIN_CPU_INTERVAL a measured CPU % needs then passes while the command
    loads and reads, not after its read. Taken there and then, not on a thread: a thread that
    reads /proc file by file waits for the GIL after each read while the command imports (a
    9 ms scan took 140)."""

    def __init__(self) -> None:
        self.table = ProcessTable()
        self.at: Optional[float] = None  # (monotonic) when the baselines were taken; None: none were
        self.any = False  # whether there was any Jupyter process
        try:
            self.any = _baselines(self.table)
            self.at = time.monotonic()
        except Exception:  # (a /proc that cannot be read: the host view primes as it would have)
            self.at = None


_early: Optional[_EarlyPrime] = None


def prime_early(drop: bool = False) -> None:
    """Take the host's CPU baselines now, for the next LocalHost made in this process that
    shows CPU % (``nbtui ls``, as it starts: a Jupyter process on the host cost every listing
    a 0.15 s wait, the listing 0.42 s instead of 0.25); ``drop``: forget any not taken yet."""
    global _early
    if drop:
        _early = None
    elif _early is None:
        _early = _EarlyPrime()


def _take_early() -> Optional[_EarlyPrime]:
    global _early
    early, _early = _early, None
    return early if early is not None and early.at is not None else None


class LocalHost:
    """psutil + NVML on this machine. ``sample()`` is what the fleet calls each refresh."""

    def __init__(self, settings: Optional[Settings] = None, *, nvml: gpu_mod.Nvml | None = None,
                 table: ProcessTable | None = None, hostname: Optional[str] = None,
                 gpu_pid_check: Callable[[int], Optional[bool]] = uses_nvidia, cpu: bool = True):
        # ``cpu``: whether its reader shows CPU %. One that does not (cull, kill) takes no
        # baselines and waits no MIN_CPU_INTERVAL for a figure it never shows: CPU % stays unknown.
        self.cpu = cpu
        self.idle_threshold = settings.orphan_idle if settings is not None else DEFAULT_IDLE
        early = _take_early() if cpu and table is None else None
        self.table = early.table if early is not None else (table or ProcessTable())
        self.nvml = nvml or gpu_mod.Nvml()
        self.hostname = hostname or socket.gethostname()
        self._primed = early is not None
        self._primed_at: Optional[float] = None  # (monotonic) when prime() took its baselines
        self._early_until: Optional[float] = None  # (monotonic) when baselines taken early are old enough
        if early is not None and early.any and early.at is not None:  # (at: for the type checker)
            self._primed_at, self._early_until = early.at, early.at + MIN_CPU_INTERVAL
        self._gpu_pid_check = gpu_pid_check
        self._nvidia: dict[Ident, bool] = {}  # NVML PID confirmed as this local process
        self._kernel_of: dict[Ident, str] = {}  # processes seen in a kernel's tree, for after it dies
        self._listeners: dict[str, Ident] = {}  # server URL -> the process listening on its port
        self._listening: tuple[Optional[Scan], dict[int, int]] = (None, {})  # port -> listener, per scan
        self._shell_of: dict[str, Ident] = {}  # terminal key -> its shell, once tied
        self._holders = devholders.Watch()  # who holds the GPU memory NVML names nobody for

    # -- sampling ---------------------------------------------------------------------------

    def prime(self) -> float:
        """Take CPU baselines of every Jupyter process; returns how long to wait before
        ``sample()`` for a measured CPU % (0 once primed, and where CPU % is not wanted)."""
        if self._primed or not self.cpu:
            return 0.0
        any_jupyter = _baselines(self.table)
        self._primed = True
        self._primed_at = time.monotonic()
        return MIN_CPU_INTERVAL if any_jupyter else 0.0

    def early_wait(self) -> Optional[float]:
        """Where the baselines were taken as the process started (``prime_early``): how long
        until they are old enough for a measured CPU % (0: now); None where they were not.
        Asked on the fleet's loop, without a thread: a thread's turn at the GIL may come tens
        of ms late while the loop parses answers."""
        until, self._early_until = self._early_until, None
        return None if until is None else max(0.0, until - time.monotonic())

    def _too_soon(self) -> bool:
        """Whether this sample comes sooner than MIN_CPU_INTERVAL after ``prime()``'s
        baselines (it is the first since them): a CPU % over so short an interval is noise."""
        at, self._primed_at = self._primed_at, None
        return at is not None and time.monotonic() - at < MIN_CPU_INTERVAL - 0.005  # (a timer's early wake)

    def sample(self, servers: Sequence[model.ServerInfo], kernels: Sequence[model.Kernel],
               terminals: Iterable[model.Terminal] = ()) -> HostSample:
        scan = self.table.scan()
        roots = scan.kernel_roots()
        by_key: dict[str, int] = {}
        idle_keys: set[str] = set()
        notes = self._attribute(scan, roots, servers, kernels, by_key)
        for k in kernels:
            if k.key in by_key and orphans.kernel_is_idle(k, self.idle_threshold):
                idle_keys.add(k.key)
        in_kernels = {p for pid in by_key.values() for p in scan.tree(pid)}
        terminals = list(terminals)
        shells = self._shells(scan, servers, terminals, in_kernels)
        term_trees = {key: [p for p in scan.tree(pid) if p not in in_kernels]
                      for key, (pid, _note) in shells.items() if pid is not None}
        in_terminals = {p for tree in term_trees.values() for p in tree}
        # A terminal's job is the terminal's, never a leftover.
        leftover = sorted(scan.jupyter_pids() - in_kernels - in_terminals)
        stats = self.table.measure(scan, in_kernels | in_terminals | set(leftover))
        first = not self._primed or self._too_soon()
        if first:  # one sample, or two too close together (a refresh that did not wait): not measured
            stats = {pid: Stat(None, st.memory_bytes) for pid, st in stats.items()}
        self._primed = True
        reading = self.nvml.read()
        by_pid = self._local_gpu_pids(scan, gpu_mod.per_pid(reading))
        trees = {key: self._tree(scan, pid, stats, reading, by_pid, first) for key, pid in by_key.items()}
        for key, t in trees.items():
            kid = model.split_kernel_key(key)[1]
            for p in t.pids:
                self._kernel_of[scan.procs[p].ident] = kid
        live = {p.ident for p in scan.procs.values()}
        self._kernel_of = {i: k for i, k in self._kernel_of.items() if i in live}
        processes, facts = self._leftovers(scan, leftover, stats, reading, by_pid, servers, kernels)
        attributed = in_kernels | in_terminals | set(leftover)
        filled = []
        for term in terminals:
            pid, note = shells.get(term.key, (None, None))
            if pid is None:
                filled.append(replace(term, pid=None, note=note))  # a hint not confirmed here is dropped
                continue
            tree = self._tree(scan, pid, stats, reading, by_pid, first, pids=term_trees[term.key])
            filled.append(replace(term, pid=pid, user=tree.user, usage=tree.usage(LOCAL, self.hostname)))
            if orphans.is_idle(term.idle_seconds, None, self.idle_threshold):
                idle_keys.add(term.key)
                trees[term.key] = tree
        kinds, names = ledger_kinds(scan, by_pid, in_kernels, in_terminals, set(leftover))
        devices = gpu_mod.devices(reading, [_on_gpu(trees[k].pids, by_pid) for k in idle_keys], host=self.hostname)
        usage = {key: t.usage(LOCAL, self.hostname) for key, t in trees.items() if key in by_key}
        usage.update({key: model.Usage(source=LOCAL, host=self.hostname, note=note) for key, note in notes.items()})
        return HostSample(
            usage=usage,
            processes=tuple(processes),
            facts=facts,
            unattributed_gpu=gpu_mod.unattributed(reading, attributed & set(by_pid)),
            gpus=self._holders.join(ledger.with_ledgers(devices, ledger.build(reading, kinds, names)), by_pid),
            gpu_note=reading.note,
            terminals={t.key: t for t in filled},
            users={key: t.user for key, t in trees.items() if key in by_key},
        )

    def kernel_trees(self, kernel_pids: Mapping[str, Optional[int]], idle: Iterable[str] = (),
                     ) -> tuple[dict[str, TreeUsage], tuple[model.GpuDevice, ...], Optional[str]]:
        """Usage of the given kernels (kernel id -> PID, None: find it by its connection
        file), for the server extension: (usage by kernel id, GPU devices, GPU note)."""
        trees, _terms, devices, note = self.server_report(kernel_pids, idle)
        return trees, devices, note

    def server_report(self, kernel_pids: Mapping[str, Optional[int]], idle: Iterable[str] = (),
                      terminal_pids: Mapping[str, Optional[int]] = {}, idle_terminals: Iterable[str] = (),
                      ) -> tuple[dict[str, TreeUsage], dict[str, TreeUsage], tuple[model.GpuDevice, ...], Optional[str]]:
        """``kernel_trees`` plus the trees of a server's terminals (name -> shell PID, which
        the server knows) and each GPU's ledger: (kernel trees, terminal trees, devices, note)."""
        scan = self.table.scan()
        roots = scan.kernel_roots()
        found: dict[str, int] = {}
        for kid, pid in kernel_pids.items():
            if pid is not None and pid in scan.procs:
                own = scan.procs[pid].facts.kernel_id
                if own is None or own == kid:  # not a PID reused by another kernel
                    found[kid] = pid
                    continue
            if kid in roots:
                found[kid] = roots[kid]
        pids = {p for pid in found.values() for p in scan.tree(pid)}
        shells = {name: pid for name, pid in terminal_pids.items() if pid is not None and pid in scan.procs}
        term_pids = {name: [p for p in scan.tree(pid) if p not in pids] for name, pid in shells.items()}
        in_terms = {p for tree in term_pids.values() for p in tree}
        leftover = scan.jupyter_pids() - pids - in_terms
        stats = self.table.measure(scan, pids | in_terms)
        first = not self._primed
        self._primed = True
        reading = self.nvml.read()
        by_pid = self._local_gpu_pids(scan, gpu_mod.per_pid(reading))
        trees = {kid: self._tree(scan, pid, stats, reading, by_pid, first) for kid, pid in found.items()}
        terms = {name: self._tree(scan, shells[name], stats, reading, by_pid, first, pids=tree)
                 for name, tree in term_pids.items()}
        idle, idle_terminals = set(idle), set(idle_terminals)
        idle_trees = [_on_gpu(t.pids, by_pid) for kid, t in trees.items() if kid in idle]
        idle_trees += [_on_gpu(t.pids, by_pid) for name, t in terms.items() if name in idle_terminals]
        devices = gpu_mod.devices(reading, idle_trees, host=self.hostname)
        kinds, names = ledger_kinds(scan, by_pid, pids, in_terms, leftover)
        devices = ledger.with_ledgers(devices, ledger.build(reading, kinds, names))
        return trees, terms, devices, reading.note

    # -- attribution ------------------------------------------------------------------------

    def _server_pid(self, scan: Scan, s: model.ServerInfo) -> Optional[int]:
        """The server's process: as discovered, else the one listening on its loopback port."""
        if s.pid is not None:
            return s.pid
        if not s.local:
            return None
        from urllib.parse import urlsplit

        try:
            port = urlsplit(s.url).port
        except ValueError:
            return None
        cached = self._listeners.get(s.url)
        if cached is not None and cached[0] in scan.procs and scan.procs[cached[0]].ident == cached:
            return cached[0]
        if self._listening[0] is not scan:  # one look at the socket table per scan, for every server
            self._listening = (scan, listening_pids())
        pid = self._listening[1].get(port) if port else None
        if pid is not None and pid in scan.procs:
            self._listeners[s.url] = scan.procs[pid].ident
        return pid

    def _attribute(self, scan: Scan, roots: dict[str, int], servers: Sequence[model.ServerInfo],
                   kernels: Sequence[model.Kernel], by_key: dict[str, int]) -> dict[str, str]:
        """Fill ``by_key`` (kernel key -> its root PID) with what the host confirms: the
        process descends from that server's process or its connection file lies in that
        server's runtime folder. A server listing another server's kernel id gets nothing
        (a lying server cannot steer usage, kill or cull onto another's kernel); returns the
        note for each kernel the host could not tie to its server."""
        info = {s.name: s for s in servers}
        claims: dict[str, list[model.Kernel]] = {}
        for k in kernels:
            if k.kernel_id in roots and k.server in info and info[k.server].local:
                claims.setdefault(k.kernel_id, []).append(k)
        notes: dict[str, str] = {}
        for kid, claimants in claims.items():
            pid = roots[kid]
            server_pids = {k.key: self._server_pid(scan, info[k.server]) for k in claimants}
            # The nearest server process above the kernel is its server (a server may itself
            # run under another program that also listens on a port).
            nearest = next((a.pid for a in scan.ancestors(pid) if a.pid in server_pids.values()), None)
            confirmed = [k for k in claimants if nearest is not None and server_pids[k.key] == nearest]
            if not confirmed:  # no claimant's process is above it: its connection file decides
                confirmed = [k for k in claimants if scan.belongs_to_server(pid, server_pids[k.key])]
            if len(confirmed) == 1:
                by_key[confirmed[0].key] = pid
            owner = confirmed[0].server if len(confirmed) == 1 else None
            for k in claimants:
                if k.key in by_key:
                    continue
                if owner is not None:
                    notes[k.key] = (f"kernel id also listed by {owner}, whose process it is: "
                                    f"not attributed to {k.server}")
                elif len(claimants) > 1:
                    notes[k.key] = (f"kernel id listed by {', '.join(c.server for c in claimants)}; "
                                    f"the host confirms none: not attributed")
                else:
                    notes[k.key] = ("a local process names this kernel id, but the host cannot tie it to "
                                    f"{k.server}'s process: not attributed")
        return notes

    # -- pieces -----------------------------------------------------------------------------

    def _local_gpu_pids(self, scan: Scan, by_pid: dict[int, dict[str, model.GpuUse]],
                        ) -> dict[int, dict[str, model.GpuUse]]:
        """Keep NVML's PIDs that are processes here: same PID, and (where we can look) an
        NVIDIA device open. A PID from another namespace is never guessed onto a process."""
        out = {}
        for pid, uses in by_pid.items():
            proc = scan.procs.get(pid)
            if proc is None:
                continue
            ok = self._nvidia.get(proc.ident)
            if ok is None:
                ok = self._gpu_pid_check(pid) is not False
                self._nvidia[proc.ident] = ok
            if ok:
                out[pid] = uses
        live = {p.ident for p in scan.procs.values()}
        self._nvidia = {i: v for i, v in self._nvidia.items() if i in live}
        return out

    def _tree(self, scan: Scan, pid: int, stats: dict[int, Stat], reading: gpu_mod.GpuReading,
              by_pid: Mapping[int, Mapping[str, model.GpuUse]], first: bool,
              pids: Optional[list[int]] = None) -> TreeUsage:
        pids = scan.tree(pid) if pids is None else pids
        mine = [stats.get(p, Stat(None, None)) for p in pids]
        cpu = _sum(s.cpu_percent for s in mine)
        mem = _sum(s.memory_bytes for s in mine)
        notes = []
        if cpu is None:
            notes.append(FIRST_SAMPLE_NOTE if first or stats.get(pid, Stat(None, 0)).cpu_percent is None
                         else "cpu: a process of the tree could not be read")
        if reading.note:
            notes.append("gpu: " + reading.note)
        return TreeUsage(
            pid=pid, pids=tuple(pids), cpu_percent=None if cpu is None else round(cpu, 1),
            memory_bytes=None if mem is None else int(mem),
            gpu=gpu_mod.tree_gpu(reading, [p for p in pids if p in by_pid], by_pid),
            note="; ".join(notes) or None,
            user=scan.procs[pid].facts.user if pid in scan.procs else None,
        )

    def _shells(self, scan: Scan, servers: Sequence[model.ServerInfo], terminals: Iterable[model.Terminal],
                in_kernels: Container[int]) -> dict[str, tuple[Optional[int], Optional[str]]]:
        """terminal key -> (its shell's PID, or None and why), for terminals of servers whose
        process runs here. A terminado shell is a child of the server that leads its own
        session (on its pty) and is no kernel. Once a shell is tied to a terminal it stays
        tied (by PID and create time) while it lives, so the one new shell of a new terminal
        is known too; where several candidates remain, nothing is guessed."""
        out: dict[str, tuple[Optional[int], Optional[str]]] = {}
        local = {s.name: s.pid for s in servers if s.ok and s.pid is not None and s.pid in scan.procs}
        by_server: dict[str, list] = {}
        for t in terminals:
            by_server.setdefault(t.server, []).append(t)
        live = {p.ident for p in scan.procs.values()}
        self._shell_of = {k: i for k, i in self._shell_of.items() if i in live}
        for name, terms in by_server.items():
            spid = local.get(name)
            if spid is None:
                continue
            cands = {c for c in scan.children.get(spid, ()) if c not in in_kernels
                     and scan.procs[c].facts.kernel_id is None and _session_leader(c)}
            left = []
            for t in terms:
                ident = self._shell_of.get(t.key)
                if ident is not None and ident[0] in cands:
                    out[t.key] = (ident[0], None)
                    cands.discard(ident[0])
                elif t.pid is not None and t.pid in cands:
                    # Named by the server (its extension) and confirmed here: its own shell.
                    self._shell_of[t.key] = scan.procs[t.pid].ident
                    out[t.key] = (t.pid, None)
                    cands.discard(t.pid)
                else:
                    left.append(t)
            if len(left) == 1 and len(cands) == 1:
                pid = cands.pop()
                self._shell_of[left[0].key] = scan.procs[pid].ident
                out[left[0].key] = (pid, None)
                continue
            for t in left:
                out[t.key] = (None, "its shell was not found among the server's processes" if not cands else
                              f"{len(cands)} shells of {len(left)} terminals cannot be told apart here "
                              f"(the nbtui server extension names them)")
        return out

    def _leftovers(self, scan: Scan, pids: list[int], stats: Mapping[int, Stat], reading: gpu_mod.GpuReading,
                   by_pid: Mapping[int, Mapping[str, model.GpuUse]], servers: Sequence[model.ServerInfo],
                   kernels: Sequence[model.Kernel],
                   ) -> tuple[list[model.Process], dict[int, orphans.ProcessFacts]]:
        """The leftover processes and what this host knows of each (judged by the orphan rules)."""
        live_servers = {s.pid: s for s in servers if s.ok and s.pid is not None}
        listed_ids = {k.kernel_id for k in kernels}
        roots = scan.kernel_roots()
        out = []
        facts: dict[int, orphans.ProcessFacts] = {}
        for pid in pids:
            proc = scan.procs[pid]
            chain = [proc, *scan.ancestors(pid)]
            session = next((p.facts.session_name for p in chain if p.facts.session_name), None)
            server_pid = next((p.facts.jpy_parent_pid for p in chain if p.facts.jpy_parent_pid), None)
            hub_of = next((p.facts for p in chain if p.facts.hub_user), None)  # a hub user's server's child
            root = next((p for p in chain if p.facts.kernel_id), None)
            kernel_id = root.facts.kernel_id if root else self._kernel_of.get(proc.ident)
            server_alive = None if server_pid is None else scan.alive(server_pid, born_before=proc.create_time)
            if root is None:
                server = live_servers.get(server_pid) if server_alive and server_pid is not None else None
                kernel_alive: Optional[bool] = _orphan_kernel_alive(
                    scan, proc, kernel_id, session, server_alive, server, kernels, roots)
            elif server_alive and server_pid in live_servers:
                kernel_alive = root.facts.kernel_id in listed_ids
            else:
                kernel_alive = None  # its server was not read: nobody can say
            stat = stats.get(pid, Stat(None, None))
            g = gpu_mod.tree_gpu(reading, [pid] if pid in by_pid else [], by_pid)
            out.append(model.Process(
                pid=pid, user=proc.facts.user, cmdline=proc.facts.shown_cmdline,
                create_time=proc.create_time, notebook=session, kernel_id=kernel_id,
                server_pid=server_pid, cpu_percent=stat.cpu_percent, memory_bytes=stat.memory_bytes,
                gpu_memory_bytes=g.memory_bytes, gpus=g.gpus, gpu_percent=g.percent,
                hub_user=hub_of.hub_user if hub_of else None,
                hub_server_name=hub_of.hub_server_name if hub_of else None,
            ))
            facts[pid] = orphans.ProcessFacts(server_alive=server_alive, kernel_alive=kernel_alive)
        return out, facts
