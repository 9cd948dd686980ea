"""What removing something frees, in one form everywhere: ``1.2G memory, 4.0G GPU``.

A kill or cull plan's lines, its outcomes, the TUI's confirmation and notice, and the fleet
screen's count of marked rows (``short``: ``1.2G mem 4.0G GPU``, for a narrow bar) all say it
through ``frees``; an amount nobody measured (None or 0) is left out, and nothing measured
is an empty string.
"""

from __future__ import annotations

from typing import Iterable, Optional, Protocol

from nbtui.core.units import human_bytes


class Holds(Protocol):
    """Anything that holds memory: a kill plan's step, a hub server's step, a row of the table."""

    @property
    def memory_bytes(self) -> Optional[int]: ...

    @property
    def gpu_memory_bytes(self) -> Optional[int]: ...


def frees(memory_bytes: Optional[int], gpu_memory_bytes: Optional[int], *, short: bool = False) -> str:
    """``1.2G memory, 4.0G GPU`` (``short``: ``1.2G mem 4.0G GPU``), where measured; "" when nothing is."""
    mem = f"{human_bytes(memory_bytes)} {'mem' if short else 'memory'}" if memory_bytes else ""
    gpu = f"{human_bytes(gpu_memory_bytes)} GPU" if gpu_memory_bytes else ""
    return (" " if short else ", ").join(part for part in (mem, gpu) if part)


def frees_all(items: Iterable[Holds], *, short: bool = False) -> str:
    """What removing every one of ``items`` frees, summed where measured."""
    memory = gpu = 0
    for item in items:
        memory += item.memory_bytes or 0
        gpu += item.gpu_memory_bytes or 0
    return frees(memory, gpu, short=short)
