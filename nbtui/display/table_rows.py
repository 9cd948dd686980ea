"""Every holder of memory as one kind of row: kernels, Jupyter terminals, leftover processes.

Pure code over the model (no Textual): the fleet screen and `nbtui ls` build their tables
from these rows, filter and sort them the same way, and format cells with
``nbtui.display.columns``. Rows keep outside strings raw; every cell's text goes through
``nbtui.core.text.visible`` (the TUI then shows it as plain ``Text``, never markup).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from nbtui.display.columns import Layout, cut_name, cut_path
from nbtui.core.kinds import KERNEL, LEFTOVER, PROCESS, TERMINAL, Kind
from nbtui.core.model import Kernel, Process, Snapshot, Terminal
from nbtui.core.states import never_used, state_text
from nbtui.core.text import visible
from nbtui.core.units import human_bytes, human_duration, human_percent, middle_truncate, short_duration
# What a row is (nbtui.core.kinds): a kernel, a terminal, a leftover (a local Jupyter process
# with an orphan reason: a crashed server's child) or a process (a local Jupyter process
# outside the listed kernels, of a server not read).

DASH = "—"
MARK = "●"
ORPHAN = "!"

Item = Union[Kernel, Terminal, Process]


# Not frozen: a frozen __init__ sets each field through object.__setattr__, 8x the cost, and a
# refresh builds one row per kernel (5,000 rows: 9 ms against 1). Never changed once built.
# Compared and hashed by identity (eq=False): a row is the very row it was or another
# (RowMemo), and a set of 5,000 rows is made in C (tui.rows.CellCache) without a field read.
@dataclass(slots=True, eq=False)
class Row:
    kind: Kind  # kernel | terminal | leftover | process
    key: str  # identity across refreshes: `server:kernel_id`, `terminal:server/name`, `pid:N`
    server: str  # the server's name; for a process, the live server it came from, or ""
    ident: str  # what the KERNEL column says: `80442938`, `term:1`, a process's PID `4711`
    notebook: str  # the notebook path, `(no session)`, `(terminal)`, a leftover's command
    state: str
    connections: Optional[int]
    spec: str
    user: Optional[str]
    pid: Optional[int]
    cpu: Optional[float]
    mem: Optional[int]
    gpu: Optional[int]
    gpu_percent: Optional[float]
    reasons: tuple[str, ...]
    item: Any  # the Kernel, Terminal or Process

    @property
    def kernel(self) -> Optional[Kernel]:
        return self.item if self.kind == KERNEL else None

    @property
    def idle_seconds(self) -> Optional[float]:
        """A kernel's or terminal's idle time as of now (a process has none)."""
        return self.item.idle_seconds if self.kind in (KERNEL, TERMINAL) else None

    @property
    def memory_bytes(self) -> Optional[int]:
        return self.mem

    @property
    def gpu_memory_bytes(self) -> Optional[int]:
        return self.gpu


def kernel_row(k: Kernel) -> Row:
    u = k.usage
    return Row(KERNEL, k.key, k.server, k.kernel_id[:8],
               k.session.path if k.session else "(no session)", k.state, k.connections,
               k.kernel_name, k.user, u.pid if u else None, u.cpu_percent if u else None,
               u.memory_bytes if u else None, u.gpu_memory_bytes if u else None,
               u.gpu_percent if u else None, tuple(k.orphan_reasons), k)


def terminal_row(t: Terminal) -> Row:
    u = t.usage
    return Row(TERMINAL, t.key, t.server, f"term:{t.name}", f"(terminal {t.name})", "open", None, "terminal", t.user,
               t.pid if t.pid is not None else (u.pid if u else None),
               u.cpu_percent if u else None, u.memory_bytes if u else None,
               u.gpu_memory_bytes if u else None, u.gpu_percent if u else None, tuple(t.orphan_reasons), t)


def process_row(p: Process, server: str = "") -> Row:
    kind: Kind = LEFTOVER if p.orphan_reasons else PROCESS
    gpu_pct = None
    known = [g.sm_percent for g in p.gpus if g.sm_percent is not None]
    if known:
        gpu_pct = sum(known)
    # A hub user's leftover: named by its hub server and user (the process owner may be the hub's).
    return Row(kind, f"pid:{p.pid}", server or p.hub_server or "", str(p.pid), p.notebook or p.cmdline or "(process)",
               kind, None, "process", p.hub_user or p.user, p.pid, p.cpu_percent, p.memory_bytes, p.gpu_memory_bytes,
               gpu_pct, tuple(p.orphan_reasons), p)


class RowMemo:
    """The rows ``rows_of`` built last, by key: a kernel, terminal or process that is the very
    object it was (nbtui.jupyter.join keeps unchanged kernels) keeps its row, so a refresh
    builds rows only for what changed, and the table can tell unchanged rows by identity."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: dict[str, Row] = {}


def rows_of(snap: Optional[Snapshot], others: bool = False, memo: Optional[RowMemo] = None) -> list[Row]:
    """Kernels (the fleet's order), then terminals, then leftover processes; with
    ``others`` also the Jupyter processes outside every listed kernel that are no orphan
    (kernels of servers not read: on a shared host, every other user's). With ``memo`` (the
    rows of the last call) an unchanged item keeps its row object."""
    if snap is None:
        return []
    by_pid = {s.pid: s.name for s in snap.servers if s.pid is not None}
    last = memo.last if memo is not None else {}
    out = []
    for k in snap.kernels:
        r = last.get(k.key)
        out.append(r if r is not None and r.item is k else kernel_row(k))
    for t in getattr(snap, "terminals", ()):
        r = last.get(t.key)
        out.append(r if r is not None and r.item is t else terminal_row(t))
    out += [process_row(p, by_pid.get(p.server_pid, "") if p.server_pid is not None else "")
            for p in snap.processes if others or p.orphan_reasons]
    if memo is not None:
        memo.last = {r.key: r for r in out}
    return out


def _server_cell(r: Row) -> str:
    if r.server:
        return r.server
    if r.kind in (LEFTOVER, PROCESS):
        return "(gone)" if "server-gone" in r.reasons else DASH
    return DASH


def text(r: Row, key: str) -> str:
    """A cell's whole text (outside strings made visible), before it is cut to a width."""
    return visible(_raw(r, key))


def _raw(r: Row, key: str) -> str:
    if key == "flags":
        return ORPHAN if r.reasons else ""
    if key == "kind":
        return r.kind
    if key == "server":
        return _server_cell(r)
    if key == "kernel":
        return r.ident
    if key == "notebook":
        return r.notebook
    if key == "user":
        return r.user or DASH
    if key == "pid":
        return DASH if r.pid is None else str(r.pid)
    if key == "spec":
        return r.spec
    if key == "state":
        return state_text(r.item) if r.kind == KERNEL else r.state  # `starting · never used`
    if key == "conn":
        return DASH if r.connections is None else str(r.connections)
    if key == "idle":
        return idle_text(r)
    if key == "cpu":
        return human_percent(r.cpu)
    if key == "mem":
        return human_bytes(r.mem)
    if key == "gpu":
        return human_bytes(r.gpu)
    if key == "gpu%":
        return human_percent(r.gpu_percent)
    if key == "reason":
        return ", ".join(r.reasons) if r.reasons else ""
    return DASH


BUSY = "busy"
UNUSED = "unused"


def idle_text(r: Row) -> str:
    """The IDLE cell: how long since the kernel's last activity. A busy kernel is not idle: it
    reads `busy 3m` (busy since its last message); one nobody ever used (``states.never_used``:
    `starting` for an hour) reads `unused`, not an idle time that grows."""
    k = r.kernel
    if k is not None and k.state == "busy":
        return f"{BUSY} {short_duration(r.idle_seconds)}" if r.idle_seconds is not None else BUSY
    if k is not None and never_used(k):
        return UNUSED
    return human_duration(r.idle_seconds)


def idle_text_lasts(r: Row) -> float:
    """Seconds the IDLE cell's text stays as it is now, at least (it shows whole seconds under
    a minute, whole minutes under a day, whole hours beyond; `unused` and a state's change
    at a minute come at such a step too); infinite where the idle time is unknown."""
    s = r.idle_seconds
    if s is None:
        return float("inf")
    step = 1.0 if s < 60 else 60.0 if s < 86400 else 3600.0
    return step - s % step


def activity_text(k: Kernel) -> str:
    """The same fact in words, for the details: `busy 3m`, `never used`, `idle 3m`."""
    if k.state == "busy":
        return f"{BUSY} {human_duration(k.idle_seconds)}" if k.idle_seconds is not None else BUSY
    if never_used(k):
        return "never used"
    return f"idle {human_duration(k.idle_seconds)}"


RIGHT = {"pid", "conn", "idle", "cpu", "mem", "gpu", "gpu%"}  # right-aligned (padded here)


def cell(r: Row, key: str, width: int, marked: bool = False) -> str:
    """A cell cut to ``width``: paths and hub names keep their last part whole; numbers
    are right-aligned in the width."""
    if key == "flags":
        return (MARK if marked else " ") + (ORPHAN if r.reasons else " ")
    t = text(r, key)
    if key == "notebook":
        return cut_path(t, width) if r.kind in (KERNEL, TERMINAL) or "/" in t.split(" ", 1)[0] else middle_truncate(t, width)
    if key == "server":
        return cut_name(t, width)
    if key == "idle" and len(t) > width and t.startswith(BUSY + " "):
        t = t.replace(" ", "", 1)  # `busy12h` in the column's 7 cells
    if key == "state" and len(t) > width and r.kind == KERNEL:
        t = state_text(r.item, short=True)  # `never used` in a narrow column
    if key == "reason" and len(t) > width and len(r.reasons) > 1:
        short = f"{visible(r.reasons[0])} +{len(r.reasons) - 1}"
        return short if len(short) <= width else middle_truncate(short, width)
    if key in RIGHT:
        return middle_truncate(t, width).rjust(width)
    return middle_truncate(t, width)


def cells(r: Row, layout: Layout, marked: bool = False) -> tuple[str, ...]:
    return tuple(cell(r, c.key, w, marked) for c, w in layout)


# -- filter and sort ----------------------------------------------------------------------

SORTS: dict[str, Callable[[Row], Any]] = {
    "server": lambda r: r.server.lower() or None,
    "kind": lambda r: r.kind,
    "kernel": lambda r: r.ident,
    "notebook": lambda r: r.notebook.lower(),
    "user": lambda r: (r.user or "").lower() or None,
    "pid": lambda r: r.pid,
    "spec": lambda r: r.spec.lower(),
    "state": lambda r: r.state,
    "conn": lambda r: r.connections,
    "idle": lambda r: r.idle_seconds,
    "cpu": lambda r: r.cpu,
    "mem": lambda r: r.mem,
    "gpu": lambda r: r.gpu,
    "gpu%": lambda r: r.gpu_percent,
    "reason": lambda r: ", ".join(r.reasons) or None,
}
NUMERIC = {"pid", "conn", "idle", "cpu", "mem", "gpu", "gpu%"}


def matches(r: Row, words_text: str) -> bool:
    """Every word occurs in the server, id, path, spec, state, kind, user or reasons (any case)."""
    words = words_text.lower().split()
    if not words:
        return True
    hay = " ".join((r.server, r.key, r.ident, r.notebook, r.spec, r.state, r.kind, r.user or "",
                    " ".join(r.reasons))).lower()
    return all(w in hay for w in words)


def order(rows: list[Row], sort_key: Optional[str], reverse: bool) -> list[Row]:
    """Sorted by a column (unknown values last either way); None keeps the given order.
    Numbers default to largest first (the one that matters), text to A-Z."""
    if sort_key is None:
        return list(rows)
    get = SORTS[sort_key]
    known = [(get(r), i, r) for i, r in enumerate(rows)]
    have = [t for t in known if t[0] is not None]
    unknown = [t[2] for t in known if t[0] is None]
    desc = (sort_key in NUMERIC) != reverse
    have.sort(key=lambda t: t[0], reverse=desc)
    return [t[2] for t in have] + unknown
