"""A short usage history per kernel, for the detail pane's sparklines.

Fed on the fleet service's thread, by the runner's prepare hook, with every read's rows; read
on the UI thread for one kernel at a time (``series`` copies a deque in one C call, safe
across threads).

A read adds one sample for each measured kernel, but the work of a read follows what changed:
a kernel's samples are kept as runs (the read a sample was first taken at, the sample), and a
row that is the very row of the last read (its kernel unchanged: ``table_rows.RowMemo``) has
the sample its run already has, so nothing is done for it. The rows that are new objects are
found with set operations (rows hash by identity: C loops, no Python step per kernel).
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Iterable, Optional

from nbtui.core.kinds import KERNEL
from nbtui.display.table_rows import Row

HISTORY = 60  # samples kept per kernel

Sample = tuple[Optional[float], Optional[int], Optional[int]]  # (cpu %, memory bytes, GPU memory bytes)


def _sample(r: Row) -> Optional[Sample]:
    u = r.item.usage
    return None if u is None else (u.cpu_percent, u.memory_bytes, u.gpu_memory_bytes)


class History:
    """A short usage history per kernel: (cpu %, memory bytes, GPU memory bytes), one sample
    a read, the last ``length`` kept, while the kernel is listed. A read at which a listed
    kernel was not measured adds no sample."""

    def __init__(self, length: int = HISTORY):
        self.length = length
        self._reads = 0
        # key -> runs: (the read it starts at, its sample; None: not measured from that read)
        self._runs: dict[str, deque[tuple[int, Optional[Sample]]]] = {}
        self._rows: set[Row] = set()  # the rows of the last read
        self._listed: Counter[str] = Counter()  # rows of the last read by key (a liar lists a kernel twice)

    def add(self, rows: Iterable[Row]) -> None:
        """One read's rows (of any kind; the kernels' are sampled)."""
        now = set(rows)
        before, self._rows = self._rows, now
        gone, new = before - now, now - before
        listed, runs_of = self._listed, self._runs
        read = self._reads + 1  # (counted once its samples are in: ``series`` on the UI thread)
        for r in gone:
            key = r.key
            listed[key] -= 1
            if listed[key] <= 0:
                del listed[key]
        for r in new:
            listed[r.key] += 1
        new_keys = {r.key for r in new}
        twins = set()  # a kernel listed twice, one of its rows gone: the one left is sampled again
        for r in gone:
            if r.key not in listed:  # no row of its kernel any more (a changed kernel has a new one)
                runs_of.pop(r.key, None)
            elif r.key not in new_keys:
                twins.add(r.key)
        if twins:  # (a walk of the rows, only after such a liar)
            new = new | {r for r in now if r.key in twins}
        for r in new:
            if r.kind != KERNEL:
                continue
            sample = _sample(r)
            runs = runs_of.get(r.key)
            if runs is None:
                if sample is None:
                    continue
                runs = runs_of[r.key] = deque()
            elif runs[-1][1] == sample:
                continue  # the run goes on
            elif runs[-1][0] == read:  # (a kernel listed twice: one row's sample this read)
                continue
            runs.append((read, sample))
            if len(runs) > 2 * self.length + 2:  # (runs with a sample and without alternate at
                runs.popleft()  # worst: the last 2 * length + 2 hold the last ``length`` samples)
        self._reads = read

    def series(self, key: str, index: int) -> list[Optional[float]]:
        """The samples of one measure, oldest first (the last ``length``); None where it was unknown."""
        read = self._reads
        runs = tuple(self._runs.get(key, ()))
        left = self.length
        parts: list[list[Optional[float]]] = []
        end = read + 1
        for at, sample in reversed(runs):
            if sample is not None and left > 0:
                n = min(end - at, left)
                parts.append([sample[index]] * n)
                left -= n
            end = at
        data = [v for part in reversed(parts) for v in part]
        return [] if all(v is None for v in data) else [None if v is None else float(v) for v in data]
