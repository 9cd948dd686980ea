"""The fleet table: rows keyed by holder (kernel, terminal, process), updated in place cell by cell."""

from __future__ import annotations

from itertools import compress, repeat
from operator import attrgetter, is_not, or_
from typing import Any, Callable, Iterable, Optional

from rich.text import Text
from textual._two_way_dict import TwoWayDict
from textual.coordinate import Coordinate
from textual.geometry import Region
from textual.binding import Binding
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey

from nbtui.tui.rows import CellCache, Layout, Row, cells, layout_of, with_mark

_key = attrgetter("key")
_MISSING = object()  # (no cells drawn for the key yet)

Styler = Callable[[str, str, bool], object]  # (column key, text, orphan row) -> renderable


class RowTable(DataTable):
    """A row-cursor DataTable whose home and end go to the first and last row (DataTable's
    own scroll sideways in row mode: end seemed to do nothing)."""

    BINDINGS = [
        Binding("home", "first_row", "First row", show=False),
        Binding("end", "last_row", "Last row", show=False),
    ]

    def action_first_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=0, animate=False)

    def action_last_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1, animate=False)


class KernelTable(RowTable):
    """A DataTable that knows its rows' plain text, so a refresh touches only what changed."""

    BINDINGS = [
        Binding("enter", "select_cursor", "Console"),  # shown first in the footer (the screen opens it)
    ]

    def __init__(self, **kw: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, cell_padding=0, **kw)
        self.col_layout: Layout = ()
        self._text: dict[str, tuple[str, ...]] = {}  # row key -> plain cells
        self._row_keys: dict[str, RowKey] = {}  # row key -> its RowKey (nbtui's key is a str)
        self._order: list[str] = []
        self._orphan: dict[str, bool] = {}  # row key -> styled as an orphan
        self._cells = CellCache()  # used when the runner's cells are not for this layout
        self._placed = False  # someone put the cursor on a row (a key, a click, select()): it follows that row
        self._moving = False  # apply() moves the cursor itself
        self._keep: Optional[str] = None  # the cursor's row across set_layout (its rows are re-added)
        self.lost: Optional[str] = None  # the last apply() lost the cursor's row (it went): its key

    def watch_cursor_coordinate(self, old: Coordinate, new: Coordinate) -> None:
        super().watch_cursor_coordinate(old, new)
        if old != new and not self._moving:
            self._placed = True

    # -- layout --------------------------------------------------------------------------

    @property
    def layout_columns(self) -> list:
        return [c for c, _ in self.col_layout]

    def set_layout(self, layout: Layout, labels: dict[str, str]) -> None:
        """Replace the columns (a resize across a breakpoint); rows are re-added by the next
        apply, and the cursor goes back to its row's key there (not to the first row)."""
        if self._keep is None:
            self._keep = self.key_at_cursor()
        self._moving = True  # clearing puts the cursor on row 0: nobody chose that row
        try:
            self.clear(columns=True)
        finally:
            self._moving = False
        self._text.clear()
        self._row_keys.clear()
        self._orphan.clear()
        self._order = []
        self.col_layout = tuple(layout)
        for c, w in self.col_layout:
            label = _label(labels.get(c.key, c.title), c.right, w)
            self.add_column(label, width=w + 1, key=c.key)  # one space of gap

    def set_labels(self, labels: dict[str, str]) -> None:
        for c, w in self.col_layout:
            col = self.columns.get(c.key)
            if col is not None:
                col.label = _label(labels.get(c.key, c.title), c.right, w)
        self._update_count += 1
        self.refresh()

    # -- rows ----------------------------------------------------------------------------

    @property
    def order(self) -> list[str]:
        return list(self._order)

    def key_at_cursor(self) -> Optional[str]:
        if not self._order or self.cursor_row < 0 or self.cursor_row >= len(self._order):
            return None
        return self._order[self.cursor_row]

    def apply(self, kernels: Iterable[Row], marked: set[str], style: Styler, restyle: bool = False,
              pre: Optional[tuple[tuple, dict[str, tuple[str, ...]]]] = None, follow: bool = True) -> int:
        """Make the rows show ``kernels`` (rows of any kind) in this order; return how many
        cells were written. The cursor stays on its row's kernel where it moves, if
        ``follow`` or once someone put it on a row; else it keeps its place (the first rows
        stream in by server, in any order: the cursor stays on the top row meanwhile).
        After ``set_layout`` (a resize) the rows are re-added and the cursor goes back to its
        row's key; ``lost`` names the cursor's row when it is no longer among the rows.

        ``pre`` is every row's cells computed off the UI thread (by the snapshot runner)
        for a layout; used when it is this table's layout. Changed cells are written in
        place and only the changed visible rows are repainted.
        """
        cursor_key = self._keep or self.key_at_cursor()
        self._keep = None
        self.lost = None
        kernels = list(kernels)
        keys = list(map(_key, kernels))  # (C loops where a refresh of 5,000 rows visits each: map, sets, compress)
        wanted = set(keys)
        written = 0
        gone = self._text.keys() - wanted
        for key in gone:
            self.remove_row(key)
            del self._text[key]
            self._row_keys.pop(key, None)
            self._orphan.pop(key, None)
        # The table's own order now: what stayed, then what add_row appends.
        current = [key for key in self._order if key in self._text] if gone else list(self._order)
        cols = self.layout_columns
        if pre is None or pre[0] != layout_of(self.col_layout):
            pre = self._cells.rows(kernels, self.col_layout)
        computed = pre[1]
        data = self._data
        changed: set[str] = set()
        drawn = self._text.get
        look: Iterable[tuple[str, Row]] = zip(keys, kernels)
        if not restyle:  # only the rows whose cells are not the very cells on screen (the runner's
            # cache kept them, so their style too), and the marked ones
            fresh = map(is_not, map(computed.get, keys), map(drawn, keys, repeat(_MISSING)))
            if marked:
                fresh = map(or_, fresh, map(marked.__contains__, keys))
            look = compress(look, fresh)
        for key, k in look:
            new = computed.get(key)
            if new is None:  # not in the runner's snapshot (a test feeding rows directly)
                new = cells(k, self.col_layout, False)
            if key in marked:
                new = with_mark(new, self.col_layout)
            old = self._text.get(key)
            orphan = bool(k.reasons)
            flip = self._orphan.get(key, orphan) != orphan  # the whole row restyles
            if old is None:
                self.add_row(*(style(c.key, v, orphan) for c, v in zip(cols, new)), key=key)
                current.append(key)
                written += len(new)
            elif old != new or restyle or flip:
                row = data[key]  # type: ignore[index]  # RowKey hashes and compares as its str
                for c, a, b in zip(cols, old, new):
                    if a != b or restyle or flip:
                        row[c.key] = style(c.key, b, orphan)  # what update_cell does, minus a repaint per cell
                        written += 1
                changed.add(key)
            self._text[key] = new
            self._orphan[key] = orphan
        moved = bool(gone) or keys != current or len(current) != len(self._order)
        if keys != current:
            self._reorder(keys, current, changed)
        elif changed:
            self._repaint_rows(changed, everything=moved)
        self._order = keys
        if cursor_key is not None and cursor_key not in self._text:
            self.lost = cursor_key  # the cursor stays at its place: on the row that came next
        elif cursor_key is not None and (follow or self._placed):  # else (rows streaming in) the top row
            index = keys.index(cursor_key)
            if index != self.cursor_row:
                self._moving = True
                try:
                    self.move_cursor(row=index, animate=False)
                finally:
                    self._moving = False
        return written

    def _repaint_rows(self, rows: set[str], everything: bool = False) -> None:
        """Repaint after cells changed in place: only these rows' cached renders are dropped,
        so a refresh that changes 1 % of the cells re-renders about 1 % of the visible rows.
        (DataTable.update_cell instead bumps a counter that re-renders every visible cell.)"""
        if everything:
            self._update_count += 1
            self.refresh()
            return
        indices = {self._row_locations.get(self._row_key(r)) for r in rows}
        self._drop(rows, indices.__contains__)

    def _reorder(self, keys: list[str], before: list[str], changed: set[str]) -> None:
        """What DataTable.sort does, with the order given rather than computed from cells;
        then only the places whose row or cells changed are rendered again (of 5,000 rows in
        idle order, the 1 % that changed move to the end: the rows on screen mostly stay)."""
        made = self._row_keys
        try:  # every row's RowKey was made as it was added (a dict lookup each, not a call)
            where = {made[k]: i for i, k in enumerate(keys)}
        except KeyError:
            where = {self._row_key(k): i for i, k in enumerate(keys)}
        self._row_locations = TwoWayDict(where)
        places: list[Any] = [getattr(self, n, None) for n in ("_offset_cache", "_ordered_row_cache")]
        if any(c is None or not hasattr(c, "clear") for c in places):
            self._update_count += 1
            self.refresh()
            return
        for cache in places:  # by update count, which stays: dropped whole (rebuilt from the new order)
            _release(cache)
        n, was = len(keys), len(before)

        def dropped_at(i: int) -> bool:  # another row there now, or its cells changed
            return i >= n or i >= was or before[i] != keys[i] or keys[i] in changed

        self._drop(changed, dropped_at)

    def _drop(self, content: set[str], dropped_at: Callable[[int], bool]) -> None:
        """Drop the cached renders of the rows in ``content`` (their cells changed) and of the
        places (row indices) where ``dropped_at``, and repaint those places on screen; the
        rest stays as rendered. Every row is one line high: a row's y is its index below the
        header. Without DataTable's caches as this Textual version has them: repaint it all."""
        names = ("_cell_render_cache", "_row_render_cache", "_row_renderable_cache", "_line_cache")
        caches: list[Any] = [getattr(self, n, None) for n in names]
        if any(c is None or not hasattr(c, "keys") for c in caches):
            self._update_count += 1
            self.refresh()
            return
        cells_cache, rows_cache, renderables_cache, lines_cache = caches
        if content:
            for cache in (cells_cache, rows_cache):  # keyed by (row key, …)
                for key in [k for k in list(cache.keys()) if getattr(k[0], "value", k[0]) in content]:
                    cache.discard(key)
        for key in [k for k in list(renderables_cache.keys())  # (count, row index)
                    if k[1] is not None and k[1] >= 0 and dropped_at(k[1])]:
            renderables_cache.discard(key)
        top = self.header_height if self.show_header else 0
        for key in [k for k in list(lines_cache.keys()) if k[0] >= top and dropped_at(k[0] - top)]:  # (y, x1, x2, …)
            lines_cache.discard(key)
        window = self.window_region
        width = max(self.size.width, 1)
        for y in range(max(window.y, top), window.bottom):  # repaint only the places on screen
            if dropped_at(y - top):
                self.refresh(Region(0, y, width, 1).translate(-self.scroll_offset))

    def _row_key(self, key: str) -> RowKey:
        """The table's RowKey of a row key, made once (a reorder of 5,000 rows needs them all)."""
        rk = self._row_keys.get(key)
        if rk is None:
            rk = self._row_keys[key] = RowKey(key)
        return rk


def _release(cache: Any) -> None:
    """Empty one of DataTable's order caches. Its one value is a list as long as the table
    (every row, or every row's offset) and its entries are linked in a ring: cleared, the ring
    is a reference cycle that would hold that list until the cycle collector came (5,000
    tuples a reorder, most of the garbage a TUI at 5,000 kernels makes). The lists are
    emptied first, so what they held goes at once."""
    for key in list(cache.keys()):
        value = cache.get(key)
        if isinstance(value, list):
            value.clear()
    cache.clear()


def _label(title: str, right: bool, width: int = 0) -> Text:
    return Text(title.rjust(width)) if right else Text(title)
