"""What each cell of the kernel table says, and how rows filter and sort.

Pure functions of the model (no Textual), so the table can diff plain strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

from nbtui.model import Kernel
from nbtui.text import visible
from nbtui.units import human_bytes, human_duration, human_percent, middle_truncate

DASH = "—"
MARK = "●"
ORPHAN = "!"


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    width: int  # 0: the notebook column, which takes what is left
    right: bool = False
    min_screen: int = 0  # shown only when the screen is at least this wide
    sort: Optional[Callable[[Kernel], Any]] = None


def _usage(attr: str) -> Callable[[Kernel], Any]:
    return lambda k: getattr(k.usage, attr) if k.usage is not None else None


COLUMNS: tuple[Column, ...] = (
    Column("flags", " ", 2),
    Column("server", "SERVER", 10, sort=lambda k: k.server.lower()),
    Column("kernel", "KERNEL", 8, sort=lambda k: k.kernel_id),
    Column("notebook", "NOTEBOOK", 0, sort=lambda k: k.session.path.lower() if k.session else None),
    Column("spec", "SPEC", 8, min_screen=110, sort=lambda k: k.kernel_name.lower()),
    Column("state", "STATE", 8, sort=lambda k: k.state),
    Column("conn", "C", 2, right=True, min_screen=100, sort=lambda k: k.connections),
    Column("idle", "IDLE", 6, right=True, sort=lambda k: k.idle_seconds),
    Column("cpu", "CPU", 4, right=True, sort=_usage("cpu_percent")),
    Column("mem", "MEM", 6, right=True, sort=_usage("memory_bytes")),
    Column("gpu", "GPU", 6, right=True, sort=_usage("gpu_memory_bytes")),
    Column("gpu%", "GPU%", 4, right=True, min_screen=120, sort=_usage("gpu_percent")),
)
BY_KEY = {c.key: c for c in COLUMNS}
# `s` cycles through these, in this order.
SORT_CYCLE = ("idle", "gpu", "mem", "cpu", "server", "notebook", "state", "kernel")


def visible_columns(screen_width: int) -> list[Column]:
    return [c for c in COLUMNS if screen_width >= c.min_screen]


def notebook_width(columns: list[Column], screen_width: int, detail_width: int = 0) -> int:
    """What is left for the notebook column (one space of gap per column; 2 for the scrollbar)."""
    used = sum(c.width + 1 for c in columns if c.width) + 1 + 2 + detail_width
    return max(12, min(60, screen_width - used))


def cells(k: Kernel, columns: list[Column], nb_width: int, marked: bool) -> tuple[str, ...]:
    """The text of each visible cell, in column order."""
    u = k.usage
    out = []
    for c in columns:
        key = c.key
        if key == "flags":
            v = (MARK if marked else " ") + (ORPHAN if k.orphan_reasons else " ")
        elif key == "server":
            v = middle_truncate(visible(k.server), c.width)
        elif key == "kernel":
            v = k.kernel_id[:8]
        elif key == "notebook":
            v = path_cell(visible(k.session.path), nb_width) if k.session else "(no session)"
        elif key == "spec":
            v = middle_truncate(visible(k.kernel_name), c.width)
        elif key == "state":
            v = k.state
        elif key == "conn":
            v = DASH if k.connections is None else str(k.connections)
        elif key == "idle":
            v = human_duration(k.idle_seconds)
        elif key == "cpu":
            v = human_percent(u.cpu_percent if u else None)
        elif key == "mem":
            v = human_bytes(u.memory_bytes if u else None)
        elif key == "gpu":
            v = human_bytes(u.gpu_memory_bytes if u else None)
        elif key == "gpu%":
            v = human_percent(u.gpu_percent if u else None)
        else:  # pragma: no cover
            v = DASH
        out.append(v)
    return tuple(out)


Layout = tuple  # (column keys, notebook width): what a row's cells depend on besides the kernel


def layout_of(columns: list[Column], nb_width: int) -> Layout:
    return (tuple(c.key for c in columns), nb_width)


class CellCache:
    """Every kernel's cells (unmarked) for one layout, recomputed only for kernels whose
    state, usage, session or orphan reasons changed; the idle cell is re-formatted each time.

    Pure Python: the snapshot runner fills one on its own thread, the table keeps another.
    """

    def __init__(self) -> None:
        self.layout: Optional[Layout] = None
        self._sig: dict[str, tuple] = {}

    def rows(self, kernels, columns: list[Column], nb_width: int) -> tuple[Layout, dict[str, tuple[str, ...]]]:
        layout = layout_of(columns, nb_width)
        if layout != self.layout:
            self._sig.clear()
            self.layout = layout
        idle_at = next((i for i, c in enumerate(columns) if c.key == "idle"), None)
        out: dict[str, tuple[str, ...]] = {}
        sigs = self._sig
        for k in kernels:
            key = k.key
            sig = (k.state, k.connections, k.kernel_name, k.session, k.usage, k.orphan_reasons)
            cached = sigs.get(key)
            if cached is not None and cached[0] == sig:
                new = cached[1]
                if idle_at is not None:
                    idle = human_duration(k.idle_seconds)
                    if new[idle_at] != idle:
                        new = new[:idle_at] + (idle,) + new[idle_at + 1:]
            else:
                new = cells(k, columns, nb_width, False)
            sigs[key] = (sig, new)
            out[key] = new
        if len(sigs) > len(out):
            for key in [key for key in sigs if key not in out]:
                del sigs[key]
        return layout, out


def with_mark(row: tuple[str, ...], columns: list[Column]) -> tuple[str, ...]:
    """An unmarked row's cells with the mark shown."""
    if columns and columns[0].key == "flags":
        return (MARK + row[0][1:],) + row[1:]
    return row


def path_cell(path: str, width: int) -> str:
    """A path cut to ``width``, keeping the file name whole where it fits."""
    if len(path) <= width:
        return path
    base = path.rsplit("/", 1)[-1]
    if len(base) + 2 < width:
        return path[: width - len(base) - 2] + "…/" + base
    if len(base) < width:
        return "…" + base
    return middle_truncate(base, width)


def matches(k: Kernel, text: str) -> bool:
    """Every word of ``text`` occurs in the server, id, path, spec or state (any case)."""
    words = text.lower().split()
    if not words:
        return True
    hay = " ".join((k.server, k.kernel_id, k.session.path if k.session else "(no session)",
                    k.kernel_name, k.state)).lower()
    return all(w in hay for w in words)


def order(kernels: list[Kernel], sort_key: Optional[str], reverse: bool) -> list[Kernel]:
    """Sorted by a column (unknown values last either way); None keeps the fleet's order."""
    if sort_key is None:
        return list(kernels)
    get = BY_KEY[sort_key].sort
    assert get is not None
    known = [(get(k), i, k) for i, k in enumerate(kernels)]
    have = [t for t in known if t[0] is not None]
    unknown = [t[2] for t in known if t[0] is None]
    # Numbers default to largest first (the one that matters), text to A-Z.
    numeric = bool(have) and isinstance(have[0][0], (int, float))
    desc = numeric != reverse
    have.sort(key=lambda t: t[0], reverse=desc)
    return [t[2] for t in have] + unknown
