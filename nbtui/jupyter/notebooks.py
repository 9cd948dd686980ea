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

On a re-check, the folders due under one parent are looked at through that parent: one
listing gives each one's ``last_modified``, and a folder whose stamp is the one it had when
its files were last found all there keeps those answers without a request of its own (a
file made, removed or renamed in a folder moves its stamp). A folder with a file called
missing, or not yet stamped, is asked as above. So a user's project folders cost one
request a minute, not one each. A fleet that reads again (the TUI) lists the parents at the
first check too, so its first re-check is already only their listings; a one-shot read's
first check lists none (it asks what it asked before). A call re-checks at most RECHECKS_PER_CALL folders, the
longest unchecked first and a parent's together, so the minute's re-checks spread over the
refreshes (a listed parent's other folders come along only where the listing stamps them).

A folder whose answers were kept that way (nothing in it moved) waits twice as long for its
next re-check, then four times (QUIET_MAX): a TUI on 20 servers' 250 project folders each
spent 22 of its 49 requests a refresh re-checking folders nobody touched. Any real check of
the folder (its stamp moved, a file in it missing or not answered, a new name asked in it)
brings it back to ``ttl``, and so does ``hurry`` (a refresh asked for by hand: R), which
makes every folder last looked at a minute ago or more due at once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any, Awaitable, Callable, Iterable, Optional

from nbtui.core.orphans import NOTEBOOK_CHECK_TTL
from nbtui.jupyter.rest import NOT_FOUND, ServerClient, ServerError, deadline
from nbtui.jupyter.urlpath import UnsafeSegment, contents_path

# Folders re-checked per server per call (a refresh): the rest wait for the next. Folders first
# checked together fall due together; without a cap a TUI open on 250 one-notebook folders a
# server sent them all in one refresh each minute (a 3 s read). 24 a call at a 2 s refresh
# re-checks 600 folders of a server a minute.
RECHECKS_PER_CALL = 24
# The most a quiet folder's re-check waits, in ``ttl``s (doubling from 1 at each re-check that
# found nothing moved): 4 minutes at the default minute.
QUIET_MAX = 4


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


class _ServerChecks:
    """What one server's checks learnt: its folders' listings, the files asked one by one,
    each stamped folder's ``last_modified`` in its parent's listing when its files were last
    all found, the multiple of ``ttl`` each folder's re-check waits (``quiet``: doubled at
    each re-check that found it as it was, up to QUIET_MAX; absent: 1), the last
    grouping of its paths (``NotebookChecks._by_folder``), and the earliest its next folder
    falls due (its answers change only in ``refresh``, which looks at every folder again once
    this has come, or its paths changed, or it checked some)."""

    __slots__ = ("folders", "files", "stamps", "quiet", "grouped", "next_due")

    def __init__(self) -> None:
        self.folders: dict[str, _Folder] = {}
        self.files: dict[str, tuple[float, Optional[bool]]] = {}  # path -> (when, answer)
        self.stamps: dict[str, str] = {}
        self.quiet: dict[str, int] = {}  # folder -> its wait in ttls, where more than 1
        self.grouped: Optional[tuple[tuple[str, ...], dict[str, frozenset[str]]]] = None
        self.next_due = float("-inf")


class NotebookChecks:
    """Whether each session's file exists, per (server, path), learnt per folder and
    refreshed at most every ``ttl`` seconds. ``get`` is None until a check has answered.
    What it keeps follows the sessions: a server's answers about folders and files its
    sessions no longer name go when its paths change, a server's all when it leaves the
    fleet (``forget``), so a screen left open for weeks holds what it shows."""

    def __init__(self, ttl: float = NOTEBOOK_CHECK_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._servers: dict[str, _ServerChecks] = {}

    def get(self, server: str, path: str) -> Optional[bool]:
        """The latest answer about ``path``: its folder's listing showed it, or it was asked
        on its own (True, False, or None: that check failed); None before any."""
        st = self._servers.get(server)
        if st is None:
            return None
        folder, _, name = path.rpartition("/")  # (split_path, inline: asked of every kernel on every read)
        # (a file in the root is kept under its name: "/a.ipynb", as a session may name it, is "a.ipynb")
        return self._answer(st, folder, name, path if folder else name)

    @staticmethod
    def _answer(st: _ServerChecks, folder: str, name: str, path: str) -> Optional[bool]:
        listed = st.folders.get(folder)
        one = st.files.get(path)
        if listed is not None and name in listed.present and (one is None or listed.checked_at >= one[0]):
            return True
        return one[1] if one is not None else None

    def hurry(self) -> None:
        """Every server's quiet folders fall due at ``ttl`` again (a refresh asked for by hand)."""
        for st in self._servers.values():
            st.quiet.clear()
            st.next_due = float("-inf")

    def forget(self, server: str) -> None:
        """Forget what was learnt of ``server`` (it left the fleet, or none of its sessions names a file now)."""
        self._servers.pop(server, None)

    @staticmethod
    def _paced(due: list[tuple[str, frozenset[str]]], checked: dict[str, Optional[float]]) -> list[tuple[str, frozenset[str]]]:
        """The due folders to check now: every one never checked, and re-checks up to
        RECHECKS_PER_CALL, the longest unchecked first, a parent's due folders together (so
        that one listing of the parent may answer for them all)."""
        by_parent: dict[str, list[tuple[float, str]]] = {}
        for f, _ in due:
            at = checked[f]
            if at is not None:
                by_parent.setdefault(f.rpartition("/")[0], []).append((at, f))
        later: set[str] = set()
        room = RECHECKS_PER_CALL
        for _, children in sorted(by_parent.items(), key=lambda pc: (min(pc[1])[0], pc[0])):
            children.sort()
            later.update(f for _, f in children[room:])  # a parent of more than that many: the oldest now
            room = max(room - len(children), 0)
        return [(f, names) for f, names in due if f not in later]

    @staticmethod
    def _checked_at(st: _ServerChecks, folder: str, names: frozenset[str]) -> Optional[float]:
        """When the oldest of these answers came (None: one of them never did)."""
        listed = st.folders.get(folder)
        oldest: Optional[float] = None
        for n in names:
            one = st.files.get(join_path(folder, n))
            at = listed.checked_at if listed is not None and n in listed.asked else None
            if one is not None:
                at = one[0] if at is None else max(at, one[0])
            if at is None:
                return None
            oldest = at if oldest is None else min(oldest, at)
        return oldest

    @staticmethod
    def _by_folder(st: _ServerChecks, paths: Iterable[str]) -> dict[str, frozenset[str]]:
        """The names of ``paths`` by folder; the last call's grouping again where a server's
        paths are the same (a refresh asks with the same sessions, one call per server).
        Where they changed, what was learnt of folders and files no longer asked goes."""
        paths = tuple(paths)
        if st.grouped is not None and st.grouped[0] == paths:
            return st.grouped[1]
        grouped: dict[str, set[str]] = {}
        for p in paths:
            folder, name = split_path(p)
            grouped.setdefault(folder, set()).add(name)
        by_folder = {f: frozenset(names) for f, names in grouped.items()}
        st.grouped = (paths, by_folder)
        asked = {join_path(f, n) for f, names in by_folder.items() for n in names}  # (the files' keys)
        st.files = {p: v for p, v in st.files.items() if p in asked}
        st.folders = {f: v for f, v in st.folders.items() if f in by_folder}
        st.stamps = {f: v for f, v in st.stamps.items() if f in by_folder}
        st.quiet = {f: v for f, v in st.quiet.items() if f in by_folder}
        return by_folder

    def _due_at(self, st: _ServerChecks, folder: str, names: frozenset[str]) -> float:
        """When the folder falls due (-inf: it is, whatever the time)."""
        wait = self.ttl * st.quiet.get(folder, 1)
        if len(names) == 1:  # a folder of one session's file: that file is asked on its own
            one = st.files.get(join_path(folder, next(iter(names))))
            return float("-inf") if one is None else one[0] + wait
        listed = st.folders.get(folder)
        # (a name the listing lacked was asked on its own right after it: no older than it)
        if listed is None or not names <= listed.asked:
            return float("-inf")
        return listed.checked_at + wait

    async def refresh(self, server: str, paths: Iterable[str], client: Callable[[], ServerClient], *,
                      limit: asyncio.Semaphore, timeout: float, stamp_first: bool = False) -> int:
        """Check the folders of ``paths`` that are due (a few requests at a time, under
        ``limit``; each request bounded by ``timeout``); returns how many folders were.
        ``stamp_first`` (a fleet that reads again: the TUI, the exporter): a first check lists
        the parents too, so the first re-check is their listings alone, not every folder.
        (A server forgotten meanwhile (``forget``) takes this call's answers with it.)"""
        st = self._servers.get(server)
        if st is None:
            st = self._servers[server] = _ServerChecks()
        grouped = st.grouped
        by_folder = self._by_folder(st, paths)
        now = self.clock()
        if st.grouped is grouped and now < st.next_due:
            return 0  # the same paths, and none of their folders due yet: not one looked at
        due_at = {f: self._due_at(st, f, names) for f, names in by_folder.items()}
        due = [(f, names) for f, names in by_folder.items() if due_at[f] <= now]
        # (folders checked now have new answers by the next call: it looks at all again)
        st.next_due = now if due else min(due_at.values(), default=float("inf"))
        if due:
            # when each folder's answers came (None: never), once for this call
            checked = {f: self._checked_at(st, f, names) for f, names in by_folder.items()}
            if len(due) > RECHECKS_PER_CALL:  # the first check of a folder always goes; re-checks, the oldest first
                due = self._paced(due, checked)
            parents = self._parents_to_list(due, checked, stamp_first)
            stamps = await self._parents_stamps(parents, client, limit, timeout)
            # A listed parent's other folders that it stamps come along: kept while their stamps
            # hold, else checked and stamped, so from then on a parent's folders fall due together.
            now_due = {f for f, _ in due}
            along = [(f, names) for f, names in by_folder.items()
                     if f not in now_due and f in stamps and checked[f] is not None]
            work = due + along
            kept = {f for f, names in work if self._keep(st, f, names, stamps, quiet=f in now_due)}
            await asyncio.gather(*(self._check(st, f, names, stamps.get(f), client, limit, timeout)
                                   for f, names in work if f not in kept))
        return len(due)

    def _found(self, st: _ServerChecks, folder: str, names: frozenset[str]) -> bool:
        """Whether the last answers found every one of ``names`` in ``folder``."""
        return all(self._answer(st, folder, n, join_path(folder, n)) is True for n in names)

    async def _check(self, st: _ServerChecks, folder: str, names: frozenset[str], stamp: Optional[str],
                     client: Callable[[], ServerClient], limit: asyncio.Semaphore, timeout: float) -> None:
        if len(names) > 1:
            await self._check_folder(st, folder, names, client, limit, timeout)
        else:
            await self._check_files(st, [join_path(folder, n) for n in names], client, limit, timeout)
        st.quiet.pop(folder, None)
        if stamp is not None and self._found(st, folder, names):
            st.stamps[folder] = stamp  # (taken before the check: a change between moves it again)
        else:
            st.stamps.pop(folder, None)

    def _keep(self, st: _ServerChecks, folder: str, names: frozenset[str], stamps: dict[str, str],
              quiet: bool) -> bool:
        """Whether a folder keeps its answers: its stamp has not moved since its files were
        all found there. They are then renewed as of now; a folder that was due (``quiet``,
        not one come along with its parent's listing) waits twice as long for its next look."""
        stamp = stamps.get(folder)
        if stamp is None or st.stamps.get(folder) != stamp or not self._found(st, folder, names):
            return False
        now = self.clock()
        if quiet:
            st.quiet[folder] = min(st.quiet.get(folder, 1) * 2, QUIET_MAX)
        listed = st.folders.get(folder)
        if listed is not None:
            st.folders[folder] = replace(listed, checked_at=now)
        for n in names:
            p = join_path(folder, n)
            # (a folder of one file falls due by that file's answer: renewed even where its
            # listing, when it held more, gave it; else it is due at every call from then on)
            if p in st.files or len(names) == 1:
                st.files[p] = (now, True)
        return True

    @staticmethod
    def _parents_to_list(due: list[tuple[str, frozenset[str]]], checked: dict[str, Optional[float]],
                         first_too: bool = False) -> set[str]:
        """The parents worth a listing: each holds a due folder checked before and at least
        one more folder checked before (a one-shot read's first check lists no parent: it
        asks what it asked before); with ``first_too`` folders never checked count as well.
        The listing comes before the checks, so a change after it moves the stamp again."""
        known: dict[str, int] = {}
        for folder, at in checked.items():
            if folder and (at is not None or first_too):
                parent = folder.rpartition("/")[0]
                known[parent] = known.get(parent, 0) + 1
        return {f.rpartition("/")[0] for f, _ in due if f and known.get(f.rpartition("/")[0], 0) > 1
                and (first_too or checked[f] is not None)}

    async def _parents_stamps(self, parents: set[str], client: Callable[[], ServerClient], limit: asyncio.Semaphore,
                      timeout: float) -> dict[str, str]:
        """``last_modified`` of each folder in these parents' listings (a listing that fails gives none)."""
        async def listing(parent: str) -> dict[str, str]:
            try:
                model = await self._bounded(limit, timeout,
                                            lambda: client().request("GET", folder_url(parent, True)))
            except (ServerError, UnsafeSegment, asyncio.TimeoutError):
                return {}
            if not isinstance(model, dict) or not isinstance(model.get("content"), list):
                return {}
            return {join_path(parent, e["name"]): e["last_modified"] for e in model["content"]
                    if isinstance(e, dict) and e.get("type") == "directory" and isinstance(e.get("name"), str)
                    and isinstance(e.get("last_modified"), str)}

        stamps: dict[str, str] = {}
        for found in await asyncio.gather(*(listing(p) for p in sorted(parents))):
            stamps.update(found)
        return stamps

    async def _bounded(self, limit: asyncio.Semaphore, timeout: float, work: Callable[[], Awaitable[Any]]) -> Any:
        """One request, once ``limit`` lets it, bounded by ``timeout``."""
        async with limit:
            return await deadline(work(), timeout + 0.25)

    async def _check_folder(self, st: _ServerChecks, folder: str, names: frozenset[str],
                            client: Callable[[], ServerClient], limit: asyncio.Semaphore, timeout: float) -> None:
        before = st.folders.get(folder)
        try:
            listed = await self._listing(folder, names, before, client, limit, timeout)
        except (ServerError, UnsafeSegment, asyncio.TimeoutError):
            listed = None  # each file is asked on its own instead
        if listed is not None:
            st.folders[folder] = listed
            unlisted = sorted(names - listed.present)
        else:
            st.folders.pop(folder, None)
            unlisted = sorted(names)
        for name in names & (listed.present if listed is not None else frozenset()):
            st.files.pop(join_path(folder, name), None)
        if unlisted:
            await self._check_files(st, [join_path(folder, n) for n in unlisted], client, limit, timeout)

    async def _check_files(self, st: _ServerChecks, paths: list[str], client: Callable[[], ServerClient],
                           limit: asyncio.Semaphore, timeout: float) -> None:
        """Ask for each of ``paths`` on its own (``content=0``): the only way one is called missing."""

        async def exists(p: str) -> bool:
            return await self._bounded(limit, timeout, lambda: client().contents_exists(p))

        answers = await asyncio.gather(*(exists(p) for p in paths), return_exceptions=True)
        now = self.clock()
        for p, answer in zip(paths, answers):
            st.files[p] = (now, answer if isinstance(answer, bool) else None)

    async def _listing(self, folder: str, names: frozenset[str], before: Optional[_Folder],
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
