"""Actions that change kernels and processes, shared by the CLI and the TUI.

Each re-checks its target right before acting and writes one audit line.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import ClassVar, Optional

from nbtui.files import audit

from nbtui.core import orphans
from nbtui.files.config import state_dir
from nbtui.core.errors import NbtuiError, NotFound, UsageError
from nbtui.service.fleet import Fleet
from nbtui.host import devholders, signals
from nbtui.host.signals import Fate, Ident
from nbtui.jupyter.rest import NOT_FOUND, ServerError
from nbtui.jupyter.urlpath import segment, why_not_segment
from nbtui.core.model import Kernel, Process, ServerInfo, Snapshot, Terminal
from nbtui.files.secrets import redact_cmdline
from nbtui.core.targets import PidTarget, TerminalTarget
from nbtui.core.text import visible
from nbtui.core.units import human_bytes, human_duration, middle_truncate


def kernel_audit_target(k: Kernel) -> dict:
    u = k.usage
    return {
        "server": k.server,
        "kernel_id": k.kernel_id,
        "notebook": k.session.path if k.session else None,
        "pid": u.pid if u else None,
        "memory_bytes": u.memory_bytes if u else None,
        "gpu_memory_bytes": u.gpu_memory_bytes if u else None,
    }


def current_user() -> str:
    """Who runs nbtui (views compare owners with it; signals are sent only here)."""
    return signals.current_user()


# -- readonly: the one gate ------------------------------------------------------------------


class Readonly(UsageError):
    """An action refused because nbtui runs ``--readonly`` (exit 2).

    ``str()`` is the CLI's line; ``short`` the TUI's notice. Every caller renders it; none
    decides readonly itself.
    """

    def __init__(self, what: str, *, plan: bool = False):
        self.what = what
        super().__init__(f"--readonly: {what} is off" + (" (--dry-run still shows the plan)" if plan else ""))

    @property
    def short(self) -> str:
        return f"readonly: {self.what} is off"


def require_writable(subject: object, what: str, *, dry_run: bool = False, plan: bool = False) -> None:
    """Raise Readonly if ``subject`` (a Fleet, the CLI's arguments, the TUI app: anything
    with a ``readonly`` flag) is read-only and this is not a dry run.

    The actions below call it with their fleet before they act, whoever calls them; a view
    calls it early too (before it reads servers or asks for a confirmation), with ``plan``
    where ``--dry-run`` exists.
    """
    if getattr(subject, "readonly", False) and not dry_run:
        raise Readonly(what, plan=plan)


def addressable(k: Kernel) -> None:
    """Raise UnsafeSegment (exit 1, one line) for a kernel whose id cannot be one URL path
    segment: listed like any other, acted on never (urlpath)."""
    segment(k.kernel_id, "kernel id")


def _unaddressable(what: str, value: str) -> Optional[str]:
    """A plan's refusal for an id that cannot be one URL path segment, else None."""
    why = why_not_segment(value)
    return None if why is None else f"its {what} '{visible(value)[:80]}' cannot be one URL path segment ({why})"


async def recheck_kernel(fleet: Fleet, k: Kernel) -> None:
    """Raise ServerError (kind not-found) if the kernel is no longer on its server."""
    await fleet.client(k.server).kernel(k.kernel_id)


async def interrupt_kernel(fleet: Fleet, k: Kernel) -> None:
    """Interrupt (SIGINT or interrupt_request, as the kernel spec says) through the server."""
    require_writable(fleet, "interrupt")
    addressable(k)
    await recheck_kernel(fleet, k)
    await fleet.client(k.server).interrupt(k.kernel_id)


async def restart_kernel(fleet: Fleet, k: Kernel) -> None:
    """Restart a kernel (its variables are lost): re-checked, audited."""
    require_writable(fleet, "restart")
    addressable(k)
    target = kernel_audit_target(k)
    audit.intent("restart", target)  # before acting: unwritable means not started
    try:
        await recheck_kernel(fleet, k)
        await fleet.client(k.server).restart(k.kernel_id)
    except ServerError as e:
        audit.record("restart", target, f"failed: {e}")
        raise
    audit.record("restart", target, "ok")


# -- kill and cull ------------------------------------------------------------------------------

KERNEL = "kernel"
PROCESS = "process"
TERMINAL = "terminal"
DEFAULT_GRACE = 5.0
CULL_CONCURRENCY = 8
WENT_WITH_TERMINAL = signals.WENT_WITH_TERMINAL
SHUTDOWN_TIMEOUT = 30.0  # the server's own shutdown wait (5 s by default) and kill come first
RECHECK = "the re-check before acting"  # named in the timeout's line; one deadline over its requests


@dataclass(frozen=True)
class Step:
    """One planned removal: a kernel through its server, or a local process tree."""

    kind: str  # kernel | process
    target: str  # SERVER:KERNEL or pid:N
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
    def owner(self) -> Optional[str]:
        return self.process.user if self.process else (self.listed.user if self.listed else None)

    def audit_target(self) -> dict:
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

    def json(self) -> dict:
        return {
            "kind": self.kind, "target": self.target, "notebook": self.notebook,
            "kernel_id": self.kernel.kernel_id if self.kernel else (self.listed.kernel_id if self.listed else None),
            "server": self.kernel.server if self.kernel else (self.terminal.server if self.terminal else None),
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
        frees = _frees(self.memory_bytes, self.gpu_memory_bytes)
        if frees:
            text += "; frees " + frees
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


def _frees(memory_bytes: Optional[int], gpu_memory_bytes: Optional[int]) -> str:
    """``1.2G memory, 4.0G GPU``: what a step frees, where measured ("" when nothing is)."""
    return ", ".join(f for f in (f"{human_bytes(memory_bytes)} memory" if memory_bytes else None,
                                 f"{human_bytes(gpu_memory_bytes)} GPU" if gpu_memory_bytes else None) if f)


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
            frees = _frees(s.memory_bytes, s.gpu_memory_bytes)
            if frees:
                text += f" (freed {frees})"
        if self.fates:
            text += "; " + ", ".join(f"pid {f.pid} {f.fate}" for f in self.fates)
        return text

    def json(self) -> dict:
        return {"target": self.step.target, "result": self.result, "ok": self.ok,
                "processes": [f.json() for f in self.fates]}


def _local(snapshot: Snapshot, server: str) -> bool:
    info = next((s for s in snapshot.servers if s.name == server), None)
    return bool(info and info.local)


def _server_pids(snapshot: Snapshot) -> set[int]:
    return {s.pid for s in snapshot.servers if s.pid is not None}


def plan_kernel(snapshot: Snapshot, k: Kernel) -> Step:
    """Shut a kernel down through its server; on a local server, note its process tree too."""
    children: tuple[Ident, ...] = ()
    proc = None
    refusal = _unaddressable("kernel id", k.kernel_id)
    if refusal is None and _local(snapshot, k.server):
        # Only a process the host view confirmed as this server's kernel (usage.pid): never
        # one found by the kernel id alone, which a lying server can name (issue 10).
        pid = k.usage.pid if k.usage and k.usage.pid else None
        proc = signals.identify(pid) if pid else None
        if proc is not None:
            protected = signals.ancestors_of_self()
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
    refusal = _unaddressable("name", t.name)
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


def _here(u) -> bool:
    """Whether a usage's PIDs are this host's: measured here, or by the server's extension on
    a host of this name (a loopback URL can be an SSH tunnel to another host)."""
    import socket

    return u is not None and (u.source == "local" or (u.source == "extension" and u.host == socket.gethostname()))


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


def plan_kill(snapshot: Snapshot, targets) -> list[Step]:
    """Steps for resolved targets (nbtui.core.targets): kernels and pid:N, in the order given."""
    protected = signals.ancestors_of_self()
    steps: list[Step] = []
    seen: set[str] = set()
    readable = {s.name for s in snapshot.servers if s.ok}
    for t in targets:
        if isinstance(t, TerminalTarget):
            step = plan_terminal(snapshot, t.terminal, protected)
        elif isinstance(t, PidTarget):
            # A live kernel's own process goes through its server (a bare signal would only
            # make the server restart it).
            k = next((k for k in snapshot.kernels if k.server in readable and k.usage and k.usage.pid == t.pid), None)
            step = plan_kernel(snapshot, k) if k is not None else plan_process(snapshot, t.pid, protected=protected)
        else:
            step = plan_kernel(snapshot, t.kernel)
        if step.target not in seen:
            seen.add(step.target)
            steps.append(step)
    return steps


def plan_rows(snapshot: Snapshot, rows) -> list[Step]:
    """Steps for rows of the fleet table (what `k` acts on): a Kernel, a Terminal or a
    leftover Process of ``snapshot``, each planned as its TARGET would be."""
    from nbtui.core.targets import KernelTarget
    targets: list[object] = []
    for r in rows:
        if isinstance(r, Terminal):
            targets.append(TerminalTarget(r))
        elif isinstance(r, Process):
            targets.append(PidTarget(r.pid))
        else:
            targets.append(KernelTarget(r))
    return plan_kill(snapshot, targets)


async def _live_kernels(fleet: Fleet, server: str) -> set[str] | ServerError:
    """The re-check right before acting: one listing per server, shared by its kernels."""
    try:
        client = fleet.client(server)
        return {k["id"] for k in await client.within(client.kernels(), what=RECHECK)}
    except ServerError as e:
        return e


async def _kill_kernel(fleet: Fleet, step: Step, live: set[str] | ServerError) -> tuple[Outcome, list[Ident]]:
    """Shut the kernel down through its server; returns the outcome and the local survivors."""
    k = step.kernel
    assert k is not None
    client = fleet.client(k.server)
    if isinstance(live, ServerError):
        return Outcome(step, f"failed: {live}", server_error=True), []
    if k.kernel_id not in live:
        return Outcome(step, "gone"), _survivors(step)
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


def _survivors(step: Step) -> list[Ident]:
    """The kernel's process and descendants that still run (the GPU-holding leftovers)."""
    tree = ([step.process] if step.process else []) + list(step.children)
    return [i for i in tree if signals.same_process(i, signals.identify(i.pid))]


async def execute(fleet: Optional[Fleet], steps: list[Step], *, grace: float = DEFAULT_GRACE,
                  action: str = "kill", concurrency: int = CULL_CONCURRENCY,
                  signal_leftovers: bool = True) -> list[Outcome]:
    """Carry out planned steps. Kernels are shut down through their servers, ``concurrency`` at
    a time, and then their local survivors are signalled; meanwhile the pid:N process trees get
    one SIGTERM / grace / SIGKILL pass. Each step is re-checked right before acting (a server's
    kernel list; a PID's create time and owner) and audited, one line each."""
    require_writable(fleet, action, plan=True)
    gate = asyncio.Semaphore(max(1, concurrency))
    outcomes: dict[int, Outcome] = {}
    leftovers: dict[int, list[Ident]] = {}
    # Intent first, every step, before anything is re-checked or signalled: a log that
    # cannot be written stops the whole action here (AuditError, exit 1, names the path).
    for s in steps:
        if not s.refusal:
            audit.intent(action, s.audit_target(), reasons=list(s.reasons))

    servers = sorted({s.kernel.server for s in steps if s.kind == KERNEL and s.kernel and not s.refusal})
    if servers and fleet is None:
        raise ValueError("kernel steps need the fleet")
    listings = dict(zip(servers, await asyncio.gather(*(_live_kernels(fleet, n) for n in servers))))  # type: ignore[arg-type]

    async def one_kernel(i: int, step: Step) -> None:
        assert fleet is not None and step.kernel is not None
        async with gate:
            outcome, left = await _kill_kernel(fleet, step, listings[step.kernel.server])
        outcomes[i] = outcome
        leftovers[i] = left

    async def one_terminal(i: int, step: Step) -> None:
        assert fleet is not None
        async with gate:
            outcome, left = await _kill_terminal(fleet, step)
        outcomes[i] = outcome  # its step is the re-checked one: its shell may have been dropped
        leftovers[i] = left

    kernel_jobs = [one_kernel(i, s) for i, s in enumerate(steps) if s.kind == KERNEL and not s.refusal]
    kernel_jobs += [one_terminal(i, s) for i, s in enumerate(steps) if s.kind == TERMINAL and not s.refusal]
    for i, s in enumerate(steps):
        if s.kind in (KERNEL, TERMINAL) and s.refusal:
            outcomes[i] = Outcome(s, f"refused: {s.refusal}")
        elif s.kind == PROCESS:
            if s.refusal:
                outcomes[i] = Outcome(s, f"refused: {s.refusal}")
            else:
                assert s.process is not None
                leftovers[i] = [s.process, *s.children]
    process_steps = [i for i, s in enumerate(steps) if s.kind == PROCESS and not s.refusal]
    # ctrl+c (the task is cancelled) sets ``stop``: the grace waits end at once and no
    # SIGKILL follows; what was done is reported and audited as interrupted.
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="nbtui-terminate")
    # Process trees do not wait for the servers: both go at once.
    proc_job = pool.submit(signals.terminate, [p for i in process_steps for p in leftovers[i]], grace, stop=stop)
    kernel_job = None
    interrupted = False
    kernel_fates: dict = {}
    try:
        await asyncio.gather(*kernel_jobs)
        kernel_left = [p for i, s in enumerate(steps) if s.kind in (KERNEL, TERMINAL) for p in leftovers.get(i, [])]
        if kernel_left and signal_leftovers:
            kernel_job = pool.submit(signals.terminate, kernel_left, grace, stop=stop)
            kernel_fates = {f.pid: f for f in await asyncio.wrap_future(kernel_job)}
        fates = {f.pid: f for f in await asyncio.wrap_future(proc_job)}
    except asyncio.CancelledError:
        interrupted = True
        stop.set()
        fates = _fates_after_stop(proc_job)
        kernel_fates = _fates_after_stop(kernel_job) if kernel_job else kernel_fates
    finally:
        pool.shutdown(wait=False)
    for i, s in enumerate(steps):
        if i not in outcomes and not s.refusal:
            outcomes[i] = Outcome(s, "interrupted", interrupted=True)  # its server call was cut short
    for i in process_steps:
        tree = [fates.get(p.pid) or Fate(p.pid, p.user, p.cmdline, signals.INTERRUPTED) for p in leftovers[i]]
        root = tree[0]
        result = "gone" if root.fate == signals.ALREADY_GONE else (
            "ok" if root.ok else (root.fate if root.fate.startswith(("refused", "interrupted"))
                                  else f"failed: {root.fate}"))
        outcomes[i] = Outcome(steps[i], result, tree, interrupted=interrupted)
    for i, s in enumerate(steps):
        if s.kind in (KERNEL, TERMINAL) and i in outcomes and outcomes[i].result in ("ok", "gone"):
            s = outcomes[i].step
            gone_with = ([s.process] if s.process else []) + list(s.children)
            went = signals.WENT_WITH_KERNEL if s.kind == KERNEL else WENT_WITH_TERMINAL
            outcomes[i].fates = [
                kernel_fates.get(p.pid) or Fate(p.pid, p.user, p.cmdline,
                                                signals.SHUT_DOWN if p is s.process else went)
                for p in gone_with if p.pid in kernel_fates or p not in leftovers.get(i, [])]
    ordered = [outcomes[i] for i in range(len(steps))]
    for o in ordered:
        o.interrupted = o.interrupted or interrupted
        try:
            audit.record(action, o.step.audit_target(), o.result,
                         processes=[f.json() for f in o.fates], reasons=list(o.step.reasons))
        except OSError as e:  # what was done is done: say the log failed, never hide the result
            o.audit_error = f"could not write the audit log {audit.audit_path()}: {e.strerror or e}"
    return ordered


def _fates_after_stop(job) -> dict:
    """The fates a terminate() pass reached once told to stop (it returns within a poll)."""
    try:
        return {f.pid: f for f in job.result(timeout=10)}
    except BaseException:
        return {}


# -- cull: select by policy ---------------------------------------------------------------------


@dataclass(frozen=True)
class CullPolicy:
    idle: Optional[float] = None  # idle kernels past it, no client connected
    gpu_only: bool = False  # only what holds GPU memory
    orphans: bool = False  # every kernel and process with a reason
    servers: tuple[str, ...] = ()
    gpu_idle: Optional[float] = None  # holding GPU memory at 0 % SM this long (needs history)

    @property
    def selects_anything(self) -> bool:
        return self.idle is not None or self.orphans or self.gpu_idle is not None


def _gpu_idle_past(seconds: Optional[float], policy: CullPolicy) -> bool:
    return policy.gpu_idle is not None and seconds is not None and seconds >= policy.gpu_idle


def cull_selects_kernel(k: Kernel, policy: CullPolicy) -> bool:
    # --server HUB covers its users' servers HUB/USER[/SERVER] (a configured name holds no "/")
    if policy.servers and k.server not in policy.servers and k.server.partition("/")[0] not in policy.servers:
        return False
    chosen = False
    if policy.idle is not None and k.idle_seconds is not None and k.connections is not None:
        others = k.connections - k.own_connections
        chosen = others <= 0 and orphans.kernel_is_idle(k, policy.idle)
    if policy.orphans and k.orphan_reasons:
        chosen = True
    if _gpu_idle_past(k.gpu_idle_seconds, policy):
        chosen = True
    if chosen and policy.gpu_only:
        chosen = bool(k.usage and k.usage.gpu_memory_bytes)
    return chosen


def cull_selects_process(p: Process, policy: CullPolicy) -> bool:
    if policy.servers:
        return False
    if not ((policy.orphans and p.orphan_reasons) or _gpu_idle_past(p.gpu_idle_seconds, policy)):
        return False
    return bool(p.gpu_memory_bytes) if policy.gpu_only else True


def cull_selects_terminal(t: Terminal, policy: CullPolicy) -> bool:
    """A terminal goes by --orphans (terminal-idle, gpu-idle) or --gpu-idle; --idle alone
    never selects one (nobody can tell whether someone watches it)."""
    if policy.servers and t.server not in policy.servers:
        return False
    if not ((policy.orphans and t.orphan_reasons) or _gpu_idle_past(t.gpu_idle_seconds, policy)):
        return False
    return bool(t.usage and t.usage.gpu_memory_bytes) if policy.gpu_only else True


def plan_cull(snapshot: Snapshot, policy: CullPolicy) -> list[Step]:
    """Kernels of readable servers and leftover processes that the policy selects.

    A process already in a selected kernel's tree goes with that kernel, not twice.
    """
    readable = {s.name for s in snapshot.servers if s.ok}
    steps = [plan_kernel(snapshot, k) for k in snapshot.kernels
             if k.server in readable and cull_selects_kernel(k, policy)]
    protected = signals.ancestors_of_self()
    steps += [plan_terminal(snapshot, t, protected) for t in snapshot.terminals
              if t.server in readable and cull_selects_terminal(t, policy)]
    covered = {c.pid for s in steps for c in (([s.process] if s.process else []) + list(s.children))}
    for p in snapshot.processes:
        if p.pid in covered or not cull_selects_process(p, policy):
            continue
        try:
            step = plan_process(snapshot, p.pid, explicit=False, protected=protected)
        except NotFound:
            continue  # gone since it was listed: nothing to cull
        steps.append(step)
        covered.update(c.pid for c in step.children)
    return steps


class CullBusy(NbtuiError):
    """Another cull holds the lock."""


@contextmanager
def cull_lock():
    """One cull at a time on this host, across processes (an flock on the state folder)."""
    import fcntl

    from nbtui.files.safefile import open_fd
    path = state_dir() / "cull.lock"
    fd = open_fd(path, os.O_RDWR | os.O_CREAT)  # never through a symlink: as root it would truncate its target
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise CullBusy(f"another nbtui cull is running (pid {holder}); try again when it ends") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


# -- rebind, adopt, migrate (nbtui/migrate/) ---------------------------------------------


async def rebind_kernel(fleet: Fleet, k: Kernel, path: str, *, dry_run: bool = False) -> Optional[dict]:
    """Give a session-less kernel a notebook session on its server (re-checked, audited)."""
    from nbtui.migrate import rebind
    require_writable(fleet, "rebind", dry_run=dry_run)
    addressable(k)
    path = rebind.clean_path(path)
    target = kernel_audit_target(k)
    client = fleet.client(k.server)
    if dry_run:
        await client.within(rebind.check(client, k.kernel_id, path), what=RECHECK)
        return None
    audit.intent("rebind", target, notebook=path)
    try:
        session = await rebind.rebind(client, k.kernel_id, path, act_timeout=SHUTDOWN_TIMEOUT)
    except NbtuiError as e:
        audit.record("rebind", target, f"failed: {e}", notebook=path)
        raise
    audit.record("rebind", target, "ok", notebook=path, session_id=session.get("id"))
    return session


def migration_for(fleet: Fleet, k: Kernel, opts, progress=None):
    """A Migration (nbtui/migrate/move.py) of server kernel ``k``; ``await m.run()`` moves it."""
    from nbtui.migrate.move import Migration, ServerSource
    require_writable(fleet, "migrate", dry_run=bool(getattr(opts, "dry_run", False)))
    addressable(k)
    if opts.to not in fleet.names:
        raise NotFound(f"unknown server {opts.to!r} (known: {', '.join(fleet.names) or 'none'})")
    source = ServerSource(fleet.client(k.server), k.kernel_id, k.kernel_name,
                          k.session.path if k.session else None)
    return Migration(source, fleet.client(opts.to), opts, progress)


def local_migration_for(fleet: Fleet, pid: int, opts, progress=None):
    """A Migration of a live local kernel known by its process (its server gone)."""
    from nbtui.migrate import adopt
    from nbtui.migrate.move import LocalSource, Migration
    require_writable(fleet, "migrate", dry_run=bool(getattr(opts, "dry_run", False)))
    if opts.to not in fleet.names:
        raise NotFound(f"unknown server {opts.to!r} (known: {', '.join(fleet.names) or 'none'})")
    return Migration(LocalSource(adopt.find(pid)), fleet.client(opts.to), opts, progress)


async def plan_adopt(fleet: Fleet, pid: int, server: str, connection_dir=None, *, dry_run: bool = False):
    """Check that the live local kernel ``pid`` may be placed for server ``server`` (on this
    host, run by the kernel's own owner, its connection folder theirs all the way): returns
    ``(LocalKernel, Placement)``; writes nothing. A refusal outside a dry run is audited."""
    from nbtui.migrate import adopt
    require_writable(fleet, "adopt --to", dry_run=dry_run)
    lk = await adopt.check(pid)
    if server not in fleet.names:
        raise NotFound(f"unknown server {server!r} (known: {', '.join(fleet.names) or 'none'})")
    client = fleet.client(server)
    try:
        placement = adopt.plan_place(lk, server, fleet.config_of(server).pid, client.url, connection_dir)
    except adopt.NotAdoptable as e:
        if not dry_run:
            try:
                why = str(e)
                audit.record("adopt", lk.describe() | {"to": server}, why if why.startswith("refused") else f"refused: {why}")
            except OSError:
                pass  # nothing is done either way; the refusal is the line the user sees
        raise
    return lk, placement


async def adopt_kernel(fleet: Fleet, lk, placement) -> str:
    """Make ``placement.server`` list the kernel ``lk`` through its external_connection_dir
    (as plan_adopt checked it; the folder walked again when writing): audited before and
    after; returns the id the server gave it."""
    from nbtui.migrate import adopt
    require_writable(fleet, "adopt --to")
    if not signals.same_process(lk.ident, signals.identify(lk.pid)):
        raise adopt.NotAdoptable(f"pid {lk.pid} is another process now (or gone); nothing was placed")
    target = lk.describe() | placement.json() | {"to": placement.server}
    audit.intent("adopt", target)
    try:
        new_id = await adopt.place(fleet.client(placement.server), lk, placement)
    except NbtuiError as e:
        audit.record("adopt", target, f"failed: {e}")
        raise
    audit.record("adopt", target, "ok", kernel_id=new_id)
    return new_id


# -- stop a hub user's server (server:HUB/USER[/SERVER], cull --servers) --------------------

SERVER = "server"
STOP_WAIT = 30.0  # seconds to wait for the hub to finish stopping a server


@dataclass(frozen=True)
class ServerStep:
    """Stop one user's single-user server through its hub (its kernels go with it)."""

    target: str  # server:HUB/USER[/SERVER]
    server: ServerInfo
    kernels: tuple[Kernel, ...] = ()
    refusal: Optional[str] = None
    reasons: tuple[str, ...] = ()
    explanation: str = ""
    idle_after: Optional[float] = None  # cull --servers: the threshold re-checked before acting
    kind: str = SERVER

    @property
    def owner(self) -> Optional[str]:
        return self.server.user

    @property
    def memory_bytes(self) -> Optional[int]:
        values = [k.usage.memory_bytes for k in self.kernels if k.usage and k.usage.memory_bytes]
        return sum(values) if values else None

    @property
    def gpu_memory_bytes(self) -> Optional[int]:
        values = [k.usage.gpu_memory_bytes for k in self.kernels if k.usage and k.usage.gpu_memory_bytes]
        return sum(values) if values else None

    @property
    def notebook(self) -> Optional[str]:
        return None

    def audit_target(self) -> dict:
        s = self.server
        return {"server": s.name, "hub": s.hub, "user": s.user, "server_name": s.server_name,
                "started": s.started.isoformat() if s.started else None,
                "hub_last_activity": s.hub_last_activity.isoformat() if s.hub_last_activity else None,
                "kernels": [k.kernel_id for k in self.kernels],
                "memory_bytes": self.memory_bytes, "gpu_memory_bytes": self.gpu_memory_bytes}

    def json(self) -> dict:
        s = self.server
        return {"kind": SERVER, "target": self.target, "server": s.name, "hub": s.hub, "user": s.user,
                "server_name": s.server_name, "kernels": len(self.kernels),
                "hub_last_activity": self.audit_target()["hub_last_activity"],
                "memory_bytes": self.memory_bytes, "gpu_memory_bytes": self.gpu_memory_bytes,
                "reasons": list(self.reasons), "explanation": self.explanation, "refused": self.refusal}

    def describe(self) -> str:
        n = len(self.kernels)
        text = f"server {visible(self.server.name)} of user {visible(self.server.user)} ({n} kernel{'s' if n != 1 else ''})"
        frees = _frees(self.memory_bytes, self.gpu_memory_bytes)
        if frees:
            text += "; frees " + frees
        if self.refusal:
            text += f" — REFUSED: {self.refusal}"
        return text


@dataclass
class ServerOutcome(Outcome):
    """An Outcome of a ServerStep: no process fates (the hub's spawner ends the server), and
    ``interrupted`` stays False (a stop through the hub is one request, never cut short)."""

    step: ServerStep  # type: ignore[assignment]  # a server step, not a kernel or process one
    result: str  # ok | gone | stopping | refused: … | failed: …

    OK_RESULTS: ClassVar[tuple[str, ...]] = ("ok", "gone", "stopping")

    def describe(self) -> str:
        return f"{visible(self.step.target)}: {self.result}"


def plan_stop_server(snapshot: Snapshot, server: ServerInfo, *, reasons: tuple[str, ...] = (),
                     explanation: str = "", idle_after: Optional[float] = None) -> ServerStep:
    refusal = None
    if server.pending == "stop":
        refusal = "the hub is stopping it already"
    elif server.pending == "spawn":
        refusal = "it is still starting (pending spawn)"
    kernels = tuple(k for k in snapshot.kernels if k.server == server.name)
    return ServerStep(f"server:{server.name}", server, kernels, refusal, reasons, explanation, idle_after)


def plan_cull_servers(snapshot: Snapshot, idle: float, only: tuple[str, ...] = ()) -> list[ServerStep]:
    """Hub users' servers whose hub last_activity is older than ``idle`` (what
    jupyterhub-idle-culler does); unknown activity is never idle."""
    now = snapshot.generated_at
    steps = []
    for s in snapshot.servers:
        if s.source != "hub" or s.user is None or s.pending or s.hub_last_activity is None:
            continue
        if only and s.name not in only and s.hub not in only:
            continue
        idle_for = (now - s.hub_last_activity).total_seconds()
        if idle_for >= idle:
            steps.append(plan_stop_server(snapshot, s, reasons=("server-idle",), idle_after=idle,
                                          explanation=f"no activity on the hub for {human_duration(idle_for)}"))
    return steps


def _hub_server_now(user_model: dict, server_name: str) -> Optional[dict]:
    servers = user_model.get("servers") if isinstance(user_model, dict) else None
    s = servers.get(server_name) if isinstance(servers, dict) else None
    return s if isinstance(s, dict) else None


async def stop_servers(fleet: Fleet, steps: list[ServerStep], *, action: str = "stop",
                       wait: float = STOP_WAIT) -> list[ServerOutcome]:
    """Stop each server through its hub: re-checked right before (still listed, the same
    start, still idle for a cull), an audit line before acting and one with the result."""
    from nbtui.service.fleet import parse_time
    require_writable(fleet, "stopping servers", plan=True)

    async def one(step: ServerStep) -> ServerOutcome:
        s = step.server
        if step.refusal:
            return _audited(action, step, ServerOutcome(step, f"refused: {step.refusal}"))
        try:
            hub = fleet.hub_of(s.hub or "").client()
            now = _hub_server_now(await hub.user(s.user), s.server_name or "")
        except (KeyError, ServerError) as e:
            return _audited(action, step, ServerOutcome(step, f"failed: {e}", server_error=True))
        if now is None:
            return _audited(action, step, ServerOutcome(step, "gone"))
        started, last = parse_time(now.get("started")), parse_time(now.get("last_activity"))
        refusal = None
        if s.started is not None and started != s.started:
            refusal = "it was restarted since it was listed"
        elif now.get("pending") == "stop":
            refusal = "the hub is stopping it already"
        elif step.idle_after is not None and (last is None or (
                _utcnow() - last).total_seconds() < step.idle_after):
            refusal = "it was active again since it was listed"
        if refusal:
            return _audited(action, step, ServerOutcome(step, f"refused: {refusal}"))
        try:
            audit.record(action, step.audit_target(), "requested")
        except OSError as e:  # no audit line, no action
            return ServerOutcome(step, f"refused: could not write the audit log {audit.audit_path()}: {e.strerror or e}",
                                 audit_error=f"could not write the audit log {audit.audit_path()}: {e.strerror or e}")
        try:  # the hub answers when the spawner stopped it, or 202 after its slow_stop_timeout (10 s)
            await hub.stop_server(s.user, s.server_name or "", timeout=max(hub.timeout, SHUTDOWN_TIMEOUT))
        except ServerError as e:
            if e.kind != "timeout":  # a slow stop goes on at the hub: wait for it below
                result = "gone" if e.kind == NOT_FOUND else f"failed: {e}"
                return _audited(action, step, ServerOutcome(step, result, server_error=e.kind != NOT_FOUND))
        deadline = asyncio.get_running_loop().time() + wait
        while True:  # the hub answers 202 while the spawner stops it: wait until it is gone
            try:
                if _hub_server_now(await hub.user(s.user), s.server_name or "") is None:
                    return _audited(action, step, ServerOutcome(step, "ok"))
            except ServerError as e:
                if e.kind == NOT_FOUND:
                    return _audited(action, step, ServerOutcome(step, "ok"))
            if asyncio.get_running_loop().time() >= deadline:
                return _audited(action, step, ServerOutcome(step, "stopping"))
            await asyncio.sleep(0.5)

    return list(await asyncio.gather(*(one(s) for s in steps)))


def _audited(action: str, step: ServerStep, outcome: ServerOutcome) -> ServerOutcome:
    try:
        audit.record(action, step.audit_target(), outcome.result, reasons=list(step.reasons))
    except OSError as e:
        outcome.audit_error = f"could not write the audit log {audit.audit_path()}: {e.strerror or e}"
    return outcome


def _utcnow():
    import datetime as _dt

    return _dt.datetime.now(_dt.timezone.utc)
