"""A server's ``/api/kernels`` and ``/api/sessions`` (and ``/api/terminals``) made into the
model's kernels and terminals.

Read again and again (the TUI, the exporter), most kernels of a fleet say what they said last
time. ``Joined`` keeps, per kernel id, what the server said of it (the raw values the join
reads) and the kernel built from them: a kernel whose values are the same is that very
object again, not a new one, and so is everything built from it downstream (its verdicts,
its row, its cells on screen). A kernel's idle time is no field (``model._Idle``): it is
measured when asked, so an unchanged kernel stays unchanged as time passes.
"""

from __future__ import annotations

from typing import Any, Optional

from nbtui.core import model
from nbtui.core.units import parse_time

_SHARED: dict[str, str] = {}
SHARED_MAX = 256  # distinct kernel names and session types kept shared; a liar's millionth is its own


def _shared(text: str) -> str:
    """One string object for a value many kernels repeat ("python3", "notebook"), so 50,000
    kernels hold one of it, not 50,000 (each parse makes its own). Bounded, unlike
    ``sys.intern``: a server that names every kernel differently shares nothing more."""
    if len(text) > 64:
        return text
    if len(_SHARED) < SHARED_MAX:
        return _SHARED.setdefault(text, text)
    return _SHARED.get(text, text)


class Joined:
    """One server's kernels as its last read built them: ``{kernel id: (said, kernel)}``,
    ``said`` the raw values the join read of the kernel and its session. Replaced whole by
    each read, so a kernel the server no longer lists is forgotten at once."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: dict[str, tuple[tuple, model.Kernel]] = {}


def _session(s: dict, path: Any) -> model.Session:
    return model.Session(
        id=str(s.get("id", "")),
        path=str(path),
        name=str(s.get("name") or str(path).rsplit("/", 1)[-1]),
        type=_shared(str(s.get("type") or "notebook")),  # one "notebook" for every session
    )


def join_kernels(server: str, raw_kernels: list[dict], raw_sessions: list[dict],
                 joined: Optional[Joined] = None) -> list[model.Kernel]:
    """Kernels of one server joined with the sessions that reference them (a kernel's first
    session). With ``joined`` (the server's last read), a kernel whose every value read here
    is what the last read read is the last read's kernel object; ``joined`` then holds this
    read's."""
    sessions: dict[str, dict] = {}
    for raw in raw_sessions:
        kid = (raw.get("kernel") or {}).get("id") if isinstance(raw.get("kernel"), dict) else None
        if isinstance(kid, str):
            sessions.setdefault(kid, raw)
    last: dict[str, tuple[tuple, model.Kernel]] = joined.last if joined is not None else {}
    kept: dict[str, tuple[tuple, model.Kernel]] = {}
    out = []
    for k in raw_kernels:
        kid = k["id"]
        s = sessions.get(kid)
        path = None if s is None else (s.get("path") or (s.get("notebook") or {}).get("path") or "")
        conns = k.get("connections")
        if not isinstance(conns, int) or isinstance(conns, bool):
            conns = None
        name = k.get("name")
        # Compared with ==, the values keep their type (1.0 == 1, so a name or id that is a
        # number could read as the last read's spelling of it; a count is normalized first).
        said = (name, k.get("last_activity"), k.get("execution_state"), conns,
                None if s is None else (s.get("id", ""), path, s.get("name"), s.get("type")))
        before = last.get(kid)
        if before is not None and before[0] == said:
            kernel = before[1]
        else:
            kernel = model.Kernel(
                server=server,
                kernel_id=kid,
                kernel_name=_shared(str(name or "?")),  # one "python3" for every kernel
                state=model.normalize_state(said[2]),
                connections=conns,
                last_activity=parse_time(said[1]),
                session=None if s is None else _session(s, path),
            )
        if joined is not None:
            kept[kid] = (said, kernel)
        out.append(kernel)
    if joined is not None:
        joined.last = kept
    return out


def terminals_of(server: str, raw: list[dict]) -> list[model.Terminal]:
    """Terminal rows of one server from ``GET /api/terminals``."""
    return [model.Terminal(server=server, name=str(t["name"])[:200], last_activity=parse_time(t.get("last_activity")))
            for t in raw]
