"""nbtui's own open kernel connections, so they are not counted as someone connected.

One ``OwnConnections`` per fleet (every client the fleet makes shares it): a console opens
its websocket on the screen's loop while the fleet's reads count connections on the
service's, so the count is kept under a lock.
"""

from __future__ import annotations

import threading
from collections import Counter
from contextlib import contextmanager
from typing import Iterator

from nbtui.core.model import kernel_key


class OwnConnections:
    def __init__(self) -> None:
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    @contextmanager
    def holding(self, server: str, kernel_id: str) -> Iterator[None]:
        """Mark one nbtui connection to a kernel as open for the duration of the block."""
        k = kernel_key(server, kernel_id)
        with self._lock:
            self._open[k] += 1
        try:
            yield
        finally:
            with self._lock:
                self._open[k] -= 1
                if self._open[k] <= 0:
                    del self._open[k]

    def count(self, server: str, kernel_id: str) -> int:
        with self._lock:
            return self._open.get(kernel_key(server, kernel_id), 0)

    def counts(self) -> dict[str, int]:
        """Every kernel's count now, by ``kernel_key`` (one lock for a whole read, not one per kernel)."""
        with self._lock:
            return dict(self._open)
