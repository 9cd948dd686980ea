"""The nbtui Textual app: themes, the refresh loop, and the screens.

Data comes only from ``fleet.snapshot()``, read on a thread of its own every
``refresh`` seconds (one read at a time; a slow server delays nothing but itself).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Optional, TypeVar

from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer

from nbtui.display import table_rows as tr
from nbtui.files.config import Settings
from nbtui.core.model import Snapshot
from nbtui.files.secrets import redact
from nbtui.tui import themes as theme_files
from nbtui.tui.screens.fleet import FleetScreen, HelpScreen
from nbtui.core.summary import Counts
from nbtui.tui.runner import SnapshotRunner

T = TypeVar("T")
TYPEAHEAD_SECONDS = 5.0  # the longest a console may take to appear after enter


class NbtuiApp(App):
    TITLE = "nbtui"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("q", "quit", "Quit", show=False),
        Binding("ctrl+c", "ctrl_c", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help", show=False),
    ]

    def __init__(
        self,
        fleet: Any,
        *,
        settings: Settings | None = None,
        readonly: bool = False,
        theme: str | None = None,
        refresh: float | None = None,
        config_folder: Path | None = None,
        open_console: Optional[tuple[str, str]] = None,
        live: bool = True,
        runner: Optional[SnapshotRunner] = None,
    ):
        super().__init__()
        self.settings = settings or getattr(fleet, "settings", None) or Settings()
        self.readonly = readonly
        # The one fleet, read and acted on through the fleet service the runner holds (an
        # OpenOnce opens on first use); the runner may hold a read started before the app.
        self.runner = runner if runner is not None else SnapshotRunner(fleet)  # the screen's feed (closed at quit)
        self.runner.service.readonly = readonly  # the one gate: nbtui.service.actions' require_writable reads it
        self.interval = refresh or self.settings.refresh
        self.initial_console = open_console
        self._exit_loop: Optional[asyncio.AbstractEventLoop] = None  # for exit_threadsafe
        self._leave_asked = False
        self.live = live
        self.snapshot: Optional[Snapshot] = None
        self.snapshots_seen = 0
        self.theme_errors: list[str] = []
        self._keyed_toasts: dict[str, Any] = {}  # the last toast of each key (notify(key=…))
        self._reading = False
        self._again = False
        self._timer: Optional[Timer] = None
        self.started_at = time.monotonic()
        self.first_rows_at: Optional[float] = None
        # Characters typed between enter on a kernel's row and its console having the focus
        # (otherwise the fleet screen's keys would take them); the console takes them.
        self._typeahead: Optional[list[events.Key]] = [] if open_console else None
        self._typeahead_until = time.monotonic() + TYPEAHEAD_SECONDS
        self._register_themes(config_folder, theme or self.settings.theme)

    async def act(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Run one action (a coroutine function given the fleet) against the fleet that read
        the rows on screen: every kill, cull, stop, rebind and migration of the screens goes
        through here, on the fleet service's loop, never through a fleet of its own."""
        return await self.runner.service.act(fn)

    @property
    def fleet(self) -> Any:
        """The one fleet (opened on first use when the app was given an OpenOnce: `nbtui`
        draws its screen before the fleet exists). Its clients live on the service's loop:
        act on it through ``act``."""
        return self.runner.fleet

    def notify(self, message: str, *, markup: bool = True, key: Optional[str] = None, **kwargs: Any) -> None:
        """Every toast (the app's and every screen's, which call this) shows its text
        literally: outside strings in it are never parsed as markup (nbtui.tui.safe).
        ``key``: a toast of that key replaces the one before it (sorts, the cursor's row)
        instead of stacking under it."""
        from nbtui.tui.safe import message as safe_message
        if key is None:
            super().notify(safe_message(message), markup=False, **kwargs)
            return
        from textual.notifications import Notification, Notify

        old = self._keyed_toasts.pop(key, None)
        if old is not None:
            old.timeout = 0  # expired: dropped even if its Notify is still queued
            if old in self._notifications:
                self._unnotify(old)
        toast = Notification(safe_message(message), kwargs.get("title", ""), kwargs.get("severity", "information"),
                             kwargs.get("timeout") or self.NOTIFICATION_TIMEOUT, markup=False)
        self._keyed_toasts[key] = toast
        self.post_message(Notify(toast))

    # -- themes --------------------------------------------------------------------------

    def _register_themes(self, config_folder: Path | None, wanted: str) -> None:
        loaded, errors = theme_files.load_all(config_folder)
        self.theme_errors = errors
        self.own_themes = [t.name for t in loaded]  # listed first by "Change theme"
        for t in loaded:
            self.register_theme(t)
        names = set(self.available_themes)
        if wanted in names:
            self.theme = wanted
        else:
            if wanted:
                self.theme_errors.append(
                    f"unknown theme {wanted!r} (known: {', '.join(sorted(t.name for t in loaded))}); "
                    f"using {theme_files.DEFAULT_THEME}")
            if theme_files.DEFAULT_THEME in names:
                self.theme = theme_files.DEFAULT_THEME

    def search_themes(self) -> None:
        from textual.command import CommandPalette

        self.push_screen(CommandPalette(providers=[theme_files.OwnThemesFirst], placeholder="Search for themes…"))

    def watch_theme(self, theme: str) -> None:
        screen = self.fleet_screen
        if screen is not None and screen.is_mounted:
            screen.render_rows(restyle=True)
            screen.render_summary()

    # -- screens -------------------------------------------------------------------------

    @property
    def fleet_screen(self) -> Optional[FleetScreen]:
        for s in self.screen_stack:
            if isinstance(s, FleetScreen):
                return s
        return None

    def exit_threadsafe(self) -> None:
        """Ask the app to leave from a signal handler or another thread: queued on its loop
        (what asyncio's own signal handling does), never raised into the code that runs now
        (an exception raised into Textual's writer or its shutdown can wedge it). No-op once
        the loop is gone."""
        self._leave_asked = True  # before the loop runs: on_mount leaves at once
        loop = self._exit_loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self.exit)
        except RuntimeError:  # closed meanwhile
            pass

    def on_mount(self) -> None:
        self._exit_loop = asyncio.get_running_loop()
        if self._leave_asked:
            self.exit()
            return
        # After Textual's start, not within it: everything the app's mount does runs inside
        # Textual's startup batch, whose frames are rendered and then dropped, so a screen
        # pushed here would draw its rows once for nothing and reach the terminal only on a
        # later refresh (~85 ms later at start, measured).
        self.call_later(self._open_fleet_screen)

    async def _open_fleet_screen(self) -> None:
        if self._leave_asked:
            return
        screen = FleetScreen(readonly=self.readonly)
        screen.waiting = self.runner.waiting_names()  # drawn at once: every server "reading…"
        # What has come already is composed with the screen (not restyled into it after).
        screen.history = self.runner.history
        first = self.runner.arrived()
        if first is not None:
            screen.apply_snapshot(first.snapshot, first.index, first.cells, first.rows, first.waiting,
                                  counts=first.counts)
        elif self.snapshot is not None:  # a read that ended before the screen existed
            screen.apply_snapshot(self.snapshot, table_rows=tr.rows_of(self.snapshot))
        mounted = self.push_screen(screen)
        self.refresh_now()  # a read that comes while the screen mounts is what its on_mount draws
        await mounted
        for line in self.theme_errors:
            self.notify(line, severity="warning", timeout=8)
        if self.initial_console:
            self.open_console(*self.initial_console)

    def open_console(self, server: str, kernel_id: str) -> None:
        from nbtui.tui.screens.console import ConsoleScreen  # on first use: the fleet screen starts without it

        self.push_screen(ConsoleScreen(self.fleet, server, kernel_id, act=self.act))

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key) and not event.is_forwarded and self._buffered(event):
            return
        await super().on_event(event)

    def _buffered(self, event: events.Key) -> bool:
        """Keep a typed-ahead character for the console that is opening; True if kept."""
        if self._typeahead is None:
            screen = self.screen
            if event.key == "enter" and isinstance(screen, FleetScreen) and self.focused is not None \
                    and self.focused.id == "kernels" and screen.selected_kernel is not None:
                self._typeahead, self._typeahead_until = [], time.monotonic() + TYPEAHEAD_SECONDS
                self.set_timer(TYPEAHEAD_SECONDS + 0.1, self._typeahead_expired)
            return False
        if time.monotonic() > self._typeahead_until:  # no console came: the keys act as usual
            self.release_typeahead()
            return False
        if event.is_printable and event.character:
            self._typeahead.append(event)
            return True
        return False

    def _typeahead_expired(self) -> None:
        if self._typeahead is not None and time.monotonic() >= self._typeahead_until:
            self.release_typeahead()

    def take_typeahead(self) -> str:
        """What was typed ahead for the console now showing (it goes into its input)."""
        keys, self._typeahead = self._typeahead or [], None
        return "".join(k.character or "" for k in keys)

    def release_typeahead(self) -> None:
        """No console took the keys: they act where they are, in order."""
        keys, self._typeahead = self._typeahead or [], None
        for key in keys:
            self.post_message(events.Key(key.key, key.character))

    def action_help(self) -> None:
        screen = self.fleet_screen
        if screen is None or isinstance(self.screen, HelpScreen):
            return
        notes = [
            "Rows are kernels, terminals (term:NAME) and leftover processes (pid:N) of crashed servers.",
            "Marked rows (space) are the targets of i, r and k (k frees any kind); otherwise the one "
            "under the cursor. escape or u clears the marks.",
            "! marks an orphan (the REASON column or the detail pane says why). — means nobody measured it.",
        ]
        if self.readonly:
            notes.append("READONLY: actions that change a kernel are off.")
        self.push_screen(HelpScreen(screen.help_keys(), notes))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        fleet = self.fleet_screen
        if fleet is not None:
            for title, help_text, callback in fleet.palette_commands():
                yield SystemCommand(title, help_text, callback)
        yield SystemCommand("Change theme", "Pick another colour theme", self.action_change_theme)
        yield SystemCommand("Help", "Every key on one screen (?)", self.action_help)
        for cmd in super().get_system_commands(screen):
            if cmd.title not in ("Theme",):
                yield cmd

    # -- refresh loop --------------------------------------------------------------------

    def refresh_now(self, whole: bool = True) -> None:
        """Read every server now (or right after the read in flight); ``whole`` (all but the
        timer's): their sessions and terminals too, whatever the pace of those asks."""
        if whole:
            self.runner.service.read_whole_next()
        if self._reading:
            self._again = True
            return
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._reading = True
        self.run_worker(self._read(), group="refresh", exit_on_error=False)

    async def _read(self) -> None:
        try:
            async for read in self.runner.reads():  # each server as it answers, then the whole read
                self.apply_snapshot(read.snapshot, read.index, read.cells, rows=read.rows,
                                    waiting=read.waiting, partial=read.partial, counts=read.counts)
        except Exception as e:  # the screen stays; say why in one line
            self.notify(f"refresh failed: {redact(str(e)) or type(e).__name__}", severity="error", timeout=4)
        finally:
            self._reading = False
        if self._again:
            self._again = False
            self.refresh_now(whole=False)  # (a whole read asked meanwhile is flagged already)
        elif self.live and self.is_running:
            self._timer = self.set_timer(self.interval, self._tick)

    def _tick(self) -> None:
        self.refresh_now(whole=False)

    def apply_snapshot(self, snap: Snapshot, index: Optional[dict] = None, cells: Optional[tuple] = None, *,
                       rows: Optional[list] = None, waiting: tuple = (), partial: bool = False,
                       counts: Optional[Counts] = None) -> None:
        """Show a snapshot; ``partial``: some servers have not answered yet (their rows, or
        the last read's, follow), so it is not counted as a read."""
        screen = self.fleet_screen
        if not partial:
            self.snapshot = snap
            self.snapshots_seen += 1
        if screen is not None:
            screen.history = self.runner.history
            screen.apply_snapshot(snap, index, cells, rows, waiting, counts=counts)
            if self.first_rows_at is None and screen.is_mounted and screen.query("KernelTable") \
                    and screen.table.order:
                self.first_rows_at = time.monotonic()

    async def action_ctrl_c(self) -> None:
        """Quit, unless the screen takes ctrl+c itself (the console interrupts its kernel)."""
        take = getattr(self.screen, "take_ctrl_c", None)
        if take is not None and take():
            return
        await self.action_quit()

    async def action_quit(self) -> None:
        self.exit()

    def on_unmount(self) -> None:
        self.runner.close()  # idempotent; the fleet stays readable (a test opens a second app on it)
