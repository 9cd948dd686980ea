"""Fleet snapshots on a thread of their own, so reading 20 servers never stalls the screen.

The runner owns a private copy of the fleet (its HTTP clients live on the runner's event
loop); the screen keeps the original for actions and consoles on its own loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional

from nbtui.fleet import Fleet
from nbtui.model import Kernel, Snapshot
from nbtui.tui.history import History
from nbtui.tui.rows import CellCache, Column


def _private_copy(fleet: Any) -> Any:
    if isinstance(fleet, Fleet):
        return type(fleet)([fleet.config_of(n) for n in fleet.names], fleet.settings,
                     stale_files=fleet.stale_files, host=fleet.host, clock=fleet.clock)
    return fleet  # anything else with ``async snapshot()`` (a recorded snapshot in tests)


@dataclass(frozen=True)
class Read:
    snapshot: Snapshot
    index: dict[str, Kernel]
    cells: Optional[tuple] = None  # (layout, {key: cells}) from rows.CellCache


class SnapshotRunner:
    def __init__(self, fleet: Any):
        self.fleet = _private_copy(fleet)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nbtui-fleet", daemon=True)
        self._thread.start()
        self._pending: Optional[concurrent.futures.Future] = None
        self.history = History()
        self._cells = CellCache()
        # (columns, notebook width) of the table, set by the screen; read on this thread.
        self.layout: Optional[tuple[list[Column], int]] = None

    def _submit(self, make: Callable[[], Awaitable[Any]]) -> "concurrent.futures.Future[Any]":
        async def call():
            return await make()

        return asyncio.run_coroutine_threadsafe(call(), self._loop)

    async def _read(self) -> Read:
        snap = await self.fleet.snapshot()
        # Work over every kernel happens here, not on the UI thread: the usage history,
        # the index by key, and every row's cells for the table's current layout.
        self.history.add(snap.kernels)
        layout = self.layout
        cells = self._cells.rows(snap.kernels, *layout) if layout else None
        return Read(snap, {k.key: k for k in snap.kernels}, cells)

    def prefetch(self) -> None:
        """Start the first read now (before the screen exists); the next read gets it."""
        if self._pending is None:
            self._pending = self._submit(self._read)

    async def read(self) -> Read:
        """A snapshot, its kernels by key, and (once the table said its layout) their cells."""
        pending, self._pending = self._pending, None
        return await asyncio.wrap_future(pending or self._submit(self._read))

    async def snapshot(self) -> Snapshot:
        return (await self.read()).snapshot

    def close(self, timeout: float = 3.0) -> None:
        if not self._loop.is_running():
            return
        aclose = getattr(self.fleet, "aclose", None)
        if aclose is not None:
            try:
                asyncio.run_coroutine_threadsafe(aclose(), self._loop).result(timeout)
            except Exception:
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._loop.close()
