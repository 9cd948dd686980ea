"""The notebook file comes along: a kernel moved (or rebound) to a path that has no file
there would at once be an orphan (`notebook-missing`), and its owner could not open it.

Only the contents API (``GET``/``PUT /api/contents/PATH``), bounded like every call. An
existing, different file at the target path is never overwritten unless asked.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass
from typing import Optional

from nbtui.core.errors import NbtuiError
from nbtui.jupyter.rest import MAX_CONTENTS_BYTES, NOT_FOUND, ServerClient, ServerError
from nbtui.core.text import visible

COPY = "copy"  # the source's file, to a target path that has none
OVERWRITE = "overwrite"  # the source's file, over a different one (asked for)
SAME = "same"  # the target already has this very file
CREATE = "create"  # no file to bring (a local source, or rebind): an empty notebook
KEEP = "keep"  # a file is already there (nothing of the source's to compare)
NONE = "none"  # the source had no file either: nothing to bring

EMPTY_NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


class NotebookConflict(NbtuiError):
    """A different file is at the target path (exit 1); nothing was changed."""


@dataclass
class NotebookPlan:
    action: str
    path: str  # on the target
    server: str  # the target
    source_path: Optional[str] = None
    source_server: Optional[str] = None
    bytes: Optional[int] = None
    model: Optional[dict] = None  # the source's file model, with content (never in JSON)
    # A kernel whose server is gone (pid:N): source_path is a file on this host, and why
    # none comes along when it cannot.
    local: bool = False
    note: Optional[str] = None
    owner: Optional[int] = None  # local: the kernel's uid; only its own file comes along

    def to_json(self) -> dict:
        return {"action": self.action, "path": self.path, "server": self.server,
                "source_path": self.source_path, "source_server": self.source_server, "bytes": self.bytes,
                "note": self.note}

    def line(self) -> str:
        if self.note:  # nothing of the source's comes along, and why
            return (f"notebook file: none comes along ({self.note}); "
                    + (f"an empty notebook at {visible(self.path)} on {self.server}" if self.action == CREATE
                       else f"{visible(self.path)} on {self.server} " + ("is kept" if self.action == KEEP
                                                                          else "will have none")))
        where = "this host" if self.local else self.source_server
        src = f"{visible(self.source_path)} on {where}" if self.source_path else ""
        dst = f"{visible(self.path)} on {self.server}"
        size = f" ({self.bytes} bytes)" if self.bytes is not None else ""
        return {
            COPY: f"notebook file: copy {src} to {dst}{size}",
            OVERWRITE: f"notebook file: copy {src} over the different file at {dst}{size} (--overwrite-notebook)",
            SAME: f"notebook file: {dst} is already the same file",
            CREATE: f"notebook file: none to bring; an empty notebook at {dst}",
            KEEP: f"notebook file: {dst} exists and is kept",
            NONE: f"notebook file: no notebook file at {src} to bring; {dst} will have none either",
        }[self.action]


async def _model(client: ServerClient, path: str) -> Optional[dict]:
    try:
        return await client.contents(path)
    except ServerError as e:
        if e.kind == NOT_FOUND:
            return None
        raise


def _size(model: dict) -> Optional[int]:
    size = model.get("size")
    return size if isinstance(size, int) else None


def _same(a: dict, b: dict) -> bool:
    return a.get("type") == b.get("type") and a.get("content") == b.get("content")


def read_local(path: Optional[str], owner: Optional[int] = None) -> tuple[Optional[dict], Optional[str]]:
    """The notebook file a local kernel was started for (its ``JPY_SESSION_NAME``) as a
    contents model, read as the contents API would be (at most MAX_CONTENTS_BYTES); or None
    and why not, in words for the plan's line.

    The path comes from the kernel's environment, so its owner chose it: as root nbtui reads
    it only as a regular file, not through a symlink, and (``owner``: the kernel's uid) only a
    file of the kernel's own owner — never root's ``secret.ipynb`` carried into that user's server."""
    import stat

    if not path:
        return None, "the process names no notebook file: it has no JPY_SESSION_NAME"
    shown = visible(path)
    if not path.endswith(".ipynb"):
        return None, f"{shown} on this host is not a notebook"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None, f"no file {shown} on this host"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None, f"{shown} on this host is a symlink; nbtui does not read through one"
        return None, f"{shown} on this host cannot be read: {e.strerror or type(e).__name__}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, f"{shown} on this host is not a regular file"
        if owner is not None and st.st_uid != owner:
            return None, (f"{shown} on this host is owned by {_user_name(st.st_uid)}, not by the kernel's owner "
                          f"{_user_name(owner)}")
        with os.fdopen(os.dup(fd), "rb") as f:
            os.set_blocking(f.fileno(), True)
            data = f.read(MAX_CONTENTS_BYTES + 1)
    except OSError as e:
        return None, f"{shown} on this host cannot be read: {e.strerror or type(e).__name__}"
    finally:
        os.close(fd)
    if len(data) > MAX_CONTENTS_BYTES:
        return None, f"{shown} on this host is over {MAX_CONTENTS_BYTES >> 20} MiB"
    try:
        content = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        return None, f"{shown} on this host is not notebook JSON"
    if not isinstance(content, dict) or not isinstance(content.get("cells"), list):
        return None, f"{shown} on this host is not notebook JSON"
    return {"type": "notebook", "format": "json", "content": _rejoined(content), "size": len(data)}, None


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _rejoined(node: object) -> object:
    """Multi-line strings stored as lists of lines (as files keep them) joined, as the
    contents API answers them, so the same file on both sides compares the same."""
    if isinstance(node, dict):
        out: dict[object, object] = {}
        for key, value in node.items():
            if key in ("source", "text") and isinstance(value, list) and all(isinstance(x, str) for x in value):
                out[key] = "".join(value)
            elif key == "data" and isinstance(value, dict):
                out[key] = {m: ("".join(v) if isinstance(v, list) and all(isinstance(x, str) for x in v)
                                and not m.endswith("json") else _rejoined(v)) for m, v in value.items()}
            else:
                out[key] = _rejoined(value)
        return out
    if isinstance(node, list):
        return [_rejoined(x) for x in node]
    return node


async def plan(target: ServerClient, path: str, *, source: Optional[ServerClient] = None,
               source_path: Optional[str] = None, overwrite: bool = False,
               create_empty: bool = True, local: bool = False, owner: Optional[int] = None) -> NotebookPlan:
    """What bringing the notebook takes; reads only. Raises NotebookConflict for a different
    file at ``path`` unless ``overwrite``. ``local``: ``source_path`` is a file on this host
    (a kernel whose server is gone); when it cannot be read, the plan's note says why."""
    there = await _model(target, path)
    p = NotebookPlan(KEEP, path, target.name, source_path, source.name if source else None, local=local, owner=owner)
    mine: Optional[dict] = None
    if local:
        mine, p.note = read_local(source_path, owner)
    elif source is not None and source_path:
        mine = await _model(source, source_path)
    if mine is not None or (source is not None and source_path and not local):
        if mine is None:
            p.action = KEEP if there is not None else NONE
            return p
        if mine.get("type") == "directory":
            raise NotebookConflict(f"{visible(source_path)} on {source.name if source is not None else 'this host'} is a folder, not a notebook")
        p.model, p.bytes = mine, _size(mine)
        if there is None:
            p.action = COPY
        elif _same(mine, there):
            p.action = SAME
        elif overwrite and there.get("type") != "directory":
            p.action = OVERWRITE
        else:
            what = "a folder" if there.get("type") == "directory" else "a different file"
            raise NotebookConflict(
                f"{visible(path)} on {target.name} is {what}; nothing was changed: keep it and name "
                "another path with --notebook PATH" + ("" if what == "a folder" else
                                                        ", or replace it with --overwrite-notebook"))
        return p
    if there is None and create_empty and path.endswith(".ipynb"):
        p.action = CREATE
    elif there is None:
        p.action = NONE
    return p


async def apply(p: NotebookPlan, target: ServerClient, source: Optional[ServerClient] = None) -> None:
    """Write what ``plan`` decided, re-checking right before that the target path is still free;
    the source's file is read again, so a save made since the plan comes along too."""
    if p.action not in (COPY, OVERWRITE, CREATE):
        return
    if p.local and p.action != CREATE:
        p.model = read_local(p.source_path, p.owner)[0] or p.model
    elif source is not None and p.source_path and p.action != CREATE:
        p.model = await _model(source, p.source_path) or p.model
    if p.action in (COPY, CREATE) and await target.contents_exists(p.path):
        raise NotebookConflict(f"{visible(p.path)} appeared on {target.name} meanwhile; nothing was overwritten")
    await _folders(target, p.path)
    model = p.model if p.action != CREATE else {"type": "notebook", "format": "json", "content": EMPTY_NOTEBOOK}
    assert model is not None
    await target.save_contents(p.path, model)


async def _folders(target: ServerClient, path: str) -> None:
    parts = path.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        folder = "/".join(parts[:i])
        if not await target.contents_exists(folder):
            await target.save_contents(folder, {"type": "directory"})
