"""The kernel table: rows keyed by kernel, updated in place cell by cell."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from rich.text import Text
from textual._two_way_dict import TwoWayDict
from textual.geometry import Region
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey

from nbtui.model import Kernel
from nbtui.tui.rows import CellCache, Column, Layout, cells, layout_of, with_mark

Styler = Callable[[str, str, bool], object]  # (column key, text, orphan row) -> renderable


class KernelTable(DataTable):
    """A DataTable that knows its rows' plain text, so a refresh touches only what changed."""

    def __init__(self, **kw):
        super().__init__(cursor_type="row", zebra_stripes=False, cell_padding=0, **kw)
        self.layout_columns: list[Column] = []
        self.nb_width = 20
        self._text: dict[str, tuple[str, ...]] = {}  # row key -> plain cells
        self._order: list[str] = []
        self._orphan: dict[str, bool] = {}  # row key -> styled as an orphan
        self._cells = CellCache()  # used when the runner's cells are not for this layout

    # -- layout --------------------------------------------------------------------------

    def set_layout(self, columns: list[Column], nb_width: int, labels: dict[str, str]) -> None:
        """Replace the columns (a resize across a breakpoint); rows are re-added by the next apply."""
        self.clear(columns=True)
        self._text.clear()
        self._orphan.clear()
        self._order = []
        self.layout_columns = list(columns)
        self.nb_width = nb_width
        for c in columns:
            width = (nb_width if c.key == "notebook" else c.width) + 1  # one space of gap
            label = _label(labels.get(c.key, c.title), c.right)
            self.add_column(label, width=width, key=c.key)

    def set_labels(self, labels: dict[str, str]) -> None:
        for c in self.layout_columns:
            col = self.columns.get(c.key)  # type: ignore[call-overload]
            if col is not None:
                col.label = _label(labels.get(c.key, c.title), c.right)
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

    def apply(self, kernels: Iterable[Kernel], marked: set[str], style: Styler, restyle: bool = False,
              pre: Optional[tuple[Layout, dict[str, tuple[str, ...]]]] = None) -> int:
        """Make the rows show ``kernels`` in this order; return how many cells were written.

        ``pre`` is every kernel's cells computed off the UI thread (by the snapshot runner)
        for a layout; used when it is this table's layout. Changed cells are written in
        place and only the changed visible rows are repainted.
        """
        cursor_key = self.key_at_cursor()
        kernels = list(kernels)
        keys = [k.key for k in kernels]
        wanted = set(keys)
        written = 0
        gone = [key for key in self._text if key not in wanted]
        for key in gone:
            self.remove_row(key)
            del self._text[key]
            self._orphan.pop(key, None)
        # The table's own order now: what stayed, then what add_row appends.
        current = [key for key in self._order if key in self._text] if gone else list(self._order)
        cols = self.layout_columns
        if pre is None or pre[0] != layout_of(cols, self.nb_width):
            pre = self._cells.rows(kernels, cols, self.nb_width)
        computed = pre[1]
        data = self._data
        changed: set[str] = set()
        for key, k in zip(keys, kernels):
            new = computed.get(key)
            if new is None:  # not in the runner's snapshot (a test feeding kernels directly)
                new = cells(k, cols, self.nb_width, False)
            if key in marked:
                new = with_mark(new, cols)
            old = self._text.get(key)
            orphan = bool(k.orphan_reasons)
            flip = self._orphan.get(key, orphan) != orphan  # the whole row restyles
            if old is None:
                self.add_row(*(style(c.key, v, orphan) for c, v in zip(cols, new)), key=key)
                current.append(key)
                written += len(new)
            elif old != new or restyle or flip:
                row = data[key]  # type: ignore[index]  # RowKey hashes and compares as its str
                for c, a, b in zip(cols, old, new):
                    if a != b or restyle or flip:
                        row[c.key] = style(c.key, b, orphan)  # type: ignore[index]  # what update_cell does, minus a repaint per cell
                        written += 1
                changed.add(key)
            self._text[key] = new
            self._orphan[key] = orphan
        moved = bool(gone) or keys != current or len(current) != len(self._order)
        if keys != current:
            self._reorder(keys)
        elif changed:
            self._repaint_rows(changed, everything=moved)
        self._order = keys
        if cursor_key is not None and cursor_key in self._text:
            index = keys.index(cursor_key)
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False)
        return written

    def _repaint_rows(self, rows: set[str], everything: bool = False) -> None:
        """Repaint after cells changed in place: only these rows' cached renders are dropped,
        so a refresh that changes 1 % of the cells re-renders about 1 % of the visible rows.
        (DataTable.update_cell instead bumps a counter that re-renders every visible cell.)"""
        names = ("_cell_render_cache", "_row_render_cache", "_row_renderable_cache", "_line_cache")
        caches: list[Any] = [getattr(self, n, None) for n in names]
        if everything or any(c is None or not hasattr(c, "keys") for c in caches):
            self._update_count += 1
            self.refresh()
            return
        cells_cache, rows_cache, renderables_cache, lines_cache = caches
        for cache in (cells_cache, rows_cache):  # keyed by (row key, …)
            for key in [k for k in list(cache.keys()) if getattr(k[0], "value", k[0]) in rows]:
                cache.discard(key)
        indices = {self._row_locations.get(RowKey(r)) for r in rows}
        for key in [k for k in list(renderables_cache.keys()) if k[1] in indices]:  # (count, row index)
            renderables_cache.discard(key)
        # Every row is one line high: a row's virtual y is its index below the header.
        top = self.header_height if self.show_header else 0
        ys = {i + top for i in indices if i is not None}
        for key in [k for k in list(lines_cache.keys()) if k[0] in ys]:  # (y, x1, x2, …)
            lines_cache.discard(key)
        window = self.window_region
        width = max(self.size.width, 1)
        for y in sorted(ys):
            if window.y <= y < window.bottom:  # repaint only the changed rows that are visible
                self.refresh(Region(0, y, width, 1).translate(-self.scroll_offset))

    def _reorder(self, keys: list[str]) -> None:
        # What DataTable.sort does, with the order given rather than computed from cells.
        self._row_locations = TwoWayDict({RowKey(k): i for i, k in enumerate(keys)})
        self._update_count += 1
        self.refresh()


def _label(title: str, right: bool) -> Text:
    return Text(title + " ", justify="right") if right else Text(title)
