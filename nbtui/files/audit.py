"""The audit log: one JSON line per destructive attempt, in the state folder."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import socket
from pathlib import Path
from typing import Any

from nbtui.files.config import state_dir
from nbtui.core.errors import NbtuiError
from nbtui.files.safefile import UnsafeFile, append_line
from nbtui.files.secrets import redact
from nbtui.core.text import json_text


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
    # json_text: a lone surrogate (a hostile server's "\ud800", a process's undecodable bytes)
    # as its JSON escape, so every line can be written as UTF-8.
    line = redact(json_text(json.dumps(entry, ensure_ascii=False, default=str)))
    try:
        append_line(audit_path(), line)  # never through a symlink; a regular file of ours, 0600
    except UnsafeFile as e:
        raise OSError(e.problem if e.path == str(audit_path()) else str(e)) from None
    return entry


class AuditError(NbtuiError):
    """The intent line could not be written: the action does not start (exit 1)."""


INTENT = "intent"


def intent(action: str, target: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """Record that ``action`` is about to happen, BEFORE acting; raise AuditError (one line
    naming the log) when it cannot be written, so that nothing unaudited is done."""
    try:
        return record(action, target, INTENT, **extra)
    except OSError as e:
        raise AuditError(f"not started: cannot write the audit log {audit_path()}: "
                         f"{e.strerror or e}") from None
