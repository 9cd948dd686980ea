"""When each hub user's server was last read through the hub's proxy, by any nbtui.

A read through the proxy marks the server active (its hub ``last_activity``), so nbtui reads
a proxied server at most every ``proxy_interval``. Within one running nbtui the fleet keeps
that itself; across processes (each one-shot ``ls``, ``cull``, a cron job) this small file
does: ``STATE_DIR/proxy-reads.json``, ``{"reads": {PROXY_URL: {"at": WALL_TIME, "by": WHO}}}``,
``WHO`` the read's own nbtui (``nbtui ls, pid 4242``), so a skipped server says whose read spent
the budget. ``servers test`` records nothing: a test reads what was asked and spends no budget.

Written like every nbtui state file (nbtui.files.safefile): the folder a real one of this user's,
the file read never through a symlink, replaced atomically by a 0600 temporary file of its
own (a link planted at its name is replaced, never followed). Entries older than a day are
dropped. The file is a courtesy: one that cannot be read or written costs an extra read
through the proxy, never a failure.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import NamedTuple, Optional

FILE = "proxy-reads.json"
KEEP = 86400.0  # an entry older than this is dropped
MAX_BYTES = 1 << 20


def path() -> Path:
    from nbtui.files.config import state_dir
    return state_dir() / FILE


class Read(NamedTuple):
    at: float  # wall time (``time.time()``)
    by: Optional[str]  # which nbtui read it (``nbtui ls, pid 4242``), where known


def _load(p: Path) -> dict[str, Read]:
    from nbtui.files.safefile import UnsafeFile, read_text
    try:
        data = json.loads(read_text(p, MAX_BYTES, allow_root=False) or "{}")
    except (OSError, ValueError, UnsafeFile):
        return {}
    reads = data.get("reads") if isinstance(data, dict) else None
    if not isinstance(reads, dict):
        return {}
    out = {}
    for url, v in reads.items():
        at, by = (v.get("at"), v.get("by")) if isinstance(v, dict) else (v, None)  # a plain time: the old file
        if isinstance(url, str) and isinstance(at, (int, float)) and not isinstance(at, bool):
            out[url] = Read(float(at), by if isinstance(by, str) else None)
    return out


def last_read(url: str, *, where: Optional[Path] = None) -> Optional[Read]:
    """The last read of ``url`` through the proxy by any nbtui of this user, if known."""
    return _load(where or path()).get(url)


def record(urls: list[str], *, by: Optional[str] = None, at: Optional[float] = None,
           where: Optional[Path] = None) -> None:
    """Note reads of ``urls`` through the proxy now, by ``by`` (best effort)."""
    from nbtui.files.safefile import UnsafeFile, ensure_dir, replace_file
    if not urls:
        return
    p = where or path()
    now = time.time() if at is None else at
    try:
        ensure_dir(p.parent)
        reads = {k: v for k, v in _load(p).items() if now - v.at < KEEP}
        reads.update({u: Read(now, by) for u in urls})
        replace_file(p, json.dumps({"reads": {u: {"at": r.at, "by": r.by} for u, r in reads.items()}}))
    except (OSError, UnsafeFile):
        pass
