"""The audit log: one JSON line per destructive attempt, in the state folder."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import socket
from pathlib import Path
from typing import Any

from nbtui.config import state_dir
from nbtui.secrets import redact


def audit_path() -> Path:
    return state_dir() / "audit.jsonl"


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return str(os.getuid())


def record(action: str, target: dict[str, Any], result: str, **extra: Any) -> dict[str, Any]:
    """Append one line (time, user, host, action, target, result) and return it."""
    entry = {
        "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "user": _user(),
        "host": socket.gethostname(),
        "action": action,
        "target": target,
        "result": result,
        **extra,
    }
    line = redact(json.dumps(entry, ensure_ascii=False, default=str))
    path = audit_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode("utf-8"))
    finally:
        os.close(fd)
    return entry
