"""nbtui's own open kernel connections, so they are not counted as someone connected."""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

from nbtui.core.model import kernel_key
_open: Counter[str] = Counter()


def key(server: str, kernel_id: str) -> str:
    return kernel_key(server, kernel_id)


@contextmanager
def holding(server: str, kernel_id: str):
    """Mark one nbtui connection to a kernel as open for the duration of the block."""
    k = key(server, kernel_id)
    _open[k] += 1
    try:
        yield
    finally:
        _open[k] -= 1
        if _open[k] <= 0:
            del _open[k]


def count(server: str, kernel_id: str) -> int:
    return _open.get(key(server, kernel_id), 0)
