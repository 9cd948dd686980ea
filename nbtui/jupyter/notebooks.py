"""notebook-missing, checked per folder: one contents listing per distinct folder of a
server's sessions, not one request per session.

A session's notebook exists when its name is in its folder's listing (``GET
/api/contents/FOLDER?content=1``). A name the listing lacks is asked on its own (``GET
/api/contents/PATH?content=0``) before it is called missing: a contents manager may leave a
file out of a listing (hidden, filtered) that it still serves, and "missing" lets `cull
--orphans` stop a kernel. So a listing can only say "exists"; "missing" always comes from a
request for that very file. Every outside string reaches a URL only through
``nbtui.jupyter.urlpath.contents_path`` (each part one checked segment).

A folder that holds one session's file is not listed: that file is asked for on its own
(one request either way, a smaller answer, and no second one when it is missing).

A folder is listed again once its answer is ``ttl`` old (or a session names a file in it
that was not looked for). Where the server gave the folder's ``last_modified``, the cheap
``content=0`` model is asked first and the last listing kept while that has not moved.
A check that fails leaves its answers unknown (None), never missing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any, Awaitable, Callable, Iterable, Optional

from nbtui.core.orphans import NOTEBOOK_CHECK_TTL
from nbtui.jupyter.rest import NOT_FOUND, ServerClient, ServerError
from nbtui.jupyter.urlpath import UnsafeSegment, contents_path


@dataclass(frozen=True, slots=True)
class _Folder:
    """One folder's last listing: when, its ``last_modified`` (None: not given), the names
    looked for in it and those of them it listed."""

    checked_at: float
    last_modified: Optional[str]
    asked: frozenset[str]
    present: frozenset[str]


def split_path(path: str) -> tuple[str, str]:
    """``("a/b", "x.ipynb")`` of ``a/b/x.ipynb``; the root folder is ``""``."""
    folder, _, name = path.rpartition("/")
    return folder, name


def join_path(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def folder_url(folder: str, content: bool) -> str:
    """The contents URL of a folder (its parts checked segments), with or without its listing."""
    where = "api/contents" if folder == "" else f"api/contents/{contents_path(folder, 'notebook folder')}"
    return f"{where}?content={1 if content else 0}"


class NotebookChecks:
    """Whether each session's file exists, per (server, path), learnt per folder and
    refreshed at most every ``ttl`` seconds. ``get`` is None until a check has answered."""

    def __init__(self, ttl: float = NOTEBOOK_CHECK_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._folders: dict[tuple[str, str], _Folder] = {}
        self._files: dict[tuple[str, str], tuple[float, Optional[bool]]] = {}  # asked one by one

    def get(self, server: str, path: str) -> Optional[bool]:
        """The latest answer about ``path``: its folder's listing showed it, or it was asked
        on its own (True, False, or None: that check failed); None before any."""
        folder, name = split_path(path)
        listed = self._folders.get((server, folder))
        seen = (listed.checked_at, True) if listed is not None and name in listed.present else None
        one = self._files.get((server, path))
        latest = max((a for a in (seen, one) if a is not None), key=lambda a: a[0], default=None)
        return latest[1] if latest is not None else None

    def _due(self, server: str, folder: str, names: set[str]) -> bool:
        if len(names) == 1:  # a folder of one session's file: that file is asked on its own
            one = self._files.get((server, join_path(folder, next(iter(names)))))
            return one is None or self.clock() - one[0] >= self.ttl
        listed = self._folders.get((server, folder))
        # (a name the listing lacked was asked on its own right after it: no older than it)
        return listed is None or self.clock() - listed.checked_at >= self.ttl or not names <= listed.asked

    async def refresh(self, server: str, paths: Iterable[str], client: Callable[[], ServerClient], *,
                      limit: asyncio.Semaphore, timeout: float) -> int:
        """Check the folders of ``paths`` that are due (a few requests at a time, under
        ``limit``; each request bounded by ``timeout``); returns how many folders were."""
        by_folder: dict[str, set[str]] = {}
        for p in paths:
            folder, name = split_path(p)
            by_folder.setdefault(folder, set()).add(name)
        due = [(f, names) for f, names in by_folder.items() if self._due(server, f, names)]
        if due:
            await asyncio.gather(*(self._check_folder(server, f, names, client, limit, timeout) if len(names) > 1
                                   else self._check_files(server, [join_path(f, n) for n in names], client, limit,
                                                          timeout)
                                   for f, names in due))
        return len(due)

    async def _bounded(self, limit: asyncio.Semaphore, timeout: float, work: Callable[[], Awaitable[Any]]) -> Any:
        """One request, once ``limit`` lets it, bounded by ``timeout``."""
        async with limit:
            return await asyncio.wait_for(work(), timeout + 0.25)

    async def _check_folder(self, server: str, folder: str, names: set[str], client: Callable[[], ServerClient],
                            limit: asyncio.Semaphore, timeout: float) -> None:
        key = (server, folder)
        before = self._folders.get(key)
        try:
            listed = await self._listing(folder, names, before, client, limit, timeout)
        except (ServerError, UnsafeSegment, asyncio.TimeoutError):
            listed = None  # each file is asked on its own instead
        if listed is not None:
            self._folders[key] = listed
            unlisted = sorted(names - listed.present)
        else:
            self._folders.pop(key, None)
            unlisted = sorted(names)
        for name in names & (listed.present if listed is not None else frozenset()):
            self._files.pop((server, join_path(folder, name)), None)
        if unlisted:
            await self._check_files(server, [join_path(folder, n) for n in unlisted], client, limit, timeout)

    async def _check_files(self, server: str, paths: list[str], client: Callable[[], ServerClient],
                           limit: asyncio.Semaphore, timeout: float) -> None:
        """Ask for each of ``paths`` on its own (``content=0``): the only way one is called missing."""

        async def exists(p: str) -> bool:
            return await self._bounded(limit, timeout, lambda: client().contents_exists(p))

        answers = await asyncio.gather(*(exists(p) for p in paths), return_exceptions=True)
        now = self.clock()
        for p, answer in zip(paths, answers):
            self._files[(server, p)] = (now, answer if isinstance(answer, bool) else None)

    async def _listing(self, folder: str, names: set[str], before: Optional[_Folder],
                       client: Callable[[], ServerClient], limit: asyncio.Semaphore, timeout: float) -> _Folder:
        """The folder's listing, or the last one where its ``last_modified`` has not moved
        and it was looked through for every name asked now. A folder that is not there lists
        nothing (its files are then asked one by one)."""
        if before is not None and before.last_modified is not None and names <= before.asked:
            try:
                model = await self._bounded(
                    limit, timeout, lambda: client().request("GET", folder_url(folder, False)))
            except ServerError as e:
                if e.kind != NOT_FOUND:
                    raise
                model = None
            if isinstance(model, dict) and model.get("last_modified") == before.last_modified:
                return replace(before, checked_at=self.clock())
        try:
            model = await self._bounded(limit, timeout, lambda: client().request("GET", folder_url(folder, True)))
        except ServerError as e:
            if e.kind != NOT_FOUND:
                raise
            return _Folder(self.clock(), None, frozenset(names), frozenset())
        if not isinstance(model, dict) or model.get("type") != "directory" or not isinstance(model.get("content"), list):
            return _Folder(self.clock(), None, frozenset(names), frozenset())
        listed = {e.get("name") for e in model["content"] if isinstance(e, dict)}
        modified = model.get("last_modified")
        return _Folder(self.clock(), modified if isinstance(modified, str) else None, frozenset(names),
                       frozenset(n for n in names if n in listed))
