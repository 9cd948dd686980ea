"""What each cell of the fleet table says, and how rows filter and sort.

The rows (kernels, terminals, leftover processes) and the width rule are core code
(``nbtui.display.table_rows``, ``nbtui.display.columns``) shared with `nbtui ls`; this module keeps
what the table adds: marks, and a cache so a refresh recomputes only changed rows.
"""

from __future__ import annotations

import heapq
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
    kernel unchanged: nbtui.jupyter.join, and ``table_rows.RowMemo``) needs no comparing; its
    idle cell is formatted again only once its text can have changed
    (``table_rows.idle_text_lasts``), when that time comes up in a heap.

    A call's work follows what changed, not the rows: the rows that are new objects are found
    with set operations (rows hash by identity: C loops), the idle cells due from the heap, and the
    answer is a copy of the last one (one C call) with those changed. A row of a starting
    kernel is looked at every call (its state's text can change).

    Pure Python: the snapshot runner fills one on its own thread, the table keeps another.
    """

    def __init__(self) -> None:
        self.layout: Optional[tuple] = None
        self._sig: dict[str, tuple] = {}  # key -> (signature, cells, row, idle cell good until)
        self._cells: dict[str, tuple[str, ...]] = {}  # key -> cells, of the last call
        self._rows: set[Row] = set()  # the rows of the last call
        self._due: list[tuple[float, str]] = []  # heap: (until, key) of each idle cell's text
        self._starting: set[str] = set()  # keys of the rows whose state is "starting"

    def rows(self, rows: Iterable[Row], layout: Layout) -> tuple[tuple, dict[str, tuple[str, ...]]]:
        key_of = layout_of(layout)
        if key_of != self.layout:
            self._sig.clear()
            self._cells.clear()
            self._rows = set()
            self._due.clear()
            self._starting.clear()
            self.layout = key_of
        idle_at = next((i for i, (c, _) in enumerate(layout) if c.key == "idle"), None)
        idle_w = layout[idle_at][1] if idle_at is not None else 0
        now = model.clock()
        sigs, out, due, starting = self._sig, self._cells, self._due, self._starting
        rows = list(rows) if not isinstance(rows, list) else rows
        now_rows = set(rows)  # (rows hash by identity, in C)
        before = self._rows
        self._rows = now_rows
        new = now_rows - before
        look = list(new)
        if starting:
            look += [sigs[key][2] for key in starting if sigs[key][2] not in new]
        for r in look:  # (first: a changed row is compared with its key's last one)
            self._look(r, layout, idle_at, idle_w, now)
        for r in before - now_rows:  # gone, or another row now: a key no row has any more goes
            cached = sigs.get(r.key)
            if cached is not None and cached[2] is r:
                del sigs[r.key]
                del out[r.key]
                starting.discard(r.key)
        while idle_at is not None and due and due[0][0] <= now:  # idle cells whose text can have changed since
            until, key = heapq.heappop(due)
            cached = sigs.get(key)
            if cached is None or cached[3] != until:
                continue  # (an entry the row's later look replaced)
            r = cached[2]
            idle = tr.cell(r, "idle", idle_w)
            until = now + tr.idle_text_lasts(r)
            cells = cached[1]
            if cells[idle_at] != idle:
                cells = cells[:idle_at] + (idle,) + cells[idle_at + 1:]
                out[key] = cells
            sigs[key] = (cached[0], cells, r, until)
            heapq.heappush(due, (until, key))
        if len(due) > 2 * len(sigs) + 64:  # the entries replaced pile up: keep the heap the rows'
            due[:] = [(c[3], key) for key, c in sigs.items() if c[3] != INF]
            heapq.heapify(due)
        if len(out) != len(rows):  # a key listed twice (the last listed wins, as a dict made in order)
            self._last_listed(rows, layout, idle_at, idle_w, now)
        return key_of, dict(out)

    def _look(self, r: Row, layout: Layout, idle_at: Optional[int], idle_w: int, now: float) -> None:
        """The cells of a row that is new (or a starting kernel's): its signature compared with
        its key's last one; the same signature keeps the cells, with its own idle time."""
        key = r.key
        cached = self._sig.get(key)
        same = cached is not None and cached[2] is r
        if same and r.state != "starting":
            return  # the very row, not starting: nothing in it changed
        sig = (r.kind, r.server, tr.text(r, "state"), r.connections, r.spec, r.notebook, r.user, r.pid, r.cpu,
               r.mem, r.gpu, r.gpu_percent, r.reasons, r.ident)
        if cached is not None and cached[0] == sig:
            new, until = cached[1], cached[3]
            if idle_at is not None and not same:  # (another row: its own idle time)
                idle = tr.cell(r, "idle", idle_w)  # `busy 3m`, `unused`, or the idle time
                until = now + tr.idle_text_lasts(r)
                if new[idle_at] != idle:
                    new = new[:idle_at] + (idle,) + new[idle_at + 1:]
        elif cached is not None and cached[0][0] == sig[0]:  # the same kind: only the cells whose values changed
            was = cached[0]
            moved = {i for i, (a, b) in enumerate(zip(was, sig)) if a != b}
            cells = list(cached[1])
            for i, (c, w) in enumerate(layout):
                reads = _READS.get(c.key)
                if reads is None or not moved.isdisjoint(reads):
                    cells[i] = tr.cell(r, c.key, w)
            new, until = tuple(cells), now + tr.idle_text_lasts(r)
        else:
            new, until = tr.cells(r, layout, False), now + tr.idle_text_lasts(r)
        if idle_at is None:
            until = INF
        self._sig[key] = (sig, new, r, until)
        self._cells[key] = new
        if until != INF and (cached is None or cached[3] != until):
            heapq.heappush(self._due, (until, key))
        if r.state == "starting":
            self._starting.add(key)
        else:
            self._starting.discard(key)

    def _last_listed(self, rows: list[Row], layout: Layout, idle_at: Optional[int], idle_w: int, now: float) -> None:
        """Rows that share a key (a server that lists a kernel twice): each key's cells are
        those of its last row, as a dict made in order keeps."""
        last = {r.key: r for r in rows}
        for key, r in last.items():
            cached = self._sig.get(key)
            if cached is None or cached[2] is not r:
                self._sig.pop(key, None)
                self._look(r, layout, idle_at, idle_w, now)


INF = float("inf")
# What each column's cell (``table_rows.cell``, unmarked) reads of a row, as places in
# ``CellCache._look``'s signature: (kind 0, server 1, state text 2, connections 3, spec 4,
# notebook 5, user 6, pid 7, cpu 8, mem 9, gpu 10, gpu % 11, reasons 12, ident 13). A row
# whose signature changed but not its kind has only the cells that read a changed place made
# again; a column not named here, and the IDLE cell (time), always.
_READS: dict[str, frozenset[int]] = {
    "flags": frozenset({12}), "kind": frozenset({0}), "server": frozenset({0, 1, 12}), "kernel": frozenset({13}),
    "notebook": frozenset({0, 5}), "user": frozenset({6}), "pid": frozenset({7}), "spec": frozenset({4}),
    "state": frozenset({0, 2}), "conn": frozenset({3}), "cpu": frozenset({8}), "mem": frozenset({9}),
    "gpu": frozenset({10}), "gpu%": frozenset({11}), "reason": frozenset({12}),
}


def with_mark(row: tuple[str, ...], layout: Layout) -> tuple[str, ...]:
    """An unmarked row's cells with the mark shown."""
    if layout and layout[0][0].key == "flags":
        return (MARK + row[0][1:],) + row[1:]
    return row
