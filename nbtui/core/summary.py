"""What a snapshot counts, for its one-line summaries: ``ls``'s last line and the TUI's
summary bar count with this one function (the one idle rule, ``orphans.idle_kernels``,
at the snapshot's threshold), so the two never tell different numbers."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Iterable, Optional

from nbtui.core.model import Kernel, Snapshot
from nbtui.core.orphans import idle_kernels


@dataclass(frozen=True)
class Counts:
    servers: int  # servers (and hubs) the snapshot lists
    servers_read: int  # of them, those that answered
    kernels: int
    busy: int
    idle: int  # idle past the snapshot's idle threshold
    orphaned: int  # kernels with an orphan reason
    idle_gpu_bytes: Optional[int]  # GPU memory of the idle kernels where measured; None: none measured
    terminals: int
    leftovers: int  # leftover processes with an orphan reason
    leftover_gpu_bytes: int  # GPU memory they hold (0 where none is measured)


_state = operator.attrgetter("state")
_reasons = operator.attrgetter("orphan_reasons")
_no_reason = operator.not_


def count(snap: Snapshot, kernels: Optional[Iterable[Kernel]] = None) -> Counts:
    """The counts of ``snap``; of ``kernels`` (a view's selection of its kernels) for the
    kernel counts when given."""
    ks = list(snap.kernels if kernels is None else kernels)
    idle = idle_kernels(ks, snap.idle_threshold)
    # (each count a C loop over 5,000 kernels at every refresh: no Python step per kernel)
    states = list(map(_state, ks))
    gpu = [k.usage.gpu_memory_bytes for k in idle if k.usage and k.usage.gpu_memory_bytes is not None]
    left = [p for p in snap.processes if p.orphan_reasons]
    return Counts(
        servers=len(snap.servers),
        servers_read=sum(1 for s in snap.servers if s.ok),
        kernels=len(ks),
        busy=states.count("busy"),
        idle=len(idle),
        orphaned=len(ks) - sum(map(_no_reason, map(_reasons, ks))),
        idle_gpu_bytes=sum(gpu) if gpu else None,
        terminals=len(snap.terminals),
        leftovers=len(left),
        leftover_gpu_bytes=sum(p.gpu_memory_bytes or 0 for p in left),
    )
