"""When each hub user's server was last read through the hub's proxy, by any nbtui.

A read through the proxy marks the server active (its hub ``last_activity``), so nbtui reads
a proxied server at most every ``proxy_interval``. Within one running nbtui the fleet keeps
that itself; across processes (each one-shot ``ls``, ``cull``, a cron job) this small file
does: ``STATE_DIR/proxy-reads.json``, ``{"reads": {PROXY_URL: WALL_TIME}}``.

Written like every nbtui state file (nbtui.safefile): the folder a real one of this user's,
the file read never through a symlink, replaced atomically by a 0600 temporary file of its
own (a link planted at its name is replaced, never followed). Entries older than a day are
dropped. The file is a courtesy: one that cannot be read or written costs an extra read
through the proxy, never a failure.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

FILE = "proxy-reads.json"
KEEP = 86400.0  # an entry older than this is dropped
MAX_BYTES = 1 << 20


def path() -> Path:
    from nbtui.config import state_dir

    return state_dir() / FILE


def _load(p: Path) -> dict[str, float]:
    from nbtui.safefile import UnsafeFile, read_text

    try:
        data = json.loads(read_text(p, MAX_BYTES, allow_root=False) or "{}")
    except (OSError, ValueError, UnsafeFile):
        return {}
    reads = data.get("reads") if isinstance(data, dict) else None
    if not isinstance(reads, dict):
        return {}
    return {k: float(v) for k, v in reads.items()
            if isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)}


def last_read(url: str, *, where: Optional[Path] = None) -> Optional[float]:
    """Wall time (``time.time()``) of the last read of ``url`` through the proxy, if known."""
    return _load(where or path()).get(url)


def record(urls: list[str], *, at: Optional[float] = None, where: Optional[Path] = None) -> None:
    """Note reads of ``urls`` through the proxy now (best effort)."""
    from nbtui.safefile import UnsafeFile, ensure_dir, replace_file

    if not urls:
        return
    p = where or path()
    now = time.time() if at is None else at
    try:
        ensure_dir(p.parent)
        reads = {k: v for k, v in _load(p).items() if now - v < KEEP}
        reads.update({u: now for u in urls})
        replace_file(p, json.dumps({"reads": reads}))
    except (OSError, UnsafeFile):
        pass
