"""Kill and cull on the fleet screen: the plan in a confirmation (default no), then the
actions (nbtui.service.actions.kill, .cull) through ``app.act``.

``kill_rows(app, snapshot, rows)`` is what ``k`` runs, ``kill_leftovers`` the palette's "Kill
leftover processes…", ``cull`` its "Cull…" (``CullScreen``: the policy in, the plan confirmed,
then acted on under the same lock as ``nbtui cull``). Each plans through the planner
``nbtui kill`` uses and returns the outcomes (none when declined); the screen acts on them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Callable, Optional, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from nbtui.core.errors import NbtuiError, NotFound
from nbtui.core.kinds import KERNEL, LEFTOVER, PROCESS, TERMINAL
from nbtui.core.model import Process, Snapshot
from nbtui.core.text import visible
from nbtui.core.units import DURATION_FORMS, human_duration, middle_truncate, parse_duration
from nbtui.display.frees import frees, frees_all
from nbtui.display.table_rows import Item, Row
from nbtui.files.secrets import redact
from nbtui.service.actions.cull import CullBusy, CullPolicy, cull_lock, plan_cull
from nbtui.service.actions.gate import current_user
from nbtui.service.actions.kill import KillTarget, Outcome, Step, execute, plan_rows
from nbtui.tui.screens.confirm import ConfirmScreen
from nbtui.tui.widgets.checkbox import BoxCheckbox as Checkbox

if TYPE_CHECKING:
    from nbtui.tui.app import NbtuiApp
MAX_STEPS = 8


def step_lines(s: Step, me: str) -> list[str]:
    """A step as a few short lines: what, why, what it frees, whose, its children."""
    if s.kind == KERNEL:
        k = s.kernel
        assert k is not None
        lines = [f"• kernel {k.server}:{k.kernel_id[:8]}  {s.notebook or '(no session)'}"]
        why = s.explanation.split(": ", 1)[-1] if s.explanation else ""
    elif s.kind == TERMINAL:
        lines = [f"• {s.target}" + (f"  (shell pid {s.process.pid})" if s.process else "")]
        why = s.explanation
    else:
        p = s.process
        assert p is not None
        lines = [f"• pid {p.pid}  {middle_truncate(p.cmdline, 60)}"]
        why = s.explanation
    if why:
        lines.append(f"    {why}")
    freed = frees(s.memory_bytes, s.gpu_memory_bytes)
    if freed:
        lines.append(f"    frees {freed}")
    if s.owner and s.owner != me:
        lines.append(f"    owned by {s.owner}")
    if s.children:
        pids = ", ".join(str(c.pid) for c in s.children[:6]) + (" …" if len(s.children) > 6 else "")
        one = len(s.children) == 1
        when = ("if it outlives the kernel" if one else "if they outlive the kernel") \
            if s.kind == KERNEL else "too"
        lines.append(f"    + {len(s.children)} child process{'' if one else 'es'} ({pids}), signalled {when}")
    if s.refusal:
        lines.append(f"    REFUSED: {s.refusal}")
    return [visible(line) for line in lines]


def plan_lines(steps: list[Step], me: Optional[str] = None) -> list[str]:
    """What the confirmation lists: each target, why, whose, its children, and the total freed."""
    me = me or current_user()
    lines: list[str] = []
    for s in steps[:MAX_STEPS]:
        lines += step_lines(s, me)
    if len(steps) > MAX_STEPS:
        lines.append(f"… and {len(steps) - MAX_STEPS} more")
    total = frees_all(s for s in steps if not s.refusal)
    lines += ["", f"In all: frees {total}." if total else "In all: what it frees was not measured.",
              "Default is No."]
    return lines


class KillConfirm(ConfirmScreen):
    """A kill plan's confirmation (as wide as the plan, like every confirmation): True on yes."""


def result_message(outcomes: list[Outcome], verb: str = "killed") -> tuple[str, bool]:
    """One notification: what was killed (or culled) and freed, and what failed."""
    done = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    text = f"{verb} {len(done)}"
    freed = frees_all(o.step for o in done if o.result == "ok")
    if freed:
        text += f", freed {freed}"
    if failed:
        text += f"; {len(failed)} not: " + "; ".join(redact(o.describe()) for o in failed[:3])
    audit_errors = sorted({o.audit_error for o in outcomes if o.audit_error})
    if audit_errors:
        text += f"; {redact(audit_errors[0])}"
    return text, bool(failed or audit_errors)


async def confirm_and_kill(app: NbtuiApp, title: str, steps: list[Step], *, action: str = "kill",
                           verb: str = "killed") -> list[Outcome]:
    """Show the plan (default no); on yes act through ``app.act``, say what was freed, read
    again. The outcomes; none if declined."""
    if not await app.push_screen_wait(KillConfirm(title, plan_lines(steps), "Cull" if action == "cull" else "Kill")):
        return []
    if action == "cull":
        try:
            with cull_lock():
                outcomes = await app.act(lambda fleet: execute(fleet, steps, action=action))
        except CullBusy as e:
            app.notify(str(e), severity="warning", timeout=6)
            return []
    else:
        outcomes = await app.act(lambda fleet: execute(fleet, steps, action=action))
    text, bad = result_message(outcomes, verb)
    app.notify(text, severity="error" if bad else "information", timeout=6)
    app.refresh_now()
    return outcomes


def _what(rows: Sequence[Row], n: int) -> str:
    """``3 kernels``, ``2 leftover processes``, ``1 terminal``; a mix is a number."""
    kinds = {r.kind for r in rows}
    if kinds == {KERNEL}:
        return f"{n} kernel{'s' if n != 1 else ''}"
    if kinds <= {LEFTOVER, PROCESS}:
        return f"{n} leftover process{'es' if n != 1 else ''}"
    if kinds == {TERMINAL}:
        return f"{n} terminal{'s' if n != 1 else ''}"
    return str(n)


async def _plan(snapshot: Snapshot, items: Sequence[Item]) -> tuple[list[Step], list[str]]:
    """``plan_rows`` (psutil reads: off the UI loop): the steps, and a line for each row
    gone since it was listed."""
    gone: list[str] = []

    def note(target: KillTarget, e: NotFound) -> None:
        gone.append(f"{target}: {e}")

    steps = await asyncio.to_thread(plan_rows, snapshot, items, note)
    return steps, gone


async def kill_rows(app: NbtuiApp, snapshot: Optional[Snapshot], rows: Sequence[Row]) -> list[Outcome]:
    """``k`` on the table: rows of any kind (kernels, leftover processes, terminals) in one
    plan (``plan_rows``: the planner of ``nbtui kill``), one confirmation (default no), then
    the kill; the rows go on the refresh. The outcomes; none if declined."""
    if snapshot is None or not rows:
        return []
    steps, gone = await _plan(snapshot, [r.item for r in rows])
    for line in gone:
        app.notify(redact(line), severity="warning", timeout=5)
    if not steps:
        return []
    return await confirm_and_kill(app, f"Kill {_what(rows, len(steps))}?", steps)


def leftovers(snapshot: Optional[Snapshot]) -> list[Process]:
    """Local processes left over (with a reason), as the snapshot lists them."""
    return [p for p in snapshot.processes if p.orphan_reasons] if snapshot else []


async def kill_leftovers(app: NbtuiApp, snapshot: Optional[Snapshot]) -> list[Outcome]:
    """Every leftover local process (a crashed server's kernel children): plan, confirm, kill.
    A process gone since the snapshot is left out."""
    procs = leftovers(snapshot)
    steps = (await _plan(snapshot, procs))[0] if snapshot is not None and procs else []
    if not steps:
        app.notify("no leftover processes", timeout=3)
        return []
    n = len(steps)
    return await confirm_and_kill(app, f"Kill {n} leftover process{'es' if n != 1 else ''}?", steps)


class CullScreen(ModalScreen[Optional[CullPolicy]]):
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

    def __init__(self, defaults: CullPolicy, idle_from: str = "") -> None:
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

    def policy(self) -> CullPolicy:
        text = self.query_one("#cull-idle", Input).value.strip()
        idle = parse_duration(text, "\"Idle longer than\" value") if text else None
        return CullPolicy(idle=idle, orphans=self.query_one("#cull-orphans", Checkbox).value,
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


def cull_defaults(app: NbtuiApp) -> tuple[CullPolicy, str]:
    """The dialog's first policy and where its idle comes from: [cull] idle, else the idle
    threshold the screen counts by ([orphans] idle)."""
    s = app.settings
    configured = s.cull_idle is not None
    defaults = CullPolicy(idle=s.cull_idle if configured else s.orphan_idle,
                          orphans=s.cull_orphans, gpu_only=s.cull_gpu_only)
    return defaults, "[cull] idle in config.toml" if configured else "the idle threshold ([orphans] idle)"


async def cull(app: NbtuiApp, snapshot_now: Callable[[], Optional[Snapshot]]) -> list[Outcome]:
    """The "Cull…" palette command: policy, plan (of the snapshot on screen once the policy
    is in), confirmation, then act under the cull lock. The outcomes; none if declined."""
    policy = await app.push_screen_wait(CullScreen(*cull_defaults(app)))
    snapshot = snapshot_now()
    if policy is None or snapshot is None:
        return []
    steps = await asyncio.to_thread(plan_cull, snapshot, policy) if policy.selects_anything else []
    if not steps:
        app.notify("nothing to cull", timeout=4)
        return []
    return await confirm_and_kill(app, f"Cull {len(steps)}?", steps, action="cull", verb="culled")
