"""The fleet screen: every holder of every server (kernels, terminals, leftover
processes) in one live table, filterable, sortable.

Reaching it from outside (other screens, bulk actions):
  ``screen.selected_row``      the row under the cursor (``nbtui.display.table_rows.Row``), any kind
  ``screen.selected_kernel``   the kernel under the cursor (None when there is none)
  ``screen.marked_rows`` / ``screen.marked_kernels``  marked rows / the kernels among them
  ``screen.targets()``         the marked kernels, else the selected one (i, r, m act on these)
  ``screen.target_rows()``     the marked rows, else the selected one (k acts on these)
  ``screen.marked_keys`` / ``screen.clear_marks()``
  ``screen.snapshot``          the snapshot on screen; ``app.refresh_now()`` reads again
Actions that change a kernel are named in MUTATING; ``--readonly`` disables them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Optional

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Input, Static

from nbtui.display import columns as cols
from nbtui.display import table_rows as tr
from nbtui.core import summary
from nbtui.display.frees import frees_all
from nbtui.core.model import Kernel, Snapshot
from nbtui.core.summary import Counts
from nbtui.files.secrets import redact
from nbtui.core.text import visible
from nbtui.tui import rows
from nbtui.tui.fleet_header import server_lines, summary_text
from nbtui.tui.safe import plain
from nbtui.tui.screens.confirm import ConfirmScreen
from nbtui.tui.widgets.detail import DetailPane
from nbtui.tui.usage_history import History
from nbtui.tui.widgets.table import KernelTable
from nbtui.tui.widgets.textline import TextLines
from nbtui.tui import themes as theme_files
from nbtui.tui.widgets.keys_footer import KeysFooter
if TYPE_CHECKING:
    from nbtui.service.actions.kill import Outcome
    from nbtui.tui.app import NbtuiApp
    from nbtui.tui.runner import SnapshotRunner

# Actions that change a kernel: off under --readonly (kill, cull, migrate join them).
MUTATING = {"interrupt", "restart", "kill", "cull", "migrate", "kill_leftovers", "rebind", "stop_server"}
# Actions that need a row under the cursor (or marked).
NEEDS_KERNEL = {"interrupt", "restart", "console", "mark", "kill", "migrate", "rebind"}
SIDE = 52  # the detail pane's width beside the table
# What the filter box matches (nbtui.display.table_rows.matches): every field, named in its hint.
FILTER_FIELDS = ("server", "id", "path", "spec", "state", "kind", "user", "reason")
FILTER_HINT = f"filter: {', '.join(FILTER_FIELDS)} (escape clears)"
# Columns whose texts repeat across rows: their styled cells are shared (FleetScreen._style).
_SHARED_CELLS = frozenset({"flags", "kind", "server", "user", "spec", "state", "conn", "idle", "cpu", "mem", "gpu",
                           "gpu%", "reason"})
_SHARED_MAX = 4096  # distinct shared cells kept before starting over
TALL = 34  # at least this tall: details start open below a table that cannot keep them beside


class EmptyNote(Static, can_focus=True):
    """What the screen says instead of an empty table; focusable, so the footer keeps the
    screen's keys while there are no rows."""

    DEFAULT_CSS = "EmptyNote:focus { background: $surface; }"


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 64; max-width: 100%; height: auto; max-height: 100%;
                                  border: thick $primary; background: $surface; padding: 0 1;
                                  scrollbar-size-vertical: 1; }
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
        with VerticalScroll():  # longer than 24 lines: up/down/pagedown scroll it
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
    FleetScreen.narrow.details KernelTable { height: auto; max-height: 50%; }
    FleetScreen.narrow DetailPane { width: 1fr; height: 1fr; border-left: none; border-top: hkey $panel; }
    FleetScreen.short.narrow DetailPane { display: none; }
    FleetScreen.short.narrow KernelTable { height: 1fr; max-height: 100%; }
    FleetScreen.narrow DetailPane:focus { border-top: heavy $accent; }
    """

    BINDINGS = [
        # Ranked: the footer cuts from the right, so the keys that act come first and fit
        # at 80 columns (every key is in ? and ctrl+p).
        Binding("k", "kill", "Kill"),
        Binding("m", "migrate", "Migrate"),
        Binding("enter", "console", "Console"),
        Binding("question_mark", "app.help", "Help"),
        Binding("space", "mark", "Mark"),
        Binding("slash", "filter", "Filter"),
        Binding("o", "orphans", "Orphans"),
        Binding("s", "sort", "Sort"),
        Binding("d", "details", "Details"),
        Binding("i", "interrupt", "Interrupt"),
        Binding("r", "restart", "Restart"),
        Binding("q", "app.quit", "Quit"),
        Binding("escape", "escape", "Clear filter/marks", show=False),
        Binding("u", "unmark_all", "Unmark all", show=False),
        Binding("S", "reverse", "Reverse", show=False),
        Binding("R", "refresh", "Refresh", show=False),
        Binding("v", "servers", "Servers (k stops a hub user's)", show=False),
        Binding("x", "expand_others", "Other users' servers: one line each / per user", show=False),
        # cull and rebind are in the palette ("Cull…", "Rebind to a notebook…").
    ]

    def __init__(self, readonly: bool = False):
        super().__init__()
        self.readonly = readonly
        self.snapshot: Optional[Snapshot] = None
        self._counts: Optional[Counts] = None  # the summary line's counts of ``snapshot``
        self.filter_text = ""
        self.orphans_only = False
        self.expand_others = False  # x: other users' discovered servers each on its own in the strip
        self.sort_key: Optional[str] = None  # None: the fleet's order (server, longest idle)
        self.sort_reverse = False
        self.marked_keys: set[str] = set()
        self.history = History()
        self.show_details: Optional[bool] = None  # None: decided by the width
        self._by_key: dict[str, tr.Row] = {}
        self._rows: list[tr.Row] = []
        self._layout: tuple = ()
        self._theme: Any = None  # the app's current Theme, looked up once per refresh
        self._styled: dict[tuple[str, str, bool], Text] = {}  # shared cells (_style), for self._styled_theme
        self._styled_theme: Any = None
        self._cells: Optional[tuple] = None  # the runner's cells for the snapshot on screen
        self._mounted = False  # on_mount has run: every widget of the screen is composed
        self._said: dict[str, float] = {}  # readonly refusals on screen, by action
        self.waiting: tuple[str, ...] = ()  # servers whose first answer has not come yet

    # -- what others reach ---------------------------------------------------------------

    @property
    def table(self) -> KernelTable:
        return self.query_one(KernelTable)

    @property
    def selected_row(self) -> Optional[tr.Row]:
        key = self.table.key_at_cursor()
        return self._by_key.get(key) if key else None

    @property
    def selected_kernel(self) -> Optional[Kernel]:
        r = self.selected_row
        return r.kernel if r is not None else None

    @property
    def marked_rows(self) -> list[tr.Row]:
        if not self.marked_keys:  # (the summary asks at every refresh: 5,000 rows need no test)
            return []
        return [self._by_key[k] for k in self.table.order if k in self.marked_keys and k in self._by_key]

    @property
    def marked_kernels(self) -> list[Kernel]:
        return [r.kernel for r in self.marked_rows if r.kernel is not None]

    def targets(self) -> list[Kernel]:
        """Kernels to act on (i, r, m): the marked ones, else the one under the cursor."""
        if self.marked_keys:
            return self.marked_kernels
        k = self.selected_kernel
        return [k] if k else []

    def target_rows(self) -> list[tr.Row]:
        """Rows of any kind to act on (k): the marked ones, else the one under the cursor."""
        marked = self.marked_rows
        if marked:
            return marked
        r = self.selected_row
        return [r] if r else []

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
        # The screen's classes first: its children are styled once as they mount, not
        # again for each class that on_mount would add (a restyle of the whole screen each).
        self._relayout()
        self.set_class(not self.visible_rows(), "empty")
        yield TextLines("nbtui", id="summary")
        yield TextLines("", id="servers")
        yield Input(placeholder=FILTER_HINT, id="filter")
        with Horizontal(id="body"):
            yield KernelTable(id="kernels")
            yield EmptyNote("", id="empty", markup=False)
            yield DetailPane(id="detail")
        yield KeysFooter(compact=True, show_command_palette=False)  # its right-docked hint garbles at 80 columns

    def on_mount(self) -> None:
        self._mounted = True
        self._relayout()
        self.render_all()
        # The table holds the focus, or the note while there are no rows (render_rows hands
        # it over as they come and go). Set now: a widget's focus() lands later, and could take
        # it back from the table that rows arriving meanwhile gave it to.
        self.set_focus(self.table if self.table.order else self.query_one("#empty", Static))
        runner = self._runner()
        if runner is not None:  # a read begun before this screen samples the host once it is drawn
            self.call_after_refresh(runner.screen_shown)

    def on_resize(self) -> None:
        self._relayout()
        self.render_all()

    def _natural(self) -> dict[str, int]:
        """What the layout knows of the data: the longest server name (it changes rarely)."""
        snap = self.snapshot
        names = [len(visible(s.name)) for s in snap.servers] if snap is not None else []
        # The state column: `never used` at most (the detail pane says `starting · never used`).
        return {"server": max(names), "state": cols.STATE_SHORT} if names else {"state": cols.STATE_SHORT}

    def _beside(self, width: int) -> bool:
        """Details fit beside the table only where the table keeps its full column set."""
        return cols.is_full(rows.layout_for(width - SIDE, self._natural()))

    def _details_visible(self) -> bool:
        if self.show_details is not None:
            return self.show_details
        width, height = self._known_size()
        return self._beside(width) or height >= TALL

    def _known_size(self) -> tuple[int, int]:
        """The screen's size; before it is mounted, the terminal's (the app knows it)."""
        size = self.size if self.size.width else self.app.size
        return size.width or 80, size.height or 24

    def _relayout(self) -> None:
        width, height = self._known_size()
        narrow = not self._beside(width)
        details = self._details_visible()
        self.set_class(narrow, "narrow")
        self.set_class(height < 22, "short")
        self.set_class(details, "details")
        side = SIDE if details and not narrow else 0
        layout = rows.layout_for(width - side, self._natural())
        if rows.layout_of(layout) != self._layout:
            try:
                table = self.table
            except NoMatches:  # not composed yet: on_mount lays it out
                return
            table.set_layout(layout, self._labels())
            self._layout = rows.layout_of(layout)
            runner = self._runner()
            if runner is not None:  # the next reads compute cells for this layout
                runner.layout = layout

    def _labels(self) -> dict[str, str]:
        if self.sort_key is None:
            return {}
        c = rows.BY_KEY[self.sort_key]
        return {c.key: c.title + self._arrow()}

    def _arrow(self) -> str:
        down = (self.sort_key in tr.NUMERIC) != self.sort_reverse
        return "▼" if down else "▲"

    def _runner(self) -> Optional["SnapshotRunner"]:
        """The app's feed over the fleet service (none in an app that only shows snapshots)."""
        return getattr(self.app, "runner", None)

    def hidden_sort(self) -> Optional[str]:
        """The sort's column and direction (``CPU▼``) when the width hides that column (the
        summary line names it then), else None."""
        if self.sort_key is None or self.sort_key in {c.key for c in self.table.layout_columns}:
            return None
        return rows.BY_KEY[self.sort_key].title + self._arrow()

    # -- data ----------------------------------------------------------------------------

    def apply_snapshot(self, snap: Snapshot, index: Optional[dict] = None,
                       cells: Optional[tuple] = None, table_rows: Optional[list] = None,
                       waiting: tuple[str, ...] = (), *, counts: Optional[Counts] = None) -> None:
        """Show a new snapshot (on the UI thread). The rows, ``index`` (rows by key), the
        usage history and the rows' ``cells`` come from the fleet service's thread when the app
        reads; otherwise they are made here. ``waiting``: servers not answered yet."""
        servers_before = self.snapshot.servers if self.snapshot is not None else ()
        self.snapshot = snap
        self._counts = counts if counts is not None else summary.count(snap)  # the summary line's
        self.waiting = tuple(waiting)
        self._cells = cells
        self._rows = table_rows if table_rows is not None else tr.rows_of(snap)
        if index is None or (index and not isinstance(next(iter(index.values())), tr.Row)):
            index = {r.key: r for r in self._rows}
        self._by_key = index
        self.marked_keys &= self._by_key.keys()
        if table_rows is None:
            self.history.add(self._rows)
        if not self._mounted:  # its widgets may be half composed: on_mount renders what is here
            return
        if tuple(s.name for s in servers_before) != tuple(s.name for s in snap.servers):
            self._relayout()  # the longest server name may have changed
        self.render_all()

    def render_all(self) -> None:
        with self.app.batch_update():
            self.render_rows()
            self.render_summary()
            self.render_detail()

    def visible_rows(self) -> list[tr.Row]:
        if self.snapshot is None:
            return []
        if not self.orphans_only and not self.filter_text.strip():
            rs = self._rows  # every row: 5,000 of them need no test
        else:
            rs = [r for r in self._rows
                  if (not self.orphans_only or r.reasons) and tr.matches(r, self.filter_text)]
        return tr.order(rs, self.sort_key, self.sort_reverse)

    def visible_kernels(self) -> list[Kernel]:
        return [r.kernel for r in self.visible_rows() if r.kernel is not None]

    def render_rows(self, restyle: bool = False) -> int:
        kernels = self.visible_rows()
        with self.app.batch_update():
            self._theme = theme_files.for_rich(self.app.current_theme)  # looked up once per refresh, not per cell
            if self._styled_theme != self.app.theme:
                self._styled.clear()
                self._styled_theme = self.app.theme
            # Until the first whole read has been on screen the rows stream in by server, in any
            # order: the cursor stays on the top row unless someone moved it.
            settled = getattr(self.app, "snapshots_seen", 2) > 1
            written = self.table.apply(kernels, self.marked_keys, self._style, restyle=restyle, pre=self._cells,
                                       follow=settled)
            lost = self.table.lost
            if lost is not None and lost not in self._by_key:  # gone from the fleet, not hidden by a filter
                here = self.table.key_at_cursor()
                self.app.notify(f"{row_label(lost)} is gone" + (f"; the cursor is on {row_label(here)}" if here else ""),
                                timeout=4, key="cursor")
            if self.has_class("empty") != (not kernels):
                self.refresh_bindings()
            self.set_class(not kernels, "empty")
            # A hidden table leaves the footer blank: the empty note holds focus meanwhile.
            note = self.query_one("#empty", Static)
            if not kernels and (self.table.has_focus or self.focused is None):
                self.set_focus(note)
                self.call_after_refresh(self.refresh_bindings)
            elif kernels and (note.has_focus or self.focused is None):
                self.set_focus(self.table)
                self.call_after_refresh(self.refresh_bindings)
            if not kernels:
                self.query_one("#empty", Static).update(self._empty_message())
        return written

    def _style(self, column: str, text: str, orphan: bool = False) -> Text:
        """A cell as plain Text (its text was made visible by the row; never markup). Cells of
        the columns whose texts repeat across rows (an idle time, a state, a size) are one Text
        each, shared by every row showing it (DataTable renders a Text without changing it):
        a refresh that ticks 1,500 idle times makes none."""
        if column in _SHARED_CELLS:
            key = (column, text, orphan)
            made = self._styled.get(key)
            if made is None:
                if len(self._styled) >= _SHARED_MAX:
                    self._styled.clear()
                made = self._styled[key] = self._make_style(column, text, orphan)
            return made
        return self._make_style(column, text, orphan)

    def _make_style(self, column: str, text: str, orphan: bool) -> Text:
        theme = self._theme or theme_files.for_rich(self.app.current_theme)
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
        elif column == "reason" and text:
            style = theme.error or ""
        return plain(text, style=style)  # never a str (DataTable parses a str cell as markup); numbers come padded

    def _empty_message(self) -> str:
        snap = self.snapshot
        if snap is None:
            return "Reading the servers… (each one's rows appear as it answers)"
        if not snap.servers:
            return ("No Jupyter servers yet.\n\n"
                    "  nbtui servers add NAME URL --token-env VAR    add one\n"
                    "  nbtui demo                                    try nbtui on a throwaway local server\n\n"
                    "Servers running on this machine are found by themselves (unless --no-discover).")
        if not any(s.ok for s in snap.servers):
            return "No server could be read (see above). R reads again now."
        if not self._rows:
            n = sum(1 for s in snap.servers if s.ok)
            if self.waiting:
                return f"No kernels yet on {n} server{'s' if n != 1 else ''}; still reading {len(self.waiting)}…"
            return f"No kernels on {n} server{'s' if n != 1 else ''}."
        if self.filter_text:
            return f"Nothing matches {visible(self.filter_text)!r}. escape clears the filter."
        if self.orphans_only:
            return "No orphans (kernels, terminals or leftover processes). o shows every row."
        return "No kernels."

    def render_summary(self) -> None:
        snap = self.snapshot
        width = max(20, (self.size.width or 80) - 2)
        theme = theme_files.for_rich(self.app.current_theme)
        shown = len(self.table.order)
        total = len(self._rows)
        marked = self.marked_rows
        t = summary_text(snap, width, theme=theme, readonly=self.readonly, shown=shown, total=total,
                         filtered=bool(self.filter_text or self.orphans_only), orphans_only=self.orphans_only,
                         marked=len(self.marked_keys), frees=frees_all(marked, short=True), waiting=self.waiting,
                         sort=self.hidden_sort(), counts=self._counts)
        self.query_one("#summary", TextLines).show(t)
        if snap is not None or self.waiting:
            shown_snap = snap if snap is not None else Snapshot(generated_at=None)  # type: ignore[arg-type]
            self.query_one("#servers", TextLines).show(
                server_lines(shown_snap, width, theme=theme, waiting=self.waiting,
                             expand_others=self.expand_others))

    def render_detail(self) -> None:
        if not self.has_class("details"):
            return
        r = self.selected_row
        server = None
        if r is not None and self.snapshot is not None:
            server = next((s for s in self.snapshot.servers if s.name == r.server), None)
        theme = theme_files.for_rich(self.app.current_theme)
        self.query_one(DetailPane).show(r, server, self.history, f"bold {theme.error or 'red'}")

    @on(DataTable.RowHighlighted)
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.render_detail()

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_console()

    # -- keys ----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        # Under --readonly the acting keys still run, to say "readonly: … is off".
        if action in NEEDS_KERNEL and not self.table.order:
            return False
        if action == "clear_filter" and not self.filter_text:
            return False
        return True

    def refuse_readonly(self, what: str) -> bool:
        """Whether the readonly gate (nbtui.service.actions.gate.require_writable) refuses ``what``; if it
        does, say its "readonly: WHAT is off" once (not again while that line is on screen)."""
        from nbtui.service.actions.gate import Readonly, require_writable  # on the first acting key

        try:
            require_writable(self.app, what)
        except Readonly as e:
            import time

            now = time.monotonic()
            if now - self._said.get(what, -10.0) > 4.0:
                self._said[what] = now
                self.notify(e.short, severity="warning", timeout=4)
            return True
        return False

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
        self.app.set_focus(self.table)  # now, not later: keys typed next go to the table

    def on_key(self, event: events.Key) -> None:
        box = self.query_one("#filter", Input)
        if event.key == "escape" and box.has_focus:
            event.stop()
            self.action_clear_filter()

    def action_escape(self) -> None:
        """escape: clear the filter; with no filter, clear the marks."""
        if self.filter_text or self.query_one("#filter", Input).has_class("active"):
            self.action_clear_filter()
        elif self.marked_keys:
            self.action_unmark_all()

    def action_unmark_all(self) -> None:
        if not self.marked_keys:
            return
        n = len(self.marked_keys)
        self.clear_marks()
        self.render_summary()
        self.notify(f"unmarked {n}", timeout=1.5)

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
        self.app.notify(f"sorted by {label}" + (" (reversed)" if self.sort_reverse else ""), timeout=1.5,
                        key="sort")

    def action_details(self) -> None:
        self.show_details = not self._details_visible()
        pane = self.query_one(DetailPane)
        if not self.show_details and pane.has_focus:
            self.set_focus(self.table)  # not left on a hidden pane (its keys would scroll nothing)
        self._relayout()
        self.render_all()

    def action_expand_others(self) -> None:
        """Root's discovery finds every user's servers: one entry per user in the strip, or each."""
        self.expand_others = not self.expand_others
        self.render_summary()
        self.app.notify("other users' servers: " + ("each on its own" if self.expand_others else "one entry per user"),
                        timeout=2, key="expand-others")

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
        else:
            self._not_a_kernel("a console")

    def _not_a_kernel(self, what: str) -> None:
        r = self.selected_row
        if r is not None and r.kernel is None:
            self.notify(f"{what} needs a kernel; this row is a {r.kind} (k frees it)", timeout=3)

    def action_interrupt(self) -> None:
        if self.refuse_readonly("interrupt"):
            return
        targets = self.targets()
        if targets:
            from nbtui.service.actions.kernels import interrupt_kernel  # on first use: not on the way to the first paint

            self._run_action("interrupt", interrupt_kernel, targets)

    def action_restart(self) -> None:
        if self.refuse_readonly("restart"):
            return
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
                from nbtui.service.actions.kernels import restart_kernel
                self._run_action("restart", restart_kernel, targets)

        self.app.push_screen(ConfirmScreen(title, lines, "Restart"), answered)

    def action_kill(self) -> None:
        if self.refuse_readonly("kill"):
            return
        from nbtui.tui.screens.kill import kill_rows
        self._removing(kill_rows(self.app, self.snapshot, self.target_rows()))

    def action_kill_leftovers(self) -> None:
        if self.refuse_readonly("kill"):
            return
        from nbtui.tui.screens.kill import kill_leftovers
        self._removing(kill_leftovers(self.app, self.snapshot))

    def action_cull(self) -> None:
        if self.refuse_readonly("cull"):
            return
        from nbtui.tui.screens.kill import cull
        self._removing(cull(self.app, lambda: self.snapshot))

    def _removing(self, flow: Awaitable[list[Outcome]]) -> None:
        """Run a kill or cull flow (nbtui.tui.screens.kill); what it removed is unmarked."""
        async def run() -> None:
            outcomes = await flow
            removed = {o.step.target for o in outcomes if o.ok}
            if removed & self.marked_keys:
                self.marked_keys -= removed
                self.render_summary()

        self.run_worker(run(), group="actions", exclusive=False, exit_on_error=False)

    def action_stop_server(self) -> None:
        if self.refuse_readonly("stopping servers"):
            return
        from nbtui.tui.hub import stop_server
        stop_server(self)

    def action_servers(self) -> None:
        from nbtui.tui.screens.servers import ServersScreen
        self.app.push_screen(ServersScreen())

    def show_server(self, name: str, hub: bool = False) -> None:
        """Only ``name``'s kernels (the filter on its rows' keys, ``NAME:``); a hub's: its
        users' servers' (``NAME/``)."""
        box = self.query_one("#filter", Input)
        box.add_class("active")
        box.value = f"{name}/" if hub else f"{name}:"
        self.table.focus()

    def action_migrate(self) -> None:
        if self.refuse_readonly("migrate"):
            return
        k = self.selected_kernel
        if k is None:
            self._not_a_kernel("migrate")
            return
        from nbtui.tui.screens.migrate import MigrateScreen
        servers = [s.name for s in (self.snapshot.servers if self.snapshot else ()) if s.ok]
        self.app.push_screen(MigrateScreen(k, servers or [k.server]))

    def action_rebind(self) -> None:
        if self.refuse_readonly("rebind"):
            return
        k = self.selected_kernel
        if k is None:
            return
        if k.session is not None:
            self.notify(f"{k.server}:{k.kernel_id[:8]} already has a session ({k.session.path})", severity="warning")
            return
        from nbtui.tui.screens.migrate import RebindScreen

        def bound(path: Optional[str]) -> None:
            if path:
                self.notify(f"bound {path} to {k.server}:{k.kernel_id[:8]}", timeout=4)
                self.app.refresh_now()

        self.app.push_screen(RebindScreen(k), bound)

    @work(group="actions")
    async def _run_action(self, name: str, act: Callable[[Any, Kernel], Awaitable[None]],
                          targets: Iterable[Kernel]) -> None:
        done, failed = 0, []
        for k in targets:
            try:
                await self.app.act(lambda fleet: act(fleet, k))  # noqa: B023 (awaited here, in its turn)
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
            ("Servers…", "Every server as a row, each hub user's too; k stops a hub user's server (v)",
             self.action_servers),
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
        keys.insert(keys.index(("d", "Details")) + 1, ("tab", "the details pane and back (up/down scroll it)"))
        return keys


def row_label(key: str) -> str:
    """A row's key as the screen names it: ``SERVER:KERNEL8``, ``terminal:SERVER/NAME``, ``pid:N``."""
    if key.startswith(("terminal:", "pid:")):
        return visible(key)
    server, _, kid = key.rpartition(":")
    return visible(f"{server}:{kid[:8]}")


def _short(seconds: float) -> str:
    from nbtui.core.units import human_duration
    return human_duration(seconds)
