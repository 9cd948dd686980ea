"""What a hub user's server was found to be, kept across runs for that server's lifetime.

Each read of a server also asks what does not change while it runs: its version, whether it
has terminals, whether it has the nbtui extension. nbtui keeps those answers while it runs
(``nbtui.service.fleet``); for a hub's servers this file keeps them between runs, so a
one-shot ``nbtui ls`` of a hub of 1,000 servers asks each 5 requests, not 7. An entry is for
one server process: the key names the hub, the server's URL and its ``started`` time as the
hub gave it, so a server started again is a new key and is probed again. A server whose read
fails as a whole loses its entry.

Only nbtui's own answers are stored, each checked again on load (a version is a short
string, the rest booleans); a damaged, planted or linked file is ignored and replaced,
never fatal. At most MAX_ENTRIES entries, the oldest dropped.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from nbtui.files.config import state_dir
from nbtui.files.safefile import UnsafeFile, ensure_dir, read_text, replace_file

MAX_ENTRIES = 20_000
MAX_BYTES = 8 * 1024 * 1024
MAX_VERSION = 64


@dataclass(frozen=True)
class Probed:
    version: Optional[str]  # None: not asked (or the server gave none)
    version_asked: bool
    terminals_off: bool
    no_extension: bool


def probe_key(hub: str, url: str, started: object) -> Optional[str]:
    """The key of one server process; None without a ``started`` time (nothing to tell a
    restart by, so nothing is kept)."""
    if started is None:
        return None
    text = json.dumps([hub, url, str(started)])
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]


class ProbeMemory:
    """The file's entries, loaded once, written back by ``save`` when changed."""

    def __init__(self, path: Optional[Path] = None) -> None:
        self.path = path or state_dir() / "probes.json"
        self._entries: Optional[dict[str, dict[str, Any]]] = None
        self._changed = False

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = {}
            try:
                data = json.loads(read_text(self.path, MAX_BYTES, allow_root=False) or "{}")
            except (OSError, ValueError, UnsafeFile):
                data = {}
            servers = data.get("servers") if isinstance(data, dict) else None
            if isinstance(servers, dict):
                for key, v in servers.items():
                    if isinstance(key, str) and len(key) <= 64 and _valid(v):
                        self._entries[key] = v
        return self._entries

    def get(self, key: Optional[str]) -> Optional[Probed]:
        v = self._load().get(key) if key is not None else None
        if v is None:
            return None
        return Probed(version=v["version"], version_asked=v["version_asked"], terminals_off=v["terminals_off"],
                      no_extension=v["no_extension"])

    def put(self, key: Optional[str], probed: Probed) -> None:
        if key is None:
            return
        entries = self._load()
        old = entries.get(key)
        new = {"version": probed.version, "version_asked": probed.version_asked,
               "terminals_off": probed.terminals_off, "no_extension": probed.no_extension}
        if old is not None and {k: old[k] for k in new} == new:
            return  # the same answers: no write for them
        entries[key] = dict(new, at=time.time())
        self._changed = True

    def forget(self, key: Optional[str]) -> None:
        if key is not None and self._load().pop(key, None) is not None:
            self._changed = True

    @property
    def dirty(self) -> bool:
        return self._changed

    def save(self) -> None:
        """Write the entries back if any changed (the newest MAX_ENTRIES); a folder or file
        that cannot be written loses only this memory."""
        if not self._changed or self._entries is None:
            return
        newest = sorted(self._entries.items(), key=lambda kv: kv[1].get("at", 0.0), reverse=True)[:MAX_ENTRIES]
        try:
            ensure_dir(self.path.parent)
            replace_file(self.path, json.dumps({"servers": dict(newest)}, separators=(",", ":")))
            self._changed = False
        except (OSError, UnsafeFile):
            pass


def _valid(v: object) -> bool:
    if not isinstance(v, dict):
        return False
    version = v.get("version")
    if version is not None and not (isinstance(version, str) and len(version) <= MAX_VERSION):
        return False
    if not isinstance(v.get("at", 0.0), (int, float)):
        return False
    return all(isinstance(v.get(k), bool) for k in ("version_asked", "terminals_off", "no_extension"))
