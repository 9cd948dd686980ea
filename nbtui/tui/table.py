"""The kernel table: rows keyed by kernel, updated in place cell by cell."""

from __future__ import annotations

from typing import Callable, Iterable, Optional

from rich.text import Text
from textual._two_way_dict import TwoWayDict
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey

from nbtui.model import Kernel
from nbtui.tui.rows import Column, cells

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

    def apply(self, kernels: Iterable[Kernel], marked: set[str], style: Styler, restyle: bool = False) -> int:
        """Make the rows show ``kernels`` in this order; return how many cells were written."""
        cursor_key = self.key_at_cursor()
        kernels = list(kernels)
        wanted = {k.key for k in kernels}
        written = 0
        gone = [k for k in self._text if k not in wanted]
        for key in gone:
            self.remove_row(key)
            del self._text[key]
            self._orphan.pop(key, None)
        # The table's own order now: what stayed, then what add_row appends.
        current = [k for k in self._order if k in self._text] if gone else list(self._order)
        cols = self.layout_columns
        for k in kernels:
            new = cells(k, cols, self.nb_width, k.key in marked)
            old = self._text.get(k.key)
            orphan = bool(k.orphan_reasons)
            flip = self._orphan.get(k.key, orphan) != orphan  # the whole row restyles
            if old is None:
                self.add_row(*(style(c.key, v, orphan) for c, v in zip(cols, new)), key=k.key)
                current.append(k.key)
                written += len(new)
            elif old != new or restyle or flip:
                for c, a, b in zip(cols, old, new):
                    if a != b or restyle or flip:
                        self.update_cell(k.key, c.key, style(c.key, b, orphan))
                        written += 1
            self._text[k.key] = new
            self._orphan[k.key] = orphan
        order = [k.key for k in kernels]
        if order != current:
            self._reorder(order)
        self._order = order
        if cursor_key is not None and cursor_key in self._text:
            index = order.index(cursor_key)
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False)
        return written

    def _reorder(self, keys: list[str]) -> None:
        # What DataTable.sort does, with the order given rather than computed from cells.
        self._row_locations = TwoWayDict({RowKey(k): i for i, k in enumerate(keys)})
        self._update_count += 1
        self.refresh()


def _label(title: str, right: bool) -> Text:
    return Text(title + " ", justify="right") if right else Text(title)
