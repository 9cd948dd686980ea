"""A server's ``/api/kernels`` and ``/api/sessions`` (and ``/api/terminals``) made into the
model's kernels and terminals.

Read again and again (the TUI, the exporter), most kernels of a fleet say what they said last
time. Each kernel carries a digest of what its server said of it (``read_digest``); a later
read that hears the same gets the fleet's last kernel object again, not a new one, and so
keeps everything built from it downstream (its verdicts, its row, its cells on screen, its
metric lines), and holds nothing more than the last snapshot for it. A kernel's idle time is no field (``model._Idle``): it is
measured when asked, so an unchanged kernel stays unchanged as time passes.
"""

from __future__ import annotations

from typing import Any, Container, Iterable, Mapping, Optional

from nbtui.core import model
from nbtui.core.units import parse_time

_SHARED: dict[str, str] = {}
_new = object.__new__
SHARED_MAX = 256  # distinct kernel names and session types kept shared; a liar's millionth is its own


def _shared(text: str) -> str:
    """One string object for a value many kernels repeat ("python3", "notebook"), so 50,000
    kernels hold one of it, not 50,000 (each parse makes its own). Bounded, unlike
    ``sys.intern``: a server that names every kernel differently shares nothing more."""
    if len(text) > 64:
        return text
    known = _SHARED.get(text)
    if known is not None:
        return known
    if len(_SHARED) < SHARED_MAX:
        _SHARED[text] = text
    return text


# A session as the join reads it: its (id, path, name, type) as the server said them (JSON
# values of any type; the path from "path", else "notebook"."path", else "").
SaidSession = tuple[Any, Any, Any, Any]


def sessions_of(raw_sessions: Iterable[dict], kernel_ids: Optional[Container[str]] = None) -> dict[str, SaidSession]:
    """Kernel id -> what ``/api/sessions`` says of that kernel's first session: all the join
    reads of it, so a fleet that reads again keeps this (not the answer, which repeats every
    kernel's model) to join kernels read without their sessions. With ``kernel_ids``, only
    the sessions of those kernels (a kept answer holds nothing of kernels never listed)."""
    out: dict[str, SaidSession] = {}
    for raw in raw_sessions:
        kernel = raw.get("kernel")
        kid = kernel.get("id") if isinstance(kernel, dict) else None
        if isinstance(kid, str) and kid not in out and (kernel_ids is None or kid in kernel_ids):
            notebook = raw.get("notebook")
            path = raw.get("path") or (notebook.get("path") if isinstance(notebook, dict) else None) or ""
            out[kid] = (raw.get("id", ""), path, raw.get("name"), raw.get("type"))
    return out


def _session(s: SaidSession) -> model.Session:
    sid, path, name, kind = s
    path = str(path)
    # (id, path, name, type) set as join_kernels sets a kernel's, not through the frozen __init__
    new = _new(model.Session)
    values = new.__dict__
    values["id"] = str(sid)
    values["path"] = path
    values["name"] = str(name or path.rsplit("/", 1)[-1])
    values["type"] = _shared(str(kind or "notebook"))  # one "notebook" for every session
    return new


def join_kernels(server: str, raw_kernels: list[dict], sessions: Mapping[str, SaidSession],
                 last: Optional[Mapping[str, model.Kernel]] = None) -> list[model.Kernel]:
    """Kernels of one server joined with the sessions that reference them (``sessions_of``:
    a kernel's first session). With ``last`` (the fleet's kernels of its last read, by key), a
    kernel whose every value read here is what that read read (its ``read_digest``) is that
    very kernel object, its verdicts as they were then (the fleet judges it again)."""
    out = []
    # Each kernel's values are a copy of those of one made here, the read's own set over them
    # in place: what ``model.evolve`` does, without its keyword arguments and checks (50,000
    # kernels: 0.3 s with parsing their answers, not 0.38), and nothing like the frozen
    # ``__init__``, which sets every field through ``object.__setattr__``. The same fields in
    # the same order: every kernel's values share their keys (a split dict, 192 bytes).
    made = model.Kernel(server=server, kernel_id="", kernel_name="?", state="unknown", connections=None,
                        last_activity=None).__dict__
    for k in raw_kernels:
        kid = k["id"]
        s = sessions.get(kid)
        conns = k.get("connections")
        if not isinstance(conns, int) or isinstance(conns, bool):
            conns = None
        name = k.get("name")
        digest = -1
        if last is not None:
            # Python's hash, salted per process: no server can aim a collision at it. The
            # values keep their JSON types (1.0 == 1: a number for a name could read as the
            # last read's spelling of it; a count is normalized first).
            try:
                digest = hash((name, k.get("last_activity"), k.get("execution_state"), conns, s))
            except TypeError:  # a list or an object where a string belongs: built anew each read
                digest = -1
            before = last.get(model.kernel_key(server, kid)) if digest != -1 else None
            if before is not None and before.read_digest == digest:
                out.append(before)
                continue
        when = parse_time(k.get("last_activity"))
        new = _new(model.Kernel)
        values = new.__dict__
        values.update(made)
        values["kernel_id"] = kid
        values["kernel_name"] = _shared(str(name or "?"))  # one "python3" for every kernel
        values["state"] = model.normalize_state(k.get("execution_state"))
        values["connections"] = conns
        values["last_activity"] = when
        values["seen_at"] = model.posix_time(when)  # (_Idle.__post_init__'s)
        if s is not None:
            values["session"] = _session(s)
        values["read_digest"] = digest
        out.append(new)
    return out


def terminals_of(server: str, raw: list[dict]) -> list[model.Terminal]:
    """Terminal rows of one server from ``GET /api/terminals``."""
    return [model.Terminal(server=server, name=str(t["name"])[:200], last_activity=parse_time(t.get("last_activity")))
            for t in raw]
