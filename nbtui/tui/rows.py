"""What each cell of the fleet table says, and how rows filter and sort.

The rows (kernels, terminals, leftover processes) and the width rule are core code
(``nbtui.display.table_rows``, ``nbtui.display.columns``) shared with `nbtui ls`; this module keeps
what the table adds: marks, and a cache so a refresh recomputes only changed rows.
"""

from __future__ import annotations

from typing import Iterable, Optional

from nbtui.core import model
from nbtui.display import columns as cols
from nbtui.display import table_rows as tr
from nbtui.display.columns import BY_KEY, Column, Layout  # noqa: F401  (re-exported for the screen)
from nbtui.display.table_rows import DASH, MARK, ORPHAN, Row, matches, order  # noqa: F401

# `s` cycles through these, in this order.
SORT_CYCLE = ("idle", "gpu", "mem", "cpu", "server", "notebook", "state", "kernel", "user", "kind")
RESERVE = 2  # the table's vertical scrollbar


def layout_for(width: int, natural: Optional[dict] = None) -> Layout:
    """The table's columns in ``width`` cells (one space of gap each, room for the scrollbar)."""
    return cols.fit(width, natural, reserve=RESERVE)


def path_cell(path: str, width: int) -> str:
    return cols.cut_path(path, width)


def cells(r: Row, layout: Layout, marked: bool = False) -> tuple[str, ...]:
    """The text of each visible cell, in column order."""
    return tr.cells(r, layout, marked)


def layout_of(layout: Layout) -> tuple:
    """What a row's cells depend on besides the row: the columns and their widths."""
    return tuple((c.key, w) for c, w in layout)


class CellCache:
    """Every row's cells (unmarked) for one layout, recomputed only for rows whose
    state, usage, notebook or reasons changed. A row that is the very object it was (its
    kernel unchanged: nbtui.jupyter.join) needs no comparing; its idle cell is formatted
    again only once its text can have changed (``table_rows.idle_text_lasts``).

    Pure Python: the snapshot runner fills one on its own thread, the table keeps another.
    """

    def __init__(self) -> None:
        self.layout: Optional[tuple] = None
        self._sig: dict[str, tuple] = {}  # key -> (signature, cells, row, idle cell good until)

    def rows(self, rows: Iterable[Row], layout: Layout) -> tuple[tuple, dict[str, tuple[str, ...]]]:
        key_of = layout_of(layout)
        if key_of != self.layout:
            self._sig.clear()
            self.layout = key_of
        idle_at = next((i for i, (c, _) in enumerate(layout) if c.key == "idle"), None)
        idle_w = layout[idle_at][1] if idle_at is not None else 0
        now = model.clock()
        out: dict[str, tuple[str, ...]] = {}
        sigs = self._sig
        for r in rows:
            key = r.key
            cached = sigs.get(key)
            if cached is not None and cached[2] is r and (idle_at is None or now < cached[3]) and r.state != "starting":
                out[key] = cached[1]  # the very row, its idle text still good: its cells as they were
                continue
            same = cached is not None and cached[2] is r
            if cached is not None and same and r.state != "starting":
                sig = cached[0]  # the very row: nothing in it changed (a starting kernel's state text can)
            else:
                sig = (r.kind, r.server, tr.text(r, "state"), r.connections, r.spec, r.notebook, r.user, r.pid, r.cpu,
                       r.mem, r.gpu, r.gpu_percent, r.reasons)
            if cached is not None and cached[0] == sig:
                new, until = cached[1], cached[3]
                if idle_at is not None and (not same or now >= until):  # (another row: its own idle time)
                    idle = tr.cell(r, "idle", idle_w)  # `busy 3m`, `unused`, or the idle time
                    until = now + tr.idle_text_lasts(r)
                    if new[idle_at] != idle:
                        new = new[:idle_at] + (idle,) + new[idle_at + 1:]
            else:
                new, until = tr.cells(r, layout, False), now + tr.idle_text_lasts(r)
            sigs[key] = (sig, new, r, until)
            out[key] = new
        if len(sigs) > len(out):
            for key in [key for key in sigs if key not in out]:
                del sigs[key]
        return key_of, out


def with_mark(row: tuple[str, ...], layout: Layout) -> tuple[str, ...]:
    """An unmarked row's cells with the mark shown."""
    if layout and layout[0][0].key == "flags":
        return (MARK + row[0][1:],) + row[1:]
    return row
