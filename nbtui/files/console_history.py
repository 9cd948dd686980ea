"""Console input history, one file per kernel spec in the state folder.

Written atomically after each run; a damaged file is ignored (and replaced), never fatal.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Optional

from nbtui.files.safefile import UnsafeFile, ensure_dir, read_text
from nbtui.files.secrets import redact
from nbtui.files.config import state_dir

MAX_ENTRIES = 1000


def history_path(kernel_name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", kernel_name or "unknown")[:64] or "unknown"
    return state_dir() / "history" / f"{safe}.json"


class History:
    """Previous inputs, oldest first; ``back``/``forward`` walk them like a shell."""

    def __init__(self, kernel_name: str, path: Optional[Path] = None):
        self.path = path or history_path(kernel_name)
        self.entries: list[str] = self._load()
        self._pos: Optional[int] = None  # index while walking, None when not walking
        self._draft = ""

    def _load(self) -> list[str]:
        try:
            data = json.loads(read_text(self.path, allow_root=False) or "[]")
        except (OSError, ValueError, UnsafeFile):
            return []
        if not isinstance(data, list):
            return []
        return [e for e in data if isinstance(e, str)][-MAX_ENTRIES:]

    def add(self, code: str) -> None:
        self._pos = None
        if not code.strip():
            return
        if self.entries and self.entries[-1] == code:
            return
        self.entries.append(code)
        del self.entries[:-MAX_ENTRIES]
        self.save()

    def save(self) -> None:
        try:
            ensure_dir(self.path.parent)
            fd, tmp = tempfile.mkstemp(prefix=".history.", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump([redact(e) for e in self.entries], f, ensure_ascii=False)  # never a token on disk
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except (OSError, UnsafeFile):
            pass  # history is a convenience: a read-only state folder must not break the console

    def back(self, current: str) -> Optional[str]:
        """The entry before the one shown (``current`` is kept as the draft)."""
        if not self.entries:
            return None
        if self._pos is None:
            self._draft = current
            self._pos = len(self.entries)
        if self._pos == 0:
            return None
        self._pos -= 1
        return self.entries[self._pos]

    def forward(self) -> Optional[str]:
        """The entry after the one shown; past the newest, the draft."""
        if self._pos is None:
            return None
        self._pos += 1
        if self._pos >= len(self.entries):
            self._pos = None
            return self._draft
        return self.entries[self._pos]

    def search(self, text: str, before: Optional[int] = None) -> Optional[tuple[int, str]]:
        """The newest entry containing ``text`` (older than index ``before``)."""
        end = len(self.entries) if before is None else before
        for i in range(end - 1, -1, -1):
            if text in self.entries[i]:
                return i, self.entries[i]
        return None
