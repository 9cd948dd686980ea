"""Which columns a table of holders shows at a given width, and how wide each is.

One rule for the fleet screen's table and `nbtui ls`'s human table (pure code, no
Textual): the columns every row keeps at 80 cells come first (SERVER, KERNEL, NOTEBOOK,
STATE, IDLE, MEM, GPU), wider screens add the others in a fixed order (USER, PID, GPU%,
CPU, REASON, KIND, C, SPEC), and the flexible columns (notebook, server, reason) grow
only up to a cap, so no column eats the rest of the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

from nbtui.core.units import middle_truncate


@dataclass(frozen=True)
class Column:
    key: str
    title: str
    width: int  # fixed width; for a flexible column its smallest width
    right: bool = False
    priority: int = 0  # 0: always shown; otherwise added in this order as the width allows
    grow: int = 0  # > 0: a flexible column that may grow up to this many cells
    comfort: int = 0  # a flexible column's width before any optional column is added


COLUMNS: tuple[Column, ...] = (
    Column("flags", " ", 2),
    Column("kind", "KIND", 8, priority=6),
    Column("server", "SERVER", 8, grow=24, comfort=16),
    Column("kernel", "KERNEL", 8),
    Column("notebook", "NOTEBOOK", 12, grow=60, comfort=28),
    Column("user", "USER", 8, priority=1),
    Column("pid", "PID", 7, right=True, priority=2),
    Column("spec", "SPEC", 8, priority=8),
    Column("state", "STATE", 8, grow=21, comfort=21),  # `starting · never used`; `never used` when cut
    Column("conn", "C", 2, right=True, priority=7),
    Column("idle", "IDLE", 7, right=True),  # `busy 3m`, `busy12h`: a busy kernel is not idle (table_rows.idle_text)
    Column("cpu", "CPU", 4, right=True, priority=4),
    Column("mem", "MEM", 6, right=True),
    Column("gpu", "GPU", 6, right=True),
    Column("gpu%", "GPU%", 4, right=True, priority=3),
    Column("reason", "REASON", 12, priority=5, grow=36, comfort=18),
)
BY_KEY = {c.key: c for c in COLUMNS}
# What the notebook column needs before anything is cut from the server column:
# `…/resnet-finetune.ipynb` whole.
NOTEBOOK_AT_80 = 23
STATE_SHORT = 10  # `never used`: the state of a kernel nobody used, in a narrow column

Layout = tuple  # ((Column, width), ...) in display order


def fit(width: int, natural: Optional[Mapping[str, int]] = None, *, gap: int = 1, reserve: int = 0,
        columns: tuple[Column, ...] = COLUMNS, drop: tuple[str, ...] = ()) -> Layout:
    """The columns shown in ``width`` cells and each one's width.

    ``natural`` is the widest cell each column would like (``ls`` knows its rows; the TUI
    passes what it knows, e.g. the longest server name); a flexible column never grows past
    it. ``gap`` cells separate columns; ``reserve`` is kept free (a scrollbar).
    """
    natural = dict(natural or {})

    def want(c: Column, cap: int) -> int:
        n = natural.get(c.key)
        top = cap if n is None else min(cap, max(len(c.title), n))
        return max(c.width, top)

    avail = width - reserve
    shown = [c for c in columns if c.priority == 0 and c.key not in drop]
    widths = {c.key: (want(c, c.comfort) if c.grow else c.width) for c in shown}

    def used() -> int:
        return sum(w + gap for w in widths.values())

    # Too wide even with the required columns: cut the notebook to its 80-column width,
    # then the server name, then the notebook again, down to their smallest widths.
    if used() > avail and "notebook" in widths:
        widths["notebook"] = max(BY_KEY["notebook"].width, min(widths["notebook"], want(BY_KEY["notebook"], NOTEBOOK_AT_80)))
    floor = {"state": want(BY_KEY["state"], STATE_SHORT)}  # `never used` stays whole
    for key in ("server", "state", "notebook"):
        if used() > avail and key in widths:
            widths[key] = max(floor.get(key, BY_KEY[key].width), widths[key] - (used() - avail))

    # Optional columns, in their order, while they fit beside the flexible columns at
    # their comfortable widths (never at the cost of the notebook or server column).
    comfy = {c.key: max(widths[c.key], want(c, c.comfort)) for c in shown if c.grow}
    extra = sum(comfy[k] - widths[k] for k in comfy)
    for c in sorted((c for c in columns if c.priority and c.key not in drop), key=lambda c: c.priority):
        w = want(c, c.comfort) if c.grow else c.width
        if used() + extra + w + gap <= avail:
            shown.append(c)
            widths[c.key] = w

    # What is left widens the flexible columns (notebook first), each up to its cap.
    for key in ("notebook", "server", "state", "reason"):
        if key in widths:
            c = BY_KEY.get(key) or next(c for c in columns if c.key == key)
            room = avail - used()
            if room > 0:
                widths[key] = max(widths[key], min(want(c, c.grow), widths[key] + room))

    order = {c.key: i for i, c in enumerate(columns)}
    shown.sort(key=lambda c: order[c.key])
    return tuple((c, widths[c.key]) for c in shown)


def keys_of(layout: Layout) -> tuple[str, ...]:
    return tuple(c.key for c, _ in layout)


def is_full(layout: Layout, columns: tuple[Column, ...] = COLUMNS) -> bool:
    """Whether the layout keeps every column."""
    return len(layout) == len(columns)


def width_of(layout: Layout, gap: int = 1) -> int:
    return sum(w + gap for _, w in layout)


def cut_path(path: str, width: int) -> str:
    """A path in ``width`` cells: the file name whole, the folders cut first
    (``…/resnet-finetune.ipynb``); only a file name longer than the cell loses its middle."""
    if len(path) <= width:
        return path
    base = path.rsplit("/", 1)[-1]
    if base != path and len(base) + 2 <= width:
        head = width - len(base) - 2
        return path[:head] + "…/" + base
    if len(base) + 1 <= width:
        return "…" + base
    return middle_truncate(base, width)


def cut_name(name: str, width: int) -> str:
    """A server name (``hub/alice/gpu-large``): the last part whole where it fits, as a path."""
    return cut_path(name, width) if "/" in name else middle_truncate(name, width)


def align(text: str, width: int, right: bool) -> str:
    text = middle_truncate(text, width)
    return text.rjust(width) if right else text.ljust(width)
