"""The fleet screen's feed: the fleet service's reads, made into what the screen paints.

The service (nbtui.service.service) reads the one fleet on a thread of its own; the screen
hands it ``prepare``, which turns each read into the table's rows, the index by key, every
row's cells for the table's current layout, the summary's counts and (for a whole read) the
usage history, on the service's thread. The screen's loop receives finished reads: one
thread crossing per read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Optional

from nbtui.core import summary
from nbtui.core.model import Snapshot
from nbtui.display import table_rows as tr
from nbtui.service.service import FleetService, OpenOnce, Reading
from nbtui.tui.rows import CellCache, Layout
from nbtui.tui.usage_history import History

if TYPE_CHECKING:
    from nbtui.service.forked_read import ForkedRead

__all__ = ["OpenOnce", "Read", "SnapshotRunner"]


@dataclass(frozen=True)
class Read:
    snapshot: Snapshot
    index: dict[str, tr.Row]  # rows by key
    cells: Optional[tuple[Any, ...]] = None  # (layout, {key: cells}) from rows.CellCache
    rows: Optional[list[tr.Row]] = None  # every row of the snapshot (nbtui.display.table_rows), in fleet order
    waiting: tuple[str, ...] = ()  # servers that have not answered (a first read in progress)
    partial: bool = False  # more of this read is coming
    counts: Optional[summary.Counts] = None  # the summary line's counts of this snapshot


class SnapshotRunner:
    """The screen's side of the service: the service itself (``service``, for actions), the
    usage history, and the layout the table asked for (set on the UI thread, read on the
    service's)."""

    def __init__(self, fleet: Any, *, first: Optional["ForkedRead"] = None, readonly: Optional[bool] = None):
        """``fleet``: a fleet or an ``OpenOnce``; ``first``: the first read, begun in a child process."""
        self.history = History()
        self._cells = CellCache()
        self._rows = tr.RowMemo()
        self.layout: Optional[Layout] = None
        self.service: FleetService[Read] = FleetService(fleet, first=first, prepare=self._finish, readonly=readonly)

    @property
    def fleet(self) -> Any:
        return self.service.fleet

    def _finish(self, reading: Reading) -> Read:
        """Work over every row happens here, on the service's thread, not on the UI thread:
        the rows, the index by key, the summary's counts and every row's cells."""
        snap = reading.snapshot
        rows = tr.rows_of(snap, memo=self._rows)
        if not reading.partial:
            self.history.add(rows)
        layout = self.layout
        cells = self._cells.rows(rows, layout) if layout else None
        # (the rows by key: rows_of's memo of them, made anew each call)
        return Read(snap, self._rows.last, cells, rows, reading.waiting, reading.partial, summary.count(snap))

    def screen_shown(self) -> None:
        self.service.screen_shown()

    def prefetch(self) -> None:
        self.service.prefetch()

    def arrived(self) -> Optional[Read]:
        return self.service.arrived()

    def waiting_names(self) -> tuple[str, ...]:
        return self.service.waiting_names()

    def reads(self) -> AsyncIterator[Read]:
        return self.service.reads()

    async def read(self) -> Read:
        return await self.service.read()

    async def snapshot(self) -> Snapshot:
        return (await self.read()).snapshot

    def close(self, timeout: float = 3.0) -> None:
        self.service.close(timeout)
