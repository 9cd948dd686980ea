"""The fleet screen: every kernel of every server, live, filterable, sortable.

Reaching it from outside (other screens, bulk actions):
  ``screen.selected_kernel``   the kernel under the cursor (None when there is none)
  ``screen.marked_kernels``    kernels marked with space that are still in the snapshot
  ``screen.targets()``         the marked kernels, else the selected one
  ``screen.marked_keys`` / ``screen.clear_marks()``
  ``screen.snapshot``          the snapshot on screen; ``app.refresh_now()`` reads again
Actions that change a kernel are named in MUTATING; ``--readonly`` disables them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Input, Static

from nbtui import actions, orphans
from nbtui.model import Kernel, Snapshot
from nbtui.secrets import redact
from nbtui.tui import rows
from nbtui.text import visible
from nbtui.tui.safe import add, plain
from nbtui.tui.confirm import ConfirmScreen
from nbtui.tui.detail import DetailPane
from nbtui.tui.history import History
from nbtui.tui.table import KernelTable
from nbtui.tui.textline import TextLines

if TYPE_CHECKING:
    from nbtui.tui.app import NbtuiApp
from nbtui.units import human_bytes, middle_truncate

# Actions that change a kernel: off under --readonly (kill, cull, migrate join them).
MUTATING = {"interrupt", "restart", "kill", "cull", "migrate", "kill_leftovers", "rebind", "stop_server"}
# Actions that need a kernel under the cursor (or marked).
NEEDS_KERNEL = {"interrupt", "restart", "console", "mark", "kill", "migrate", "rebind"}
WIDE = 120  # at least this wide: details sit beside the table and start open


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical { width: 64; max-width: 100%; height: auto; max-height: 100%;
                            border: thick $primary; background: $surface; padding: 0 1; }
    """
    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]

    def __init__(self, keys: list[tuple[str, str]], notes: list[str]):
        super().__init__()
        self.keys, self.notes = keys, notes

    def compose(self) -> ComposeResult:
        t = Text()
        t.append("Keys\n", style="bold")
        for key, what in self.keys:
            t.append(f"  {key:<12}", style="bold")
            t.append(what + "\n")
        for n in self.notes:
            t.append("\n" + n)
        with Vertical():
            yield Static(t, id="help-text")


def _key_label(key: str) -> str:
    names = {"slash": "/", "question_mark": "?", "space": "space", "escape": "escape",
             "enter": "enter"}
    return ",".join(names.get(k, k) for k in key.split(","))


class FleetScreen(Screen):
    if TYPE_CHECKING:  # the screen runs inside NbtuiApp (fleet, refresh_now, open_console)
        app: NbtuiApp

    DEFAULT_CSS = """
    FleetScreen { layout: vertical; }
    FleetScreen #summary { height: 1; background: $panel; padding: 0 1; }
    FleetScreen #servers { height: auto; max-height: 4; padding: 0 1; color: $text-muted; }
    FleetScreen #filter { display: none; height: 1; border: none; padding: 0 1; }
    FleetScreen #filter.active { display: block; }
    FleetScreen #body { height: 1fr; }
    FleetScreen.narrow #body { layout: vertical; }
    FleetScreen KernelTable { width: 1fr; height: 1fr; }
    FleetScreen #empty { display: none; width: 1fr; height: 1fr; padding: 1 2; }
    FleetScreen.empty #empty { display: block; }
    FleetScreen.empty KernelTable { display: none; }
    FleetScreen DetailPane { display: none; width: 52; height: 1fr; scrollbar-size-vertical: 1; }
    FleetScreen.details DetailPane { display: block; }
    FleetScreen.narrow DetailPane { width: 1fr; height: 9; border-left: none; border-top: hkey $panel; }
    FleetScreen.short.narrow DetailPane { display: none; }
    """

    BINDINGS = [
        # First: the footer cuts from the right at 80 columns (every key is in ? and ctrl+p).
        Binding("question_mark", "app.help", "Help"),
        Binding("q", "app.quit", "Quit"),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter"),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse", "Reverse", show=False),
        Binding("enter", "console", "Console"),
        Binding("d", "details", "Details"),
        Binding("o", "orphans", "Orphans"),
        Binding("space", "mark", "Mark"),
        Binding("i", "interrupt", "Interrupt"),
        Binding("r", "restart", "Restart"),
        Binding("k", "kill", "Kill"),
        Binding("R", "refresh", "Refresh", show=False),
        Binding("m", "migrate", "Migrate"),
        # cull and rebind are in the palette ("Cull…", "Rebind to a notebook…").
    ]

    def __init__(self, readonly: bool = False):
        super().__init__()
        self.readonly = readonly
        self.snapshot: Optional[Snapshot] = None
        self.filter_text = ""
        self.orphans_only = False
        self.sort_key: Optional[str] = None  # None: the fleet's order (server, longest idle)
        self.sort_reverse = False
        self.marked_keys: set[str] = set()
        self.history = History()
        self.show_details: Optional[bool] = None  # None: decided by the width
        self._by_key: dict[str, Kernel] = {}
        self._layout: tuple = ()
        self._theme: Any = None  # the app's current Theme, looked up once per refresh
        self._cells: Optional[tuple] = None  # the runner's cells for the snapshot on screen

    # -- what others reach ---------------------------------------------------------------

    @property
    def table(self) -> KernelTable:
        return self.query_one(KernelTable)

    @property
    def selected_kernel(self) -> Optional[Kernel]:
        key = self.table.key_at_cursor()
        return self._by_key.get(key) if key else None

    @property
    def marked_kernels(self) -> list[Kernel]:
        return [self._by_key[k] for k in self.table.order if k in self.marked_keys]

    def targets(self) -> list[Kernel]:
        marked = self.marked_kernels
        if marked:
            return marked
        k = self.selected_kernel
        return [k] if k else []

    def clear_marks(self) -> None:
        self.marked_keys.clear()
        self.render_rows()

    def select(self, key: str) -> bool:
        """Put the cursor on a kernel by its key (``server:kernel_id``)."""
        order = self.table.order
        if key not in order:
            return False
        self.table.move_cursor(row=order.index(key), animate=False)
        return True

    # -- layout --------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield TextLines("nbtui", id="summary")
        yield TextLines("", id="servers")
        yield Input(placeholder="filter: server, id, path, spec, state (escape clears)", id="filter")
        with Horizontal(id="body"):
            yield KernelTable(id="kernels")
            yield Static("", id="empty", markup=False)
            yield DetailPane(id="detail")
        yield Footer(compact=True, show_command_palette=False)  # its right-docked hint garbles at 80 columns

    def on_mount(self) -> None:
        self._relayout()
        self.render_all()
        self.table.focus()

    def on_resize(self) -> None:
        self._relayout()
        self.render_all()

    def _details_visible(self) -> bool:
        return self.show_details if self.show_details is not None else self.size.width >= WIDE

    def _relayout(self) -> None:
        width, height = self.size.width or 80, self.size.height or 24
        narrow = width < WIDE
        details = self._details_visible()
        self.set_class(narrow, "narrow")
        self.set_class(height < 22, "short")
        self.set_class(details, "details")
        side = 52 if details and not narrow else 0
        columns = rows.visible_columns(width - side)
        nb = rows.notebook_width(columns, width, side)
        layout = (tuple(c.key for c in columns), nb)
        if layout != self._layout:
            self._layout = layout
            self.table.set_layout(columns, nb, self._labels())
            runner = getattr(self.app, "_runner", None)
            if runner is not None:  # the next reads compute cells for this layout
                runner.layout = (columns, nb)

    def _labels(self) -> dict[str, str]:
        if self.sort_key is None:
            return {}
        c = rows.BY_KEY[self.sort_key]
        numeric = self.sort_key in ("conn", "idle", "cpu", "mem", "gpu", "gpu%")
        down = numeric != self.sort_reverse
        return {c.key: c.title + ("▼" if down else "▲")}

    # -- data ----------------------------------------------------------------------------

    def apply_snapshot(self, snap: Snapshot, index: Optional[dict[str, Kernel]] = None,
                       cells: Optional[tuple] = None) -> None:
        """Show a new snapshot (on the UI thread). ``index`` (kernels by key), the usage
        history and the rows' ``cells`` come from the runner's thread when the app reads;
        otherwise they are made here."""
        self.snapshot = snap
        self._cells = cells
        self._by_key = index if index is not None else {k.key: k for k in snap.kernels}
        self.marked_keys &= self._by_key.keys()
        if index is None:
            self.history.add(snap.kernels)
        self.render_all()

    def render_all(self) -> None:
        with self.app.batch_update():
            self.render_rows()
            self.render_summary()
            self.render_detail()

    def visible_kernels(self) -> list[Kernel]:
        snap = self.snapshot
        if snap is None:
            return []
        ks = [k for k in snap.kernels
              if (not self.orphans_only or k.orphan_reasons) and rows.matches(k, self.filter_text)]
        return rows.order(ks, self.sort_key, self.sort_reverse)

    def render_rows(self, restyle: bool = False) -> int:
        kernels = self.visible_kernels()
        with self.app.batch_update():
            self._theme = self.app.current_theme  # looked up once per refresh, not per cell
            written = self.table.apply(kernels, self.marked_keys, self._style, restyle=restyle, pre=self._cells)
            if self.has_class("empty") != (not kernels):
                self.refresh_bindings()
            self.set_class(not kernels, "empty")
            if not kernels:
                self.query_one("#empty", Static).update(self._empty_message())
        return written

    def _style(self, column: str, text: str, orphan: bool = False):
        theme = self._theme or self.app.current_theme
        style = f"italic {theme.error or ''}" if orphan and column in ("kernel", "notebook") else ""
        if column == "state":
            if text == "busy":
                style = f"bold {theme.warning or ''}"
            elif text in ("dead", "unknown"):
                style = theme.error or ""
        elif column == "flags" and rows.ORPHAN in text:
            style = f"bold {theme.error or ''}"
        elif column == "gpu" and text != rows.DASH:
            style = f"bold {theme.accent or ''}"
        if rows.BY_KEY[column].right:
            return plain(text + " ", style=style, justify="right")
        return plain(text, style=style)  # never a str: DataTable parses a str cell as markup

    def _empty_message(self) -> str:
        snap = self.snapshot
        if snap is None:
            return "Reading the servers…"
        if not snap.servers:
            return ("No Jupyter servers yet.\n\n"
                    "  nbtui servers add NAME URL --token-env VAR    add one\n"
                    "  nbtui demo                                    try nbtui on a throwaway local server\n\n"
                    "Servers running on this machine are found by themselves (unless --no-discover).")
        if not any(s.ok for s in snap.servers):
            return "No server could be read (see above). R reads again now."
        if not snap.kernels:
            n = sum(1 for s in snap.servers if s.ok)
            return f"No kernels on {n} server{'s' if n != 1 else ''}."
        if self.filter_text:
            return f"No kernel matches {self.filter_text!r}. escape clears the filter."
        if self.orphans_only:
            return "No orphaned kernels. o shows every kernel."
        return "No kernels."

    def render_summary(self) -> None:
        snap = self.snapshot
        t = Text()
        t.append("nbtui", style="bold")
        if self.readonly:
            t.append("  READONLY", style="bold reverse")
        if snap is None:
            t.append("  reading…")
            self.query_one("#summary", TextLines).show(t)
            return
        up = sum(1 for s in snap.servers if s.ok)
        ks = snap.kernels
        busy = sum(1 for k in ks if k.state == "busy")
        idle = [k for k in ks if orphans.kernel_is_idle(k, snap.idle_threshold)]
        gpu_known = [k.usage.gpu_memory_bytes for k in idle if k.usage and k.usage.gpu_memory_bytes is not None]
        t.append(f"  servers {up}/{len(snap.servers)}", style="" if up == len(snap.servers) else "bold")
        shown = len(self.table.order)
        filtered = bool(self.filter_text or self.orphans_only)
        count = f"{shown}/{len(ks)} kernels shown" if filtered else f"{len(ks)} kernel{'s' if len(ks) != 1 else ''}"
        t.append(f" · {count}" + (" (orphans)" if self.orphans_only else ""), style="bold" if filtered else "")
        t.append(f" · {busy} busy"
                 f" · {len(idle)} idle >{_short(snap.idle_threshold)}")
        t.append(f" · idle GPU {human_bytes(sum(gpu_known)) if gpu_known else '—'}")
        left = [p for p in snap.processes if p.orphan_reasons]
        if left:
            held = sum(p.gpu_memory_bytes or 0 for p in left)
            t.append(f" · {len(left)} leftover" + (f" ({human_bytes(held)} GPU)" if held else ""),
                     style=f"bold {self.app.current_theme.error or ''}")
        if self.marked_keys:
            t.append(f" · marked {len(self.marked_keys)}", style="bold")
            frees = _frees(self.marked_kernels)
            if frees:
                t.append(f" ({frees})", style="bold")
        self.query_one("#summary", TextLines).show(t)
        self.query_one("#servers", TextLines).show(self._servers_text(snap))

    def _servers_text(self, snap: Snapshot) -> Text:
        theme = self.app.current_theme
        t = Text(no_wrap=False, overflow="ellipsis")
        ok = [s for s in snap.servers if s.ok]
        bad = [s for s in snap.servers if not s.ok]
        from nbtui.tui.hub import strip_entries

        for i, (name, extra) in enumerate(strip_entries(ok)):  # a hub's many servers: one count
            if i:
                t.append("   ")
            t.append("● ", style=theme.success or "")
            add(t, name, style="bold")
            t.append(f" {extra}" if extra else "")
        width = max(20, (self.size.width or 80) - 4)
        for s in bad:
            if len(t):
                t.append("\n")
            t.append("✗ ", style=f"bold {theme.error or ''}")
            add(t, s.name, style="bold")
            line = f" {s.status}: {redact(s.error or '')}" if s.error else f" {s.status}"
            add(t, middle_truncate(visible(line.replace("\n", " ")), max(10, width - len(s.name) - 2)))
        return t

    def render_detail(self) -> None:
        if not self.has_class("details"):
            return
        k = self.selected_kernel
        server = None
        if k is not None and self.snapshot is not None:
            server = next((s for s in self.snapshot.servers if s.name == k.server), None)
        theme = self.app.current_theme
        self.query_one(DetailPane).show(k, server, self.history, f"bold {theme.error or 'red'}")

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.render_detail()

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_console()

    # -- keys ----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in MUTATING and self.readonly:
            return None  # shown, greyed out
        if action in NEEDS_KERNEL and not self.table.order:
            return False
        if action == "clear_filter" and not self.filter_text:
            return False
        return True

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("active")
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.render_rows()
        self.render_summary()
        self.render_detail()
        self.refresh_bindings()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            self.query_one("#filter", Input).remove_class("active")
        self.table.focus()

    def on_key(self, event) -> None:
        box = self.query_one("#filter", Input)
        if event.key == "escape" and box.has_focus:
            event.stop()
            self.action_clear_filter()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.remove_class("active")
        self.filter_text = ""
        self.table.focus()
        self.render_all()
        self.refresh_bindings()

    def action_sort(self) -> None:
        cycle = rows.SORT_CYCLE
        self.sort_key = cycle[0] if self.sort_key not in cycle else (
            None if self.sort_key == cycle[-1] else cycle[cycle.index(self.sort_key) + 1])
        self.sort_reverse = False
        self._resort()

    def sort_by(self, key: Optional[str], reverse: bool = False) -> None:
        self.sort_key, self.sort_reverse = key, reverse
        self._resort()

    def action_reverse(self) -> None:
        if self.sort_key is None:
            self.sort_key = rows.SORT_CYCLE[0]
        self.sort_reverse = not self.sort_reverse
        self._resort()

    def _resort(self) -> None:
        self.table.set_labels(self._labels())
        self.render_rows()
        self.render_summary()
        label = "fleet order" if self.sort_key is None else rows.BY_KEY[self.sort_key].title.lower()
        self.notify(f"sorted by {label}" + (" (reversed)" if self.sort_reverse else ""), timeout=1.5)

    def action_details(self) -> None:
        self.show_details = not self._details_visible()
        self._relayout()
        self.render_all()

    def action_orphans(self) -> None:
        self.orphans_only = not self.orphans_only
        self.render_all()

    def action_mark(self) -> None:
        key = self.table.key_at_cursor()
        if key is None:
            return
        self.marked_keys ^= {key}
        row = self.table.cursor_row
        self.render_rows()
        self.render_summary()
        if row + 1 < len(self.table.order):
            self.table.move_cursor(row=row + 1, animate=False)

    def action_refresh(self) -> None:
        self.app.refresh_now()

    def action_console(self) -> None:
        k = self.selected_kernel
        if k is not None:
            self.app.open_console(k.server, k.kernel_id)

    def action_interrupt(self) -> None:
        targets = self.targets()
        if targets:
            self._run_action("interrupt", actions.interrupt_kernel, targets)

    def action_restart(self) -> None:
        targets = self.targets()
        if not targets:
            return
        lines = [f"{k.server}:{k.kernel_id[:8]}  {k.session.path if k.session else '(no session)'}"
                 for k in targets[:12]]
        if len(targets) > 12:
            lines.append(f"… and {len(targets) - 12} more")
        lines += ["", "Its variables and state are lost." if len(targets) == 1 else
                  "Their variables and state are lost."]
        title = f"Restart {len(targets)} kernel{'s' if len(targets) != 1 else ''}?"

        def answered(yes: bool | None) -> None:
            if yes:
                self._run_action("restart", actions.restart_kernel, targets)

        self.app.push_screen(ConfirmScreen(title, lines, "Restart"), answered)

    def action_kill(self) -> None:
        from nbtui.tui.kill import kill_kernels

        kill_kernels(self, self.targets())

    def action_kill_leftovers(self) -> None:
        from nbtui.tui.kill import kill_leftovers

        kill_leftovers(self)

    def action_cull(self) -> None:
        from nbtui.tui.kill import cull

        cull(self)

    def action_stop_server(self) -> None:
        from nbtui.tui.hub import stop_server

        stop_server(self)

    def action_migrate(self) -> None:
        k = self.selected_kernel
        if k is None:
            return
        from nbtui.tui.migrate import MigrateScreen

        servers = [s.name for s in (self.snapshot.servers if self.snapshot else ()) if s.ok]
        self.app.push_screen(MigrateScreen(k, servers or [k.server]))

    def action_rebind(self) -> None:
        k = self.selected_kernel
        if k is None:
            return
        if k.session is not None:
            self.notify(f"{k.server}:{k.kernel_id[:8]} already has a session ({k.session.path})", severity="warning")
            return
        from nbtui.tui.migrate import RebindScreen

        def bound(path: Optional[str]) -> None:
            if path:
                self.notify(f"bound {path} to {k.server}:{k.kernel_id[:8]}", timeout=4)
                self.app.refresh_now()

        self.app.push_screen(RebindScreen(k), bound)

    @work(group="actions")
    async def _run_action(self, name: str, act: Callable, targets: Iterable[Kernel]) -> None:
        done, failed = 0, []
        for k in targets:
            try:
                await act(self.app.fleet, k)
                done += 1
            except Exception as e:  # one line each, never a token
                failed.append(redact(str(e)).splitlines()[0] if str(e) else type(e).__name__)
        if done:
            self.notify(f"{name}: {done} kernel{'s' if done != 1 else ''} done", timeout=3)
        for line in failed[:3]:
            self.notify(f"{name} failed: {line}", severity="error", timeout=6)
        self.app.refresh_now()

    # -- palette and help --------------------------------------------------------------------

    def palette_commands(self) -> list[tuple[str, str, Callable]]:
        """(title, help, callback) for the command palette; other issues append theirs."""
        cmds = [
            ("Filter…", "Filter kernels by server, id, path, spec or state", self.action_filter),
            ("Clear filter", "Show every kernel again", self.action_clear_filter),
            ("Sort: next column", "Cycle the sort column (s)", self.action_sort),
            ("Sort: reverse", "Reverse the sort (S)", self.action_reverse),
            ("Toggle details", "Show or hide the detail pane (d)", self.action_details),
            ("Toggle orphans only", "Show only orphaned kernels (o)", self.action_orphans),
            ("Mark / unmark kernel", "Mark the kernel for bulk actions (space)", self.action_mark),
            ("Open console", "Open the selected kernel's console (enter)", self.action_console),
            ("Refresh now", "Read every server now (R)", self.action_refresh),
        ]
        if not self.readonly:
            cmds += [
                ("Interrupt kernel", "Interrupt the marked or selected kernels (i)", self.action_interrupt),
                ("Restart kernel…", "Restart the marked or selected kernels, after a confirmation (r)",
                 self.action_restart),
                ("Kill kernel…", "Shut down the marked or selected kernels and their leftovers (k)",
                 self.action_kill),
                ("Cull…", "Remove idle or orphaned kernels and leftover processes by policy", self.action_cull),
                ("Kill leftover processes…", "Free what crashed servers' kernels left running (their GPU "
                 "memory too), after a confirmation", self.action_kill_leftovers),
                ("Migrate kernel…", "Move the selected kernel's variables into a new kernel on another "
                 "server, then free the source (m)", self.action_migrate),
                ("Rebind to a notebook…", "Give the selected kernel, which no session references, a "
                 "notebook session so JupyterLab can reopen it", self.action_rebind),
                ("Stop hub server…", "Stop the selected kernel's single-user server through its JupyterHub, "
                 "after a confirmation", self.action_stop_server),
            ]
        return cmds

    def help_keys(self) -> list[tuple[str, str]]:
        keys = [("up/down", "move; pageup/pagedown, home/end")]
        for b in self.BINDINGS:
            if isinstance(b, Binding):
                what = b.description + (" (off: readonly)" if self.readonly and b.action in MUTATING else "")
                keys.append((_key_label(b.key), what))
        keys.insert(3, ("ctrl+p", "command palette: every action, and Change theme"))
        return keys


def _short(seconds: float) -> str:
    from nbtui.units import human_duration

    return human_duration(seconds)


def _frees(kernels: list[Kernel]) -> str:
    """What killing these kernels would free, where measured: ``1.2G mem 4.0G GPU``."""
    mem = sum(k.usage.memory_bytes or 0 for k in kernels if k.usage)
    gpu = sum(k.usage.gpu_memory_bytes or 0 for k in kernels if k.usage)
    return " ".join(x for x in (f"{human_bytes(mem)} mem" if mem else "", f"{human_bytes(gpu)} GPU" if gpu else "") if x)
