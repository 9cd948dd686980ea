"""A short usage history per kernel, for the detail pane's sparklines.

Fed on the fleet service's thread, by the runner's prepare hook (it loops over every kernel); read on the UI thread
for one kernel at a time (``series`` copies a deque in one C call, safe across threads).
"""

from __future__ import annotations

from collections import deque
from typing import Optional, Sequence

from nbtui.core.model import Kernel

HISTORY = 60  # samples kept per kernel


class History:
    """A short usage history per kernel: (cpu %, memory bytes, GPU memory bytes)."""

    def __init__(self, length: int = HISTORY):
        self.length = length
        self._data: dict[str, deque] = {}

    def add(self, kernels: Sequence[Kernel]) -> None:
        data = self._data
        get = data.get
        for k in kernels:
            u = k.usage
            if u is not None:
                key = k.key
                samples = get(key)
                if samples is None:  # (not setdefault: it would make a deque for every kernel, every read)
                    samples = data[key] = deque(maxlen=self.length)
                samples.append((u.cpu_percent, u.memory_bytes, u.gpu_memory_bytes))
        for key in data.keys() - {k.key for k in kernels}:  # gone (set operations in C, not a loop here)
            del data[key]

    def series(self, key: str, index: int) -> list[Optional[float]]:
        """The samples of one measure, oldest first; None where it was unknown."""
        data = [s[index] for s in tuple(self._data.get(key, ()))]
        return [] if all(v is None for v in data) else [None if v is None else float(v) for v in data]
