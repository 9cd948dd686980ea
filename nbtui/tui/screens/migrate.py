"""Migrate and rebind on the fleet screen (``m`` and the palette).

``MigrateScreen``: pick the target server and notebook path, see the plan (the source's
inventory: what moves, what is imported, what is skipped and why), then move with a
progress bar. A move that shuts the source down asks first (default no). Escape before
the move closes without changing anything; escape during the move asks to abort it (the
source stays untouched, the half-made target kernel is removed).

``RebindScreen``: a notebook path for a kernel that no session references.
"""

from __future__ import annotations

import time
import asyncio
from typing import TYPE_CHECKING, Any, Optional

from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, ProgressBar, Select, Static

from nbtui.service.actions import migrate as migrate_action
from nbtui.core.model import Kernel
from nbtui.files.secrets import redact
from nbtui.tui.widgets.checkbox import BoxCheckbox as Checkbox
from nbtui.tui.safe import lines, message
from nbtui.tui.screens.confirm import ConfirmScreen
from nbtui.core.units import human_bytes
if TYPE_CHECKING:
    from nbtui.migrate.move import Migration, Options, Progress
    from nbtui.tui.app import NbtuiApp


# The CLI's flags in the core's messages, as the dialog's own fields.
FIELD_WORDS = (
    ("replace it with --overwrite-notebook", "replace it: tick \"Overwrite a different notebook file on the target\""),
    ("--overwrite-notebook", "\"Overwrite a different notebook file on the target\""),
    ("--notebook PATH", "the Notebook field"),
    ("--notebook", "the Notebook field"),
    ("--kernel NAME", "a kernel spec the target has (`nbtui migrate --kernel NAME`)"),
    ("--keep-source", "\"Keep the source kernel running\""),
    ("--max-bytes", "the size limit ([migrate] max_bytes)"),
    ("--to", "To server"),
)


def field_words(text: str) -> str:
    for flag, field in FIELD_WORDS:
        text = text.replace(flag, field)
    return text


def _line(e: BaseException) -> str:
    text = redact(str(e)).strip().splitlines()
    return field_words(text[0]) if text else type(e).__name__


class MigrateScreen(ModalScreen[Optional[dict]]):
    if TYPE_CHECKING:  # the screen runs inside NbtuiApp (fleet, refresh_now, open_console)
        app: NbtuiApp

    """Dismisses with the report's JSON after a move, None otherwise."""

    # The dialog scrolls between its title and its buttons, which stay in view at 80x24
    # (docked); its fields are one line each. Focus shows without colour: the focused
    # field's label and button are reversed.
    DEFAULT_CSS = """
    MigrateScreen { align: center middle; }
    MigrateScreen > #mig-dialog {
        width: 96; max-width: 100%; height: auto; max-height: 100%;
        border: thick $accent; background: $surface; padding: 0 1; scrollbar-size-vertical: 1;
    }
    MigrateScreen #mig-title { dock: top; text-style: bold; width: 100%; height: auto; }
    MigrateScreen .row { height: auto; width: 100%; margin-top: 1; }
    MigrateScreen .row Label { width: 12; }
    MigrateScreen .row.-has-focus Label { text-style: bold reverse; }
    MigrateScreen Select { width: 1fr; }
    MigrateScreen Input { width: 1fr; }
    MigrateScreen #mig-keep { margin-top: 1; }
    MigrateScreen BoxCheckbox:focus > .toggle--label { text-style: bold reverse; }
    MigrateScreen #mig-plan { height: auto; border: round $panel; }
    MigrateScreen #mig-progress { width: 100%; margin-top: 1; display: none; }
    MigrateScreen #mig-progress.started { display: block; }
    MigrateScreen #mig-status { width: 100%; height: auto; }
    MigrateScreen #mig-status.error { color: $error; }
    MigrateScreen #mig-buttons { dock: bottom; height: auto; width: 100%; align: right middle; margin-top: 1;
                                 background: $surface; }
    MigrateScreen Button { margin-left: 2; min-width: 10; }
    MigrateScreen Button:focus { text-style: bold reverse; }
    """

    BINDINGS = [Binding("escape", "close", "Close"),
                Binding("pageup", "scroll(-1)", "Scroll up", show=False),
                Binding("pagedown", "scroll(1)", "Scroll down", show=False)]

    def __init__(self, kernel: Kernel, servers: list[str]):
        super().__init__()
        self.kernel = kernel
        self.servers = servers
        self.migration: Any = None  # nbtui.migrate.move.Migration once planned
        self.report = None
        self.running = False
        self.done = False
        self._abort_asked = 0.0

    # -- layout --------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        k = self.kernel
        where = k.session.path if k.session else "no session"
        others = [s for s in self.servers if s != k.server] or self.servers
        with VerticalScroll(id="mig-dialog", can_focus=False):  # its fields and buttons take the tab stops
            yield Static(message(f"Migrate {k.server}:{k.kernel_id[:8]} ({where}) — its variables move into a new kernel"),
                         id="mig-title", markup=False)
            with Horizontal(classes="row"):
                yield Label("To server")
                yield Select([(s, s) for s in self.servers], value=others[0] if others else Select.BLANK,
                             allow_blank=not others, id="mig-to", compact=True)
            with Horizontal(classes="row"):
                yield Label("Notebook")
                yield Input(value=k.session.path if k.session else "", placeholder="path on the target, e.g. work/nb.ipynb",
                            id="mig-notebook", compact=True)
            yield Checkbox("Keep the source kernel running afterwards", id="mig-keep")
            yield Checkbox("Overwrite a different notebook file on the target", id="mig-overwrite")
            yield ProgressBar(total=None, show_eta=False, id="mig-progress")
            yield Static("", id="mig-status", markup=False)  # above the plan: in view after Plan
            with Vertical(id="mig-plan"):  # the dialog scrolls it (pageup/pagedown); no tab stop of its own
                yield Static("Plan shows what moves, what is imported and what is skipped, and why.",
                             id="mig-plan-text", markup=False)
            with Horizontal(id="mig-buttons"):  # docked: in view however far the dialog scrolls
                yield Button("Close", id="mig-close", compact=True)
                yield Button("Plan", id="mig-plan-button", variant="primary", compact=True)
                yield Button("Move", id="mig-move", variant="error", disabled=True, compact=True)

    def on_mount(self) -> None:
        self.query_one("#mig-to", Select).focus()  # the first field: tab goes on to the notebook, boxes, buttons

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        # The focused field's label is reversed (not by colour alone); CSS :focus-within
        # does not restyle a sibling label when the focus moves.
        for row in self.query(".row"):
            row.set_class(row in event.widget.ancestors, "-has-focus")

    def action_scroll(self, pages: int) -> None:
        dialog = self.query_one("#mig-dialog", VerticalScroll)
        if pages < 0:
            dialog.scroll_page_up()
        else:
            dialog.scroll_page_down()

    # -- state -----------------------------------------------------------------------------

    def status(self, text: str, error: bool = False) -> None:
        s = self.query_one("#mig-status", Static)
        s.update(message(text))
        s.set_class(error, "error")

    def _options(self) -> Options:
        from nbtui.migrate.move import Options
        to = self.query_one("#mig-to", Select).value
        notebook = self.query_one("#mig-notebook", Input).value.strip() or None
        keep = self.query_one("#mig-keep", Checkbox).value
        overwrite = self.query_one("#mig-overwrite", Checkbox).value
        return Options(to=str(to) if to is not Select.BLANK else "", notebook=notebook, keep_source=keep,
                       overwrite_notebook=overwrite)

    def on_select_changed(self, _event: Select.Changed) -> None:
        self._invalidate()

    def on_input_changed(self, _event: Input.Changed) -> None:
        self._invalidate()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        if event.checkbox.id == "mig-overwrite":
            self._invalidate()  # the plan checked the target's notebook file under the other choice
            return
        if self.migration is not None and not self.running:
            self.migration.opts.keep_source = self.query_one("#mig-keep", Checkbox).value

    def _invalidate(self) -> None:
        """An input changed: drop the plan (and what it holds) unless it was made with what
        the inputs say now. A change event can come after the plan it is already in (a box
        ticked and Plan pressed at once, on a loaded machine), and must not undo that plan."""
        m = self.migration
        if m is not None and _planned(m.opts) == _planned(self._options()):
            return
        self._drop_plan()

    def _drop_plan(self) -> None:
        if self.running or self.done:
            return
        self.query_one("#mig-move", Button).disabled = True
        if self.migration is not None:
            self._cancel_migration(self.migration)
            self.migration = None

    @work(group="migrate-cancel")
    async def _cancel_migration(self, migration: Migration) -> None:
        try:
            await self.app.act(lambda fleet: migration.cancel())
        except Exception:
            pass

    # -- plan ------------------------------------------------------------------------------

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "mig-close":
            self.action_close()
        elif event.button.id == "mig-plan-button":
            self.plan()
        elif event.button.id == "mig-move":
            self.ask_move()

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self.plan()

    def plan(self) -> None:
        if self.running or self.done:
            return
        opts = self._options()
        if not opts.to:
            self.status("pick a target server", error=True)
            return
        self._drop_plan()
        self.status("reading the source kernel's variables…")
        self._plan(opts)

    @work(exclusive=True, group="migrate")
    async def _plan(self, opts: Options) -> None:
        from nbtui.migrate.move import plan_lines
        loop = asyncio.get_running_loop()

        def progress(p: Any) -> None:  # called on the fleet service's loop
            loop.call_soon_threadsafe(self._progress, p)

        async def prepare(fleet: Any) -> tuple[Any, Any]:
            m = migrate_action.migration_for(fleet, self.kernel, opts, progress)
            return m, await m.prepare()

        try:
            migration, report = await self.app.act(prepare)
        except Exception as e:
            self.status(_line(e), error=True)
            return
        if _planned(opts) != _planned(self._options()):  # changed while it was made: not this plan
            self._cancel_migration(migration)
            self.status("the target, notebook or overwrite box changed while planning: press Plan again",
                        error=True)
            return
        self.migration = migration
        self.query_one("#mig-plan-text", Static).update(lines(field_words(x) for x in plan_lines(report)))
        n = len(report.moved)
        self.status(f"{n} name{'s' if n != 1 else ''} to move; Move asks before anything changes"
                    " (pageup/pagedown scroll the plan)")
        move = self.query_one("#mig-move", Button)
        move.disabled = False
        move.focus()

    # -- move ------------------------------------------------------------------------------

    def ask_move(self) -> None:
        m = self.migration
        if m is None or self.running or self.done:
            return
        keep = self.query_one("#mig-keep", Checkbox).value
        m.opts.keep_source = keep
        r = m.report
        size = human_bytes(sum(e.size or 0 for e in r.moved))
        lines = [f"{len(r.moved)} name(s), {size}, into a new kernel on {m.opts.to} "
                 f"bound to {r.target.get('notebook')}.",
                 f"{len(r.skipped)} skipped name(s) stay behind." if r.skipped else "Nothing is skipped.",
                 "",
                 "The source is kept running." if keep else
                 "Once every moved name is verified there, the SOURCE KERNEL IS SHUT DOWN."]

        def answered(yes: bool | None) -> None:
            if yes:
                self._move()

        self.app.push_screen(ConfirmScreen(f"Move to {m.opts.to}?", lines, "Move"), answered)

    @work(exclusive=True, group="migrate")
    async def _move(self) -> None:
        m = self.migration
        self.running = True
        self.query_one("#mig-move", Button).disabled = True
        self.query_one("#mig-plan-button", Button).disabled = True
        self.status("moving…")
        try:
            report = await self.app.act(lambda fleet: m.execute())
        except Exception as e:
            self.running = False
            self.done = True
            self.status(f"aborted, the source is untouched: {_line(e)}", error=True)
            return
        self.running = False
        self.done = True
        self.report = report
        bar = self.query_one("#mig-progress", ProgressBar)
        bar.add_class("started")
        bar.update(total=max(report.bytes, 1), progress=max(report.bytes, 1))
        t = report.target
        lines = [f"moved and verified {len(report.moved)} name(s) ({human_bytes(report.bytes)} in "
                 f"{report.seconds:.1f} s) into {t.get('server')}:{(t.get('kernel_id') or '')[:8]} "
                 f"bound to {t.get('notebook')}"]
        lines += [f"{e.name}: {e.note}" for e in report.moved if e.note]
        lines.append("source kernel shut down" if report.source_shut_down
                     else f"source kernel kept: {field_words(str(report.source_kept_reason))}")
        self.status("\n".join(lines))
        self.query_one("#mig-close", Button).focus()
        self.app.refresh_now()

    def _progress(self, p: Progress) -> None:
        bar = self.query_one("#mig-progress", ProgressBar)
        if p.stage == "transfer" and p.total:
            bar.add_class("started")  # nothing shows until the transfer starts
            bar.update(total=p.total, progress=p.done)
            self.status(f"moving {p.name or ''}: {human_bytes(p.done)} of {human_bytes(p.total)}")
        elif p.stage not in ("transfer", "done"):
            text = {"inventory": "reading the source kernel's variables…", "verify": "verifying in the target kernel…",
                    "shutdown": "shutting the source kernel down…"}.get(p.stage, p.note or p.stage)
            self.status(text)

    # -- closing ---------------------------------------------------------------------------

    def action_close(self) -> None:
        if self.running:
            now = time.monotonic()
            if now - self._abort_asked > 3:
                self._abort_asked = now
                self.status("a move is running: press escape again to abort it (the source stays as it was)",
                            error=True)
                return
            self.workers.cancel_group(self, "migrate")
            self.status("aborting…", error=True)
            return
        if self.migration is not None and not self.done:
            self._cancel_migration(self.migration)
        self.dismiss(self.report.to_json() if self.report is not None else None)


class RebindScreen(ModalScreen[Optional[str]]):
    if TYPE_CHECKING:  # the screen runs inside NbtuiApp (fleet, refresh_now, open_console)
        app: NbtuiApp

    """A notebook path for a session-less kernel; dismisses with the path bound, or None."""

    DEFAULT_CSS = """
    RebindScreen { align: center middle; }
    RebindScreen > Vertical { width: 80; max-width: 100%; height: auto; border: thick $accent;
                              background: $surface; padding: 0 1; }
    RebindScreen #rb-status { height: auto; }
    RebindScreen #rb-status.error { color: $error; }
    RebindScreen Horizontal { height: auto; align: right middle; }
    RebindScreen Button { margin-left: 2; }
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, kernel: Kernel):
        super().__init__()
        self.kernel = kernel

    def compose(self) -> ComposeResult:
        k = self.kernel
        with Vertical():
            yield Static(f"Bind {k.server}:{k.kernel_id[:8]} to a notebook (its state stays as it is)", markup=False)
            yield Input(placeholder="notebook path on the server, e.g. work/recovered.ipynb", id="rb-path")
            yield Static("", id="rb-status", markup=False)
            with Horizontal():
                yield Button("Cancel", id="rb-cancel")
                yield Button("Bind", id="rb-bind", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#rb-path", Input).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "rb-cancel":
            self.dismiss(None)
        else:
            self._bind()

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self._bind()

    def action_cancel(self) -> None:
        self.dismiss(None)

    @work(exclusive=True)
    async def _bind(self) -> None:
        path = self.query_one("#rb-path", Input).value
        status = self.query_one("#rb-status", Static)
        try:
            await self.app.act(lambda fleet: migrate_action.rebind_kernel(fleet, self.kernel, path))
        except Exception as e:
            status.update(message(_line(e)))
            status.set_class(True, "error")
            return
        self.dismiss(path.strip().lstrip("/"))


def _planned(opts: Options) -> tuple[str, Optional[str], bool]:
    """What a plan was made for: the target, the notebook and whether a different file there
    may be overwritten (keeping the source is read when Move is pressed)."""
    return opts.to, opts.notebook, opts.overwrite_notebook
