"""Kill: plan (with refusals) and carry out the removal of kernels, terminals and local
process trees. ``nbtui kill``, ``nbtui cull`` and the TUI's ``k`` plan through ``plan_kill``
(the TUI's rows through ``plan_rows`` beside it) and act through ``execute``.

Each step is re-checked right before acting and audited: an intent line before, a result
line after.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Callable, ClassVar, Iterable, Optional, Sequence, Union

from nbtui.core import orphans
from nbtui.core.errors import NotFound
from nbtui.core.kinds import KERNEL, PROCESS, TERMINAL, Kind
from nbtui.core.model import Kernel, Process, Snapshot, Terminal, Usage
from nbtui.core.targets import KernelTarget, PidTarget, TerminalTarget
from nbtui.core.text import visible
from nbtui.core.units import middle_truncate
from nbtui.display.frees import frees
from nbtui.files import audit
from nbtui.files.secrets import redact_cmdline
from nbtui.host import devholders, signals
from nbtui.host.signals import Fate, Ident
from nbtui.jupyter.join import sessions_of
from nbtui.jupyter.rest import NOT_FOUND, ServerClient, ServerError
from nbtui.jupyter.urlpath import UnsafeSegment
from nbtui.service.actions.gate import kernel_audit_target, require_writable, unaddressable
from nbtui.service.actions.kernels import RECHECK, SHUTDOWN_TIMEOUT, recheck_kernel
from nbtui.service.fleet import Fleet, all_or_none

DEFAULT_GRACE = 5.0
# Kernels and terminals ended at once per server: a DELETE mostly waits for the kernel to
# exit (0.8-1 s each here), and the server waits for many side by side as cheaply as for one,
# so 8 at a time made 40 kernels five waits in a row. Below httpx's 100 connections per client: no request queues for a
# socket, where its wait would count against its timeout.
CULL_CONCURRENCY = 64
WENT_WITH_TERMINAL = signals.WENT_WITH_TERMINAL

KillTarget = Union[KernelTarget, PidTarget, TerminalTarget]
Row = Union[Kernel, Terminal, Process]  # what a row of the fleet table holds


@dataclass(frozen=True)
class Step:
    """One planned removal: a kernel or a terminal through its server, or a local process tree."""

    kind: Kind  # kernel | terminal | process
    target: str  # SERVER:KERNEL, terminal:SERVER/NAME or pid:N (the key of the row it removes)
    kernel: Optional[Kernel] = None  # set for a kernel step
    process: Optional[Ident] = None  # the process named by pid:N, as listed
    children: tuple[Ident, ...] = ()  # local descendants that may outlive the kernel / die with it
    listed: Optional[Process] = None  # the leftover process as the snapshot listed it
    terminal: Optional[Terminal] = None  # the terminal (kind terminal), as the snapshot listed it
    refusal: Optional[str] = None
    reasons: tuple[str, ...] = ()
    explanation: str = ""

    @property
    def notebook(self) -> Optional[str]:
        if self.kernel is not None and self.kernel.session is not None:
            return self.kernel.session.path
        return self.listed.notebook if self.listed else None

    @property
    def memory_bytes(self) -> Optional[int]:
        if self.kernel is not None:
            return self.kernel.usage.memory_bytes if self.kernel.usage else None
        if self.terminal is not None:
            return self.terminal.usage.memory_bytes if self.terminal.usage else None
        return self.listed.memory_bytes if self.listed else None

    @property
    def gpu_memory_bytes(self) -> Optional[int]:
        if self.kernel is not None:
            return self.kernel.usage.gpu_memory_bytes if self.kernel.usage else None
        if self.terminal is not None:
            return self.terminal.usage.gpu_memory_bytes if self.terminal.usage else None
        return self.listed.gpu_memory_bytes if self.listed else None

    @property
    def server(self) -> Optional[str]:
        """The server it is ended through (a kernel's or terminal's), None for a process."""
        return self.kernel.server if self.kernel else (self.terminal.server if self.terminal else None)

    @property
    def owner(self) -> Optional[str]:
        return self.process.user if self.process else (self.listed.user if self.listed else None)

    def audit_target(self) -> dict[str, Any]:
        out: dict[str, Any]
        if self.kernel is not None:
            out = kernel_audit_target(self.kernel)
        elif self.terminal is not None:
            out = {"server": self.terminal.server, "terminal": self.terminal.name, "kernel_id": None,
                   "notebook": None, "pid": self.process.pid if self.process else None,
                   "memory_bytes": self.memory_bytes, "gpu_memory_bytes": self.gpu_memory_bytes}
        else:
            out = {"server": None, "kernel_id": self.listed.kernel_id if self.listed else None,
                   "notebook": self.notebook, "pid": self.process.pid if self.process else None,
                   "memory_bytes": self.memory_bytes, "gpu_memory_bytes": self.gpu_memory_bytes}
        if self.process is not None:
            out.update(user=self.process.user, create_time=self.process.create_time, cmdline=self.process.cmdline)
        out["children"] = [c.pid for c in self.children]
        return out

    def json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "target": self.target, "notebook": self.notebook,
            "kernel_id": self.kernel.kernel_id if self.kernel else (self.listed.kernel_id if self.listed else None),
            "server": self.server,
            "terminal": self.terminal.name if self.terminal else None,
            "pid": self.process.pid if self.process else (
                self.kernel.usage.pid if self.kernel and self.kernel.usage else None),
            "user": self.owner, "cmdline": self.process.cmdline if self.process else None,
            "memory_bytes": self.memory_bytes, "gpu_memory_bytes": self.gpu_memory_bytes,
            "children": [{"pid": c.pid, "user": c.user, "cmdline": c.cmdline} for c in self.children],
            "reasons": list(self.reasons), "explanation": self.explanation, "refused": self.refusal,
        }

    def describe(self) -> str:
        """One line of the plan: what goes, what it frees, who owns it (outside strings shown
        through ``visible``: a line never splits, no control code reaches a terminal)."""
        return visible(self._describe())

    def _describe(self) -> str:
        if self.kind == KERNEL:
            k = self.kernel
            assert k is not None
            text = f"kernel {k.server}:{k.kernel_id[:8]} ({self.notebook or 'no session'})"
        elif self.kind == TERMINAL:
            t = self.terminal
            assert t is not None
            text = f"terminal {t.server}/{visible(t.name)}"
            if self.process is not None:
                text += f" (shell pid {self.process.pid}, {self.process.user or 'owner unknown'})"
            else:
                text += " (its shell is not known here: only the server ends it)"
        else:
            p = self.process
            assert p is not None
            text = f"pid {p.pid} ({p.user or 'owner unknown'}) {middle_truncate(p.cmdline, 60)}"
            if self.notebook:
                text += f" [{self.notebook}]"
        freed = frees(self.memory_bytes, self.gpu_memory_bytes)
        if freed:
            text += "; frees " + freed
        if self.children:
            noun = "child process" if len(self.children) == 1 else "child processes"
            pids = ", ".join(str(c.pid) for c in self.children[:6]) + (" …" if len(self.children) > 6 else "")
            one = len(self.children) == 1
            what = "the terminal" if self.kind == TERMINAL else "the kernel"
            verb = ((f"signalled if it outlives {what}" if one else f"signalled if they outlive {what}")
                    if self.kind in (KERNEL, TERMINAL) else "signalled too")
            text += f"; {len(self.children)} {noun} ({pids}) {verb}"
        if self.refusal:
            text += f" — REFUSED: {self.refusal}"
        return text


@dataclass
class Outcome:
    step: Step
    result: str  # ok | gone | refused: … | failed: …
    fates: list[Fate] = field(default_factory=list)
    server_error: bool = False
    audit_error: Optional[str] = None
    interrupted: bool = False  # ctrl+c came while it was under way

    OK_RESULTS: ClassVar[tuple[str, ...]] = ("ok", "gone")

    @property
    def ok(self) -> bool:
        return self.result in self.OK_RESULTS and all(f.ok for f in self.fates)

    def describe(self) -> str:
        return visible(self._describe())

    def _describe(self) -> str:
        s = self.step
        text = f"{s.target}: {self.result}"
        if self.result == "ok":
            freed = frees(s.memory_bytes, s.gpu_memory_bytes)
            if freed:
                text += f" (freed {freed})"
        if self.fates:
            text += "; " + ", ".join(f"pid {f.pid} {f.fate}" for f in self.fates)
        return text

    def json(self) -> dict[str, Any]:
        return {"target": self.step.target, "result": self.result, "ok": self.ok,
                "processes": [f.json() for f in self.fates]}


# -- plan -------------------------------------------------------------------------------------


def _local(snapshot: Snapshot, server: str) -> bool:
    info = next((s for s in snapshot.servers if s.name == server), None)
    return bool(info and info.local)


def _server_pids(snapshot: Snapshot) -> set[int]:
    return {s.pid for s in snapshot.servers if s.pid is not None}


def plan_kernel(snapshot: Snapshot, k: Kernel, protected: Optional[set[int]] = None) -> Step:
    """Shut a kernel down through its server; on a local server, note its process tree too.
    ``protected``: nbtui's own ancestors (read here when not given; a plan of many kernels
    reads them once)."""
    children: tuple[Ident, ...] = ()
    proc = None
    refusal = unaddressable("kernel id", k.kernel_id)
    if refusal is None and _local(snapshot, k.server):
        # Only a process the host view confirmed as this server's kernel (usage.pid): never
        # one found by the kernel id alone, which a lying server can name (issue 10).
        pid = k.usage.pid if k.usage and k.usage.pid else None
        proc = signals.identify(pid) if pid else None
        if proc is not None:
            protected = signals.ancestors_of_self() if protected is None else protected
            if proc.pid in protected:
                refusal = "nbtui itself runs inside this kernel"
            children = tuple(c for c in _kernel_children(k, proc) if signals.refusal(
                c, explicit=False, server_pids=_server_pids(snapshot), protected=protected) is None)
    return Step(KERNEL, f"{k.server}:{k.kernel_id}", kernel=k, children=children, reasons=k.orphan_reasons,
                explanation=orphans.explain_kernel(k), process=proc, refusal=refusal)


def _kernel_children(k: Kernel, proc: Ident) -> list[Ident]:
    """The kernel's descendants: from the snapshot's tree when it has one (each still a child
    of a process of that tree), else read from the host."""
    tree = set(k.usage.pids) if k.usage and k.usage.pid == proc.pid and k.usage.pids else set()
    if not tree:
        return signals.descendants(proc.pid)
    out = []
    for pid in sorted(tree - {proc.pid}):
        ident = signals.identify(pid)
        if ident is not None and ident.ppid in tree:
            out.append(ident)
    return out


def plan_terminal(snapshot: Snapshot, t: Terminal, protected: Optional[set[int]] = None) -> Step:
    """End a terminal through its server; its shell's local descendants (the jobs that
    outlive a closed terminal) are signalled if they survive it."""
    proc = None
    children: tuple[Ident, ...] = ()
    refusal = unaddressable("name", t.name)
    if refusal is None and t.pid is not None and _local(snapshot, t.server) and _here(t.usage):
        proc = signals.identify(t.pid)
        if proc is not None:
            protected = signals.ancestors_of_self() if protected is None else protected
            if proc.pid in protected:
                refusal = "nbtui itself runs inside this terminal"
            tree = set(t.usage.pids) if t.usage is not None else set()
            children = tuple(c for c in signals.descendants(proc.pid) if (not tree or c.pid in tree) and signals.refusal(
                c, explicit=False, server_pids=_server_pids(snapshot), protected=protected) is None)
    return Step(TERMINAL, f"terminal:{t.server}/{t.name}", terminal=t, process=proc, children=children,
                refusal=refusal, reasons=t.orphan_reasons, explanation=orphans.explain_terminal(t))


def _here(u: Optional[Usage]) -> bool:
    """Whether a usage's PIDs are this host's: measured here, or by the server's extension on
    a host of this name (a loopback URL can be an SSH tunnel to another host)."""
    import socket

    return u is not None and (u.source == "local" or (u.source == "extension" and u.host == socket.gethostname()))


def plan_process(snapshot: Snapshot, pid: int, *, explicit: bool = True,
                 protected: Optional[set[int]] = None) -> Step:
    """Signal a local process and its descendants; identity from the listing when there is one."""
    listed = next((p for p in snapshot.processes if p.pid == pid), None)
    now = signals.identify(pid)
    if listed is not None:
        ident = Ident(pid, listed.create_time, listed.user, redact_cmdline(listed.cmdline))
    elif now is not None:
        ident = now
    else:
        gone = signals.zombie(pid)  # exited, not yet reaped: already gone, not "not found"
        if gone is None:
            raise NotFound(f"no process with PID {pid} on this host")
        ident = gone
    protected = signals.ancestors_of_self() if protected is None else protected
    refusal = signals.refusal(ident, explicit=explicit, server_pids=_server_pids(snapshot), protected=protected)
    if refusal is None:
        refusal = devholders.kill_refusal(pid)  # a GPU holder stuck in D or Z state
    if refusal is None and now is not None and not signals.same_process(ident, now):
        refusal = "the PID now belongs to another program (create time or owner changed since it was listed)"
    children: list[Ident] = []
    if refusal is None:
        for c in signals.descendants(pid):
            if signals.refusal(c, explicit=False, server_pids=_server_pids(snapshot), protected=protected) is None:
                children.append(c)
    kernel = next((k for k in snapshot.kernels if k.usage and k.usage.pid == pid), None)
    return Step(PROCESS, f"pid:{pid}", process=ident, children=tuple(children), listed=listed, kernel=None,
                refusal=refusal, reasons=listed.orphan_reasons if listed else (kernel.orphan_reasons if kernel else ()),
                explanation=orphans.explain_process(listed) if listed else (
                    orphans.explain_kernel(kernel) if kernel else ""))


def plan_kill(snapshot: Snapshot, targets: Iterable[KillTarget], *, explicit: bool = True,
              not_found: Optional[Callable[[KillTarget, NotFound], None]] = None) -> list[Step]:
    """Steps for resolved targets (nbtui.core.targets), in the order given, each once.

    A live kernel's own PID goes through its server (a bare signal would only make the
    server restart it). ``explicit``: a PID typed by hand (a server's own process may be
    named); a PID gone since it was listed raises NotFound, or, given ``not_found``, is
    handed to it and left out of the plan.
    """
    protected = signals.ancestors_of_self()
    steps: list[Step] = []
    seen: set[str] = set()
    readable = {s.name for s in snapshot.servers if s.ok}
    for t in targets:
        if isinstance(t, TerminalTarget):
            step = plan_terminal(snapshot, t.terminal, protected)
        elif isinstance(t, PidTarget):
            k = next((k for k in snapshot.kernels if k.server in readable and k.usage and k.usage.pid == t.pid), None)
            try:
                step = plan_kernel(snapshot, k, protected) if k is not None else plan_process(
                    snapshot, t.pid, explicit=explicit, protected=protected)
            except NotFound as e:
                if not_found is None:
                    raise
                not_found(t, e)
                continue
        else:
            step = plan_kernel(snapshot, t.kernel, protected)
        if step.target not in seen:
            seen.add(step.target)
            steps.append(step)
    return steps


def plan_rows(snapshot: Snapshot, rows: Sequence[Row],
              not_found: Optional[Callable[[KillTarget, NotFound], None]] = None) -> list[Step]:
    """Steps for rows of the fleet table (what the TUI's ``k`` acts on): a Kernel, a Terminal
    or a Process of ``snapshot``, each planned by ``plan_kill`` as its TARGET would be. A row
    picked on a screen is no PID typed by hand: a server's own process is refused."""
    targets: list[KillTarget] = []
    for r in rows:
        if isinstance(r, Terminal):
            targets.append(TerminalTarget(r))
        elif isinstance(r, Process):
            targets.append(PidTarget(r.pid))
        else:
            targets.append(KernelTarget(r))
    return plan_kill(snapshot, targets, explicit=False, not_found=not_found)


# -- execute ----------------------------------------------------------------------------------


# What a cull chose a kernel for that its sessions said: a session may have come for it, or
# its notebook moved, since the plan (a screen's plan is as old as the snapshot on screen and
# the confirmation): re-checked too, from the server's sessions now.
_SESSION_REASONS = frozenset({orphans.NO_SESSION, orphans.NOTEBOOK_MISSING})

# A server's kernels now, and with the sessions re-checked, each kernel's session's path.
_Live = tuple[set[str], Optional[dict[str, str]]]


async def _live_kernels(fleet: Fleet, server: str, sessions: bool = False) -> _Live | ServerError:
    """The re-check right before acting: one listing per server, shared by its kernels; with
    ``sessions``, its sessions beside it (kernel id -> its first session's path), under the
    same deadline."""
    try:
        client = fleet.client(server)
        if not sessions:
            return {k["id"] for k in await client.within(client.kernels(), what=RECHECK)}, None
        kernels, said = await client.within(all_or_none([client.kernels(), client.sessions()]), what=RECHECK)
        return {k["id"] for k in kernels}, {kid: str(s[1]) for kid, s in sessions_of(said).items()}
    except ServerError as e:
        return e


def _session_moved(step: Step, sessions: Optional[dict[str, str]]) -> Optional[str]:
    """Why a culled kernel's session reason no longer holds (None: it holds, or not re-checked)."""
    k = step.kernel
    if sessions is None or k is None:
        return None
    if orphans.NO_SESSION in step.reasons and k.kernel_id in sessions:
        return "a session refers to it now"
    if orphans.NOTEBOOK_MISSING in step.reasons and k.session is not None \
            and sessions.get(k.kernel_id) != k.session.path:
        return "its session names another notebook now"
    return None


async def _notebook_back(client: ServerClient, step: Step, sessions: Optional[dict[str, str]]) -> Optional[str]:
    """A kernel culled for its missing notebook: that very file asked for again (the one way
    a notebook is called missing: nbtui.jupyter.notebooks), since the plan's answer may be a
    minute old. Why the reason no longer holds (or cannot be told now), else None."""
    k = step.kernel
    if sessions is None or k is None or k.session is None or orphans.NOTEBOOK_MISSING not in step.reasons:
        return None
    try:
        if await client.within(client.contents_exists(k.session.path), what=RECHECK):
            return "its notebook exists now"
    except (ServerError, UnsafeSegment) as e:
        return f"its notebook could not be asked for again ({visible(str(e))})"
    return None


async def _kill_kernel(fleet: Fleet, step: Step, live: _Live | ServerError) -> tuple[Outcome, list[Ident]]:
    """Shut the kernel down through its server; returns the outcome and the local survivors."""
    k = step.kernel
    assert k is not None
    client = fleet.client(k.server)
    if isinstance(live, ServerError):
        return Outcome(step, f"failed: {live}", server_error=True), []
    ids, sessions = live
    if k.kernel_id not in ids:
        return Outcome(step, "gone"), _survivors(step)
    moved = _session_moved(step, sessions) or await _notebook_back(client, step, sessions)
    if moved:
        return Outcome(step, f"refused: {moved} (re-checked before acting)"), []
    try:
        await client.shutdown(k.kernel_id, timeout=max(client.timeout, SHUTDOWN_TIMEOUT))
    except ServerError as e:
        if e.kind == NOT_FOUND:
            return Outcome(step, "gone"), _survivors(step)
        try:  # a kernel that ignored shutdown: did the server's own timeout remove it after all?
            await client.within(recheck_kernel(fleet, k), what=RECHECK)
        except ServerError as again:
            if again.kind == NOT_FOUND:
                return Outcome(step, "ok"), _survivors(step)
        return Outcome(step, f"failed: {e}", server_error=e.kind != "server-error"), []
    return Outcome(step, "ok"), _survivors(step)


async def _kill_terminal(fleet: Fleet, step: Step) -> tuple[Outcome, list[Ident]]:
    """Re-check the terminal on its server, DELETE it, and return the local survivors."""
    t = step.terminal
    assert t is not None
    client = fleet.client(t.server)
    try:
        await client.within(client.terminal(t.name), what=RECHECK)
    except ServerError as e:
        if e.kind == NOT_FOUND:
            return Outcome(step, "gone"), _survivors(step)
        return Outcome(step, f"failed: {e}", server_error=True), []
    if step.process is not None and not signals.same_process(step.process, signals.identify(step.process.pid)):
        # Its shell is another process now: the terminal was replaced; act on nothing local.
        step = replace(step, process=None, children=())
    try:  # the audit line goes first: what is about to be ended, and whose
        audit.record("kill-terminal", step.audit_target(), "acting", reasons=list(step.reasons))
    except OSError as e:
        return Outcome(step, f"failed: could not write the audit log {audit.audit_path()} before acting: "
                             f"{e.strerror or e}"), []
    try:
        await client.delete_terminal(t.name, timeout=max(client.timeout, SHUTDOWN_TIMEOUT))
    except ServerError as e:
        if e.kind == NOT_FOUND:
            return Outcome(step, "gone"), _survivors(step)
        return Outcome(step, f"failed: {e}", server_error=e.kind != "server-error"), []
    return Outcome(step, "ok"), await asyncio.to_thread(_survivors_after, step)


def _survivors_after(step: Step, wait: float = 3.0) -> list[Ident]:
    """The shell's tree still running a moment after the server ended the terminal (the
    shell itself goes with SIGHUP; a `nohup` job does not)."""
    import time

    deadline = time.monotonic() + wait
    left = _survivors(step)
    while left and time.monotonic() < deadline:
        shell = step.process.pid if step.process is not None else None
        if step.process not in left and not any((signals.identify(c.pid) or c).ppid == shell for c in left):
            break  # the shell is gone, what is left was reparented: it will not go by itself
        time.sleep(0.1)
        left = _survivors(step)
    return left


def _survivors(step: Step) -> list[Ident]:
    """The kernel's process and descendants that still run (the GPU-holding leftovers)."""
    tree = ([step.process] if step.process else []) + list(step.children)
    return [i for i in tree if signals.same_process(i, signals.identify(i.pid))]


@dataclass
class _Run:
    """One step under way: its outcome once known, and the processes it leaves to signal
    (a process step's whole tree; what outlived a kernel's or a terminal's end)."""

    step: Step
    outcome: Optional[Outcome] = None
    left: list[Ident] = field(default_factory=list)

    @property
    def through_server(self) -> bool:
        return self.step.kind in (KERNEL, TERMINAL)


async def execute(fleet: Optional[Fleet], steps: list[Step], *, grace: float = DEFAULT_GRACE,
                  action: str = "kill", concurrency: int = CULL_CONCURRENCY,
                  signal_leftovers: bool = True) -> list[Outcome]:
    """Carry out planned steps. Kernels and terminals are ended through their servers,
    ``concurrency`` at a time on each server, and then their local survivors are signalled; meanwhile the
    pid:N process trees get one SIGTERM / grace / SIGKILL pass. Each step is re-checked right
    before acting (a server's kernel list; a PID's create time and owner) and audited, one
    line each; the outcomes come in the steps' order."""
    require_writable(fleet, action, plan=True)
    # Intent first, every step, before anything is re-checked or signalled: a log that
    # cannot be written stops the whole action here (AuditError, exit 1, names the path).
    for s in steps:
        if not s.refusal:
            audit.intent(action, s.audit_target(), reasons=list(s.reasons))
    runs = [_Run(s) for s in steps]
    for r in runs:
        if r.step.refusal:
            r.outcome = Outcome(r.step, f"refused: {r.step.refusal}")
        elif not r.through_server:
            assert r.step.process is not None
            r.left = [r.step.process, *r.step.children]
    by_server = [r for r in runs if r.through_server and r.outcome is None]
    by_signal = [r for r in runs if not r.through_server and r.outcome is None]

    servers = sorted({r.step.kernel.server for r in by_server if r.step.kernel is not None})
    if by_server and fleet is None:
        raise ValueError("kernel and terminal steps need the fleet")
    # A cull's kernels chosen for what their sessions said: their servers' sessions re-checked too.
    resessions = {r.step.kernel.server for r in by_server if action == "cull" and r.step.kernel is not None
                  and _SESSION_REASONS & set(r.step.reasons)}
    listings = dict(zip(servers, await asyncio.gather(*(_live_kernels(fleet, n, n in resessions)  # type: ignore[arg-type]
                                                        for n in servers))))
    gates: dict[str, asyncio.Semaphore] = {}

    async def end(r: _Run) -> None:
        assert fleet is not None
        async with gates.setdefault(r.step.server or "", asyncio.Semaphore(max(1, concurrency))):
            if r.step.kind == KERNEL:
                assert r.step.kernel is not None
                r.outcome, r.left = await _kill_kernel(fleet, r.step, listings[r.step.kernel.server])
            else:  # its outcome's step is the re-checked one: its shell may have been dropped
                r.outcome, r.left = await _kill_terminal(fleet, r.step)

    # ctrl+c (the task is cancelled) sets ``stop``: the grace waits end at once and no
    # SIGKILL follows; what was done is reported and audited as interrupted.
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="nbtui-terminate")
    # Process trees do not wait for the servers: both go at once.
    signalled_job = pool.submit(signals.terminate, [p for r in by_signal for p in r.left], grace, stop=stop)
    survivors_job: Optional[Future[list[Fate]]] = None
    interrupted = False
    survivors: dict[int, Fate] = {}
    try:
        await asyncio.gather(*(end(r) for r in by_server))
        left = [p for r in by_server for p in r.left]
        if left and signal_leftovers:
            survivors_job = pool.submit(signals.terminate, left, grace, stop=stop)
            survivors = {f.pid: f for f in await asyncio.wrap_future(survivors_job)}
        signalled = {f.pid: f for f in await asyncio.wrap_future(signalled_job)}
    except asyncio.CancelledError:
        interrupted = True
        stop.set()
        signalled = _fates_after_stop(signalled_job)
        survivors = _fates_after_stop(survivors_job) if survivors_job else survivors
    finally:
        pool.shutdown(wait=False)

    for r in by_server:
        if r.outcome is None:
            r.outcome = Outcome(r.step, "interrupted", interrupted=True)  # its server call was cut short
        elif r.outcome.result in ("ok", "gone"):
            r.outcome.fates = _fates_of_ended(r.outcome.step, r.left, survivors)
    for r in by_signal:
        r.outcome = _signalled_outcome(r, signalled, interrupted)
    outcomes = []
    for r in runs:
        o = r.outcome
        assert o is not None
        o.interrupted = o.interrupted or interrupted
        try:
            audit.record(action, o.step.audit_target(), o.result,
                         processes=[f.json() for f in o.fates], reasons=list(o.step.reasons))
        except OSError as e:  # what was done is done: say the log failed, never hide the result
            o.audit_error = f"could not write the audit log {audit.audit_path()}: {e.strerror or e}"
        outcomes.append(o)
    return outcomes


def _fates_of_ended(step: Step, left: list[Ident], survivors: dict[int, Fate]) -> list[Fate]:
    """A kernel's or a terminal's processes after its server ended it: each survivor as it was
    signalled, the rest gone with it (a survivor not signalled is not named)."""
    went = signals.WENT_WITH_KERNEL if step.kind == KERNEL else WENT_WITH_TERMINAL
    tree = ([step.process] if step.process else []) + list(step.children)
    return [survivors.get(p.pid) or Fate(p.pid, p.user, p.cmdline, signals.SHUT_DOWN if p is step.process else went)
            for p in tree if p.pid in survivors or p not in left]


def _signalled_outcome(r: _Run, fates: dict[int, Fate], interrupted: bool) -> Outcome:
    """A process step's outcome: its root's fate decides, the whole tree's fates are listed."""
    tree = [fates.get(p.pid) or Fate(p.pid, p.user, p.cmdline, signals.INTERRUPTED) for p in r.left]
    root = tree[0]
    result = "gone" if root.fate == signals.ALREADY_GONE else (
        "ok" if root.ok else (root.fate if root.fate.startswith(("refused", "interrupted"))
                              else f"failed: {root.fate}"))
    return Outcome(r.step, result, tree, interrupted=interrupted)


def _fates_after_stop(job: Future[list[Fate]]) -> dict[int, Fate]:
    """The fates a terminate() pass reached once told to stop (it returns within a poll)."""
    try:
        return {f.pid: f for f in job.result(timeout=10)}
    except BaseException:
        return {}
