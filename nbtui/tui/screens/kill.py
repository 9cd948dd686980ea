"""Kill and cull on the fleet screen: the plan in a confirmation (default no), then nbtui.service.actions.

``kill_kernels(screen, kernels)`` is what ``k`` runs; ``CullScreen`` is the "Cull…" dialog
(policy in, plan confirmed, then acted on under the same lock as ``nbtui cull``).
"""

from __future__ import annotations

import asyncio
from typing import Iterable, Optional

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from nbtui.service import actions
from nbtui.core.errors import NbtuiError
from nbtui.core.model import Kernel, Snapshot
from nbtui.files.secrets import redact
from nbtui.tui.widgets.checkbox import BoxCheckbox as Checkbox
from nbtui.core.text import visible
from nbtui.tui.screens.confirm import ConfirmScreen
from nbtui.core.units import DURATION_FORMS, human_bytes, human_duration, middle_truncate, parse_duration
MAX_STEPS = 8


def frees(steps: Iterable[actions.Step]) -> str:
    """``1.2G memory, 4.0G GPU`` (what is measured), or an empty string."""
    steps = list(steps)
    mem = sum(s.memory_bytes or 0 for s in steps)
    gpu = sum(s.gpu_memory_bytes or 0 for s in steps)
    parts = [f"{human_bytes(mem)} memory" if mem else "", f"{human_bytes(gpu)} GPU" if gpu else ""]
    return ", ".join(p for p in parts if p)


def step_lines(s: actions.Step, me: str) -> list[str]:
    """A step as a few short lines: what, why, what it frees, whose, its children."""
    if s.kind == actions.KERNEL:
        k = s.kernel
        assert k is not None
        lines = [f"• kernel {k.server}:{k.kernel_id[:8]}  {s.notebook or '(no session)'}"]
        why = s.explanation.split(": ", 1)[-1] if s.explanation else ""
    elif s.kind == actions.TERMINAL:
        lines = [f"• {s.target}" + (f"  (shell pid {s.process.pid})" if s.process else "")]
        why = s.explanation
    else:
        p = s.process
        assert p is not None
        lines = [f"• pid {p.pid}  {middle_truncate(p.cmdline, 60)}"]
        why = s.explanation
    if why:
        lines.append(f"    {why}")
    freed = frees([s])
    if freed:
        lines.append(f"    frees {freed}")
    if s.owner and s.owner != me:
        lines.append(f"    owned by {s.owner}")
    if s.children:
        pids = ", ".join(str(c.pid) for c in s.children[:6]) + (" …" if len(s.children) > 6 else "")
        one = len(s.children) == 1
        when = ("if it outlives the kernel" if one else "if they outlive the kernel") \
            if s.kind == actions.KERNEL else "too"
        lines.append(f"    + {len(s.children)} child process{'' if one else 'es'} ({pids}), signalled {when}")
    if s.refusal:
        lines.append(f"    REFUSED: {s.refusal}")
    return [visible(line) for line in lines]


def plan_lines(steps: list[actions.Step], me: Optional[str] = None) -> list[str]:
    """What the confirmation lists: each target, why, whose, its children, and the total freed."""
    me = me or actions.current_user()
    lines: list[str] = []
    for s in steps[:MAX_STEPS]:
        lines += step_lines(s, me)
    if len(steps) > MAX_STEPS:
        lines.append(f"… and {len(steps) - MAX_STEPS} more")
    total = frees(s for s in steps if not s.refusal)
    lines += ["", f"In all: frees {total}." if total else "In all: what it frees was not measured.",
              "Default is No."]
    return lines


class KillConfirm(ConfirmScreen):
    """A kill plan's confirmation (as wide as the plan, like every confirmation)."""


def result_message(outcomes: list[actions.Outcome]) -> tuple[str, bool]:
    """One notification: what was killed and freed, and what failed."""
    done = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    text = f"killed {len(done)}"
    freed = frees(o.step for o in done if o.result == "ok")
    if freed:
        text += f", freed {freed}"
    if failed:
        text += f"; {len(failed)} not: " + "; ".join(redact(o.describe()) for o in failed[:3])
    audit_errors = sorted({o.audit_error for o in outcomes if o.audit_error})
    if audit_errors:
        text += f"; {redact(audit_errors[0])}"
    return text, bool(failed or audit_errors)


async def _plan(snapshot: Snapshot, kernels: list[Kernel]) -> list[actions.Step]:
    # psutil reads: off the UI loop
    return await asyncio.to_thread(lambda: [actions.plan_kernel(snapshot, k) for k in kernels])


async def _confirm_and_kill(app, title: str, steps: list[actions.Step]):
    """Show the plan (default no); on yes act, say what was freed, read again. None if declined."""
    if not await app.push_screen_wait(KillConfirm(title, plan_lines(steps), "Kill")):
        return None
    outcomes = await app.act(lambda fleet: actions.execute(fleet, steps, action="kill"))
    text, bad = result_message(outcomes)
    app.notify(text, severity="error" if bad else "information", timeout=6)
    app.refresh_now()
    return outcomes


def kill_kernels(screen, kernels: list[Kernel]) -> None:
    """Plan, confirm and kill; the rows go away on the refresh that follows."""
    snapshot = screen.snapshot
    if snapshot is None or not kernels:
        return

    async def flow() -> None:
        app = screen.app
        steps = await _plan(snapshot, kernels)
        n = len(steps)
        outcomes = await _confirm_and_kill(app, f"Kill {n} kernel{'s' if n != 1 else ''}?", steps)
        if outcomes and hasattr(screen, "marked_keys"):
            screen.marked_keys -= {o.step.kernel.key for o in outcomes if o.ok and o.step.kernel}

    screen.run_worker(flow(), group="actions", exclusive=False, exit_on_error=False)


def kill_rows(screen, rows: list) -> None:
    """``k`` on the table: rows of any kind (kernels, leftover processes, terminals) in one
    plan, one confirmation (default no), then nbtui.service.actions; the rows go on the refresh."""
    from nbtui.display import table_rows as tr
    snapshot = screen.snapshot
    if snapshot is None or not rows:
        return
    app = screen.app

    def plan() -> list[tuple[str, actions.Step]]:
        out = []
        for r in rows:
            try:
                if r.kind == tr.KERNEL:
                    out.append((r.key, actions.plan_kernel(snapshot, r.item)))
                elif r.kind == tr.TERMINAL:
                    out.append((r.key, actions.plan_terminal(snapshot, r.item)))
                else:
                    out.append((r.key, actions.plan_process(snapshot, r.item.pid, explicit=False)))
            except NbtuiError as e:
                app.call_from_thread(app.notify, f"{r.ident}: {redact(str(e))}", severity="warning", timeout=5)
        return out

    async def flow() -> None:
        keyed = await asyncio.to_thread(plan)
        if not keyed:
            return
        kinds = sorted({r.kind for r in rows})
        n = len(keyed)
        if kinds == [tr.KERNEL]:
            what = f"{n} kernel{'s' if n != 1 else ''}"
        elif kinds in ([tr.LEFTOVER], [tr.PROCESS], [tr.LEFTOVER, tr.PROCESS]):
            what = f"{n} leftover process{'es' if n != 1 else ''}"
        elif kinds == [tr.TERMINAL]:
            what = f"{n} terminal{'s' if n != 1 else ''}"
        else:
            what = str(n)
        outcomes = await _confirm_and_kill(app, f"Kill {what}?", [s for _, s in keyed])
        if outcomes and hasattr(screen, "marked_keys"):
            ok = {id(o.step) for o in outcomes if o.ok}
            done = {key for key, s in keyed if id(s) in ok}
            screen.marked_keys -= done

    screen.run_worker(flow(), group="actions", exclusive=False, exit_on_error=False)


def leftovers(snapshot: Optional[Snapshot]) -> list:
    """Local processes left over (with a reason), as the snapshot lists them."""
    return [p for p in snapshot.processes if p.orphan_reasons] if snapshot else []


def kill_leftovers(screen) -> None:
    """Every leftover local process (a crashed server's kernel children): plan, confirm, kill."""
    snapshot = screen.snapshot
    procs = leftovers(snapshot)
    app = screen.app
    if not procs:
        app.notify("no leftover processes", timeout=3)
        return

    def plan() -> list[actions.Step]:
        steps = []
        for p in procs:
            try:
                steps.append(actions.plan_process(snapshot, p.pid, explicit=False))
            except NbtuiError:
                continue  # gone since the snapshot
        return steps

    async def flow() -> None:
        steps = await asyncio.to_thread(plan)
        if not steps:
            app.notify("no leftover processes", timeout=3)
            return
        await _confirm_and_kill(app, f"Kill {len(steps)} leftover process{'es' if len(steps) != 1 else ''}?", steps)

    screen.run_worker(flow(), group="actions", exclusive=False, exit_on_error=False)


class CullScreen(ModalScreen[Optional[actions.CullPolicy]]):
    """The cull policy: idle past a duration, orphans, GPU only. Dismisses with the policy or None."""

    DEFAULT_CSS = """
    CullScreen { align: center middle; }
    CullScreen > Vertical { width: 64; max-width: 95%; height: auto; border: thick $warning;
                            background: $surface; padding: 0 1; }
    CullScreen #cull-title { text-style: bold; margin-bottom: 1; }
    CullScreen Input { width: 100%; }
    CullScreen #cull-error { color: $error; height: auto; }
    CullScreen .field { width: 100%; height: auto; }
    CullScreen Horizontal { height: auto; align: right middle; margin-top: 1; }
    CullScreen Button { margin-left: 2; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, defaults: actions.CullPolicy, idle_from: str = ""):
        super().__init__()
        self.defaults = defaults
        self.idle_from = idle_from  # where the default idle comes from: "[cull] idle in config.toml"

    def compose(self) -> ComposeResult:
        d = self.defaults
        with Vertical():
            yield Static("Cull kernels and leftover processes", id="cull-title")
            yield Static(f"Idle longer than ({DURATION_FORMS}; empty: idle time is no rule)"
                         + (f"; default: {self.idle_from}" if self.idle_from else ""), classes="field", markup=False)
            yield Input(value=human_duration(d.idle) if d.idle is not None else "", id="cull-idle",
                        placeholder="e.g. 2h")
            yield Checkbox("Every orphan (kernels and processes with a reason)", d.orphans, id="cull-orphans")
            yield Checkbox("Only what holds GPU memory", d.gpu_only, id="cull-gpu")
            yield Static("", id="cull-error", markup=False)
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Show plan", id="plan", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#cull-idle", Input).focus()

    def policy(self) -> actions.CullPolicy:
        text = self.query_one("#cull-idle", Input).value.strip()
        idle = parse_duration(text, "\"Idle longer than\" value") if text else None
        return actions.CullPolicy(idle=idle, orphans=self.query_one("#cull-orphans", Checkbox).value,
                                  gpu_only=self.query_one("#cull-gpu", Checkbox).value,
                                  servers=self.defaults.servers)

    def _submit(self) -> None:
        try:
            self.dismiss(self.policy())
        except NbtuiError as e:
            self.query_one("#cull-error", Static).update(Text(str(e)))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "plan":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


def cull(screen) -> None:
    """The "Cull…" palette command: policy, plan, confirmation, then act under the cull lock."""
    app = screen.app
    s = app.settings
    # The configured idle: [cull] idle, else the idle threshold the screen counts by ([orphans] idle).
    configured = s.cull_idle is not None
    defaults = actions.CullPolicy(idle=s.cull_idle if configured else s.orphan_idle,
                                  orphans=s.cull_orphans, gpu_only=s.cull_gpu_only)
    idle_from = "[cull] idle in config.toml" if configured else "the idle threshold ([orphans] idle)"

    async def flow() -> None:
        policy = await app.push_screen_wait(CullScreen(defaults, idle_from))
        snapshot = screen.snapshot
        if policy is None or snapshot is None:
            return
        steps = await asyncio.to_thread(actions.plan_cull, snapshot, policy) if policy.selects_anything else []
        if not steps:
            app.notify("nothing to cull", timeout=4)
            return
        title = f"Cull {len(steps)}?"
        if not await app.push_screen_wait(KillConfirm(title, plan_lines(steps), "Cull")):
            return
        try:
            with actions.cull_lock():
                outcomes = await app.act(lambda fleet: actions.execute(fleet, steps, action="cull"))
        except actions.CullBusy as e:
            app.notify(str(e), severity="warning", timeout=6)
            return
        text, bad = result_message(outcomes)
        app.notify(text.replace("killed", "culled", 1), severity="error" if bad else "information", timeout=6)
        app.refresh_now()

    screen.run_worker(flow(), group="actions", exclusive=False, exit_on_error=False)
