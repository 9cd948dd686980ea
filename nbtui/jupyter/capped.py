"""One server's kernels read with a cap: memory bounded by the cap, not by what it sends.

The exporter keeps per-kernel series for at most ``cap`` kernels of a server (the longest idle,
as the fleet orders them) and counts the rest. A server listing 80,000 kernels must not cost
80,000 dicts: ``ServerClient.stream_list`` hands each item of ``/api/kernels`` (then of
``/api/sessions``) here as it is parsed; ``CappedKernels`` keeps the ``cap`` first in the
fleet's order in a heap and counts every other one (by state and idle), then keeps only the
sessions of the kernels kept and counts the others' types.
"""

from __future__ import annotations

import datetime as dt
import heapq
from dataclasses import dataclass, field
from typing import Any, Optional

from nbtui.core import model
from nbtui.core.model import OverCap
from nbtui.core.model import normalize_state
from nbtui.core.orphans import is_idle
from nbtui.core.units import parse_time


class _Later(str):
    """A kernel id that sorts in reverse: the heap's top is the kernel the fleet lists last."""

    __slots__ = ()

    def __lt__(self, other: str) -> bool:
        return str.__gt__(self, other)


# The fields of a kernel's model that nbtui reads (join_kernels): the rest of what a server
# sends is dropped as each item is parsed, so a kept kernel costs only these.
_KERNEL_KEYS = ("id", "name", "last_activity", "execution_state", "connections")


def _kept(raw: dict[str, Any]) -> dict[str, Any]:
    """What the join reads of a kept kernel, no more."""
    return {k: raw.get(k) for k in _KERNEL_KEYS}


@dataclass
class CappedKernels:
    cap: int
    threshold: float  # idle past this counts as idle (the orphan rules' threshold)
    now: dt.datetime
    _heap: list[tuple[float, _Later, dict[str, Any]]] = field(default_factory=list)
    _states: dict[model.KernelState, int] = field(default_factory=dict)
    _types: dict[str, int] = field(default_factory=dict)
    _over: int = 0
    _idle: int = 0
    sessions: list[dict[str, Any]] = field(default_factory=list)  # those of the kernels kept
    _ids: Optional[set[str]] = None  # the kept kernels' ids, once the kernels are all in

    def add(self, raw: Any) -> None:
        """One item of ``/api/kernels``: kept if it is among the cap first, else counted."""
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            return
        last = parse_time(raw.get("last_activity"))
        idle = max(0.0, (self.now - last).total_seconds()) if last else None
        order = (idle if idle is not None else -1.0, _Later(raw["id"]))
        if len(self._heap) < self.cap:
            heapq.heappush(self._heap, (*order, _kept(raw)))
            return
        if self.cap <= 0 or order <= self._heap[0][:2]:
            self._count((*order, raw))  # counted and dropped: no copy made of it
        else:
            self._count(heapq.heapreplace(self._heap, (*order, _kept(raw))))

    def _count(self, entry: tuple[float, _Later, dict[str, Any]]) -> None:
        idle, _, raw = entry
        state = normalize_state(raw.get("execution_state"))
        self._over += 1
        self._states[state] = self._states.get(state, 0) + 1
        if is_idle(idle if idle >= 0 else None, state, self.threshold):
            self._idle += 1

    def kept(self) -> list[dict[str, Any]]:
        return [raw for _, _, raw in self._heap]

    def add_session(self, raw: Any) -> None:
        """One item of ``/api/sessions`` (after every kernel): kept for a kept kernel, else its
        type counted."""
        kernel = raw.get("kernel") if isinstance(raw, dict) else None
        kid = kernel.get("id") if isinstance(kernel, dict) else None
        if not isinstance(kid, str):
            return
        if kid in self._kept_ids():  # what the join reads of it, no more (the kernel's whole model is in it)
            notebook = raw.get("notebook")
            self.sessions.append({"id": raw.get("id"), "path": raw.get("path"), "name": raw.get("name"),
                                  "type": raw.get("type"), "kernel": {"id": kid},
                                  "notebook": {"path": notebook.get("path")} if isinstance(notebook, dict) else None})
        else:
            kind = str(raw.get("type") or "notebook")[:40]
            if kind in self._types or len(self._types) < 20:  # a liar's million types are not kept
                self._types[kind] = self._types.get(kind, 0) + 1

    def _kept_ids(self) -> set[str]:
        if self._ids is None:
            self._ids = {str(k) for _, k, _ in self._heap}
        return self._ids

    def over(self) -> Optional[OverCap]:
        """What was counted and dropped; None when nothing was (the server is under the cap)."""
        if not self._over:
            return None
        return OverCap(len(self._heap), self._over, dict(self._states), dict(self._types), self._idle)
