"""Fleet snapshots on a thread of their own, so reading 20 servers never stalls the screen.

The runner owns a private copy of the fleet (its HTTP clients live on the runner's event
loop); the screen keeps the original for actions and consoles on its own loop.

A read streams: as each server answers, a partial read (that server's kernels, with the
usage of the last whole snapshot where there was one) is handed to the screen, so the
first rows appear as soon as the first server answers and a hung server never holds back
the others; the whole snapshot (usage sampled, orphan rules applied) follows.

`nbtui` hands the runner a fleet not yet opened (``OpenOnce``) and a first read begun in a
child process (nbtui.service.forked_read): the screen starts without loading httpx, psutil or the
fleet; the child's answers are the first rows, and the runner opens its fleet and reads
once the screen is drawn.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import inspect
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping, Optional, Sequence

from nbtui.display import table_rows as tr
from nbtui.core.model import Kernel, ServerInfo, Snapshot, fleet_order
from nbtui.tui.fleet_header import kernel_counts
from nbtui.tui.usage_history import History
from nbtui.tui.rows import CellCache, Layout
if TYPE_CHECKING:
    from nbtui.service.forked_read import ForkedRead

# On a read after the first, partial rows are shown only once the read has taken this
# long (a slow or hung server); a quick read shows its whole snapshot at once.
PARTIAL_AFTER = 0.5
# Once a server of a read has answered, one that has not answered this long after the
# latest answer is not waited for: its read goes on at its own pace (Fleet.snapshot's
# hold_back), the read ends with that server's last answer, and the next refresh starts on
# time, so a hung server never holds back the others' refreshes.
HOLD_BACK = 1.0
# The read begun before the screen exists (prefetch) samples the host once the screen has
# painted, or this long after it began: the process scan and NVML's start would otherwise
# take the CPU (and the GIL) from the screen's start.
SCREEN_WAIT = 2.0


class OpenOnce:
    """A fleet opened on its first use, once, from any thread (``open_()`` builds it).
    ``names`` and ``settings`` are known before: the servers the screen waits for at first
    (the configured ones) and the fleet's settings."""

    def __init__(self, open_: Callable[[], Any], names: Sequence[str] = (), settings: Any = None):
        self._open = open_
        self._lock = threading.Lock()
        self._fleet: Any = None
        self.names = tuple(names)
        self.settings = settings

    def __call__(self) -> Any:
        with self._lock:
            if self._fleet is None:
                self._fleet = self._open()
            return self._fleet


def _private_copy(fleet: Any) -> Any:
    loaded = sys.modules.get("nbtui.service.fleet")  # not loaded: no Fleet exists (the screen starts without it)
    if loaded is not None and isinstance(fleet, loaded.Fleet):
        return type(fleet)([fleet.config_of(n) for n in fleet.names], fleet.settings,
                     stale_files=fleet.stale_files, host=fleet.host, clock=fleet.clock)
    return fleet  # anything else with ``async snapshot()`` (a recorded snapshot in tests)


@dataclass(frozen=True)
class Read:
    snapshot: Snapshot
    index: dict[str, tr.Row]  # rows by key
    cells: Optional[tuple] = None  # (layout, {key: cells}) from rows.CellCache
    rows: Optional[list] = None  # every row of the snapshot (nbtui.display.table_rows), in fleet order
    waiting: tuple[str, ...] = ()  # servers that have not answered (a first read in progress)
    partial: bool = False  # more of this read is coming


class _Job:
    """One read in flight: partial reads as servers answer, then the whole one. Filled
    on the runner's thread, read on the UI's loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[Read] = []
        self.done = False
        self.error: Optional[BaseException] = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []

    def put(self, item: Optional[Read] = None, *, done: bool = False,
            error: Optional[BaseException] = None) -> None:
        with self._lock:
            if item is not None:
                self.items.append(item)
            self.done = self.done or done
            self.error = error or self.error
            waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            try:
                loop.call_soon_threadsafe(_wake, fut)
            except RuntimeError:  # that loop is closed
                pass

    async def latest_after(self, seen: int) -> tuple[int, Optional[Read]]:
        """The newest read past the first ``seen`` (skipping ones superseded meanwhile);
        (seen, None) when the job is over."""
        while True:
            with self._lock:
                if len(self.items) > seen:
                    return len(self.items), self.items[-1]
                if self.done:
                    if self.error is not None:
                        raise self.error
                    return seen, None
                fut = asyncio.get_running_loop().create_future()
                self._waiters.append((asyncio.get_running_loop(), fut))
            await fut


def _wake(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


class SnapshotRunner:
    def __init__(self, fleet: Any, *, first: Optional["ForkedRead"] = None):
        """``fleet``: a fleet (copied at once), or an ``OpenOnce`` (opened and copied on
        first use); ``first``: the first read, begun in a child process."""
        self._source = fleet
        self._fleet: Any = None if isinstance(fleet, OpenOnce) else _private_copy(fleet)
        self._first = first
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nbtui-fleet", daemon=True)
        self._thread.start()
        self._pending: Optional[_Job] = None
        self._last: Optional[Snapshot] = None  # the last whole snapshot
        self.history = History()
        self._cells = CellCache()
        # The table's layout (nbtui.display.columns), set by the screen; read on this thread.
        self.layout: Optional[Layout] = None
        self._shown = asyncio.Event()  # set on the runner's loop once the screen has painted
        self._params: Optional[frozenset] = None  # the keywords the fleet's snapshot() takes

    @property
    def fleet(self) -> Any:
        """The runner's own fleet (opened here on first use, when it was handed an OpenOnce)."""
        if self._fleet is None:
            self._fleet = _private_copy(self._source())
        return self._fleet

    def _accepts(self, keyword: str) -> bool:
        """Whether the fleet's ``snapshot`` takes ``keyword`` (looked up once)."""
        if self._params is None:
            try:
                params: Mapping[str, inspect.Parameter] = inspect.signature(self.fleet.snapshot).parameters
            except (TypeError, ValueError):
                params = {}
            self._params = frozenset(params)
        return keyword in self._params

    def _submit(self, make: Callable[[], Awaitable[Any]]) -> "concurrent.futures.Future[Any]":
        async def call():
            return await make()

        return asyncio.run_coroutine_threadsafe(call(), self._loop)

    def _start(self, usage_after: Optional[Callable[[], Awaitable[Any]]] = None,
               first: Optional["ForkedRead"] = None) -> _Job:
        job = _Job()
        self._submit(lambda: self._read(job, usage_after, first))
        return job

    def screen_shown(self) -> None:
        """The screen has painted (any thread): the prefetched read may sample the host."""
        try:
            self._loop.call_soon_threadsafe(self._shown.set)
        except RuntimeError:  # closed
            pass

    async def _after_screen(self) -> None:
        try:
            await asyncio.wait_for(self._shown.wait(), SCREEN_WAIT)
        except asyncio.TimeoutError:
            pass

    def _finish(self, snap: Snapshot, waiting: tuple[str, ...] = (), partial: bool = False) -> Read:
        """Work over every row happens here, not on the UI thread: the rows, the index by
        key, and every row's cells for the table's current layout."""
        rows = tr.rows_of(snap)
        kernel_counts(snap)  # the summary line's counts, here rather than on the UI thread
        layout = self.layout
        cells = self._cells.rows(rows, layout) if layout else None
        return Read(snap, {r.key: r for r in rows}, cells, rows, waiting, partial)

    async def _read(self, job: _Job, usage_after: Optional[Callable[[], Awaitable[Any]]] = None,
                    first: Optional["ForkedRead"] = None) -> None:
        """``first``: a child's read (nbtui.service.forked_read), this read's first answers."""
        prev = self._last
        names = list(self.waiting_names())
        answered: dict[str, tuple[ServerInfo, list[Kernel]]] = {}
        own: set[str] = set()  # servers this process's read has answered (the child's answer is superseded)
        state = {"open": prev is None, "final": False}

        def emit() -> None:
            if state["final"] or not answered:
                return
            snap, waiting = self._partial(prev, answered, names)
            job.put(self._finish(snap, waiting, partial=True))

        def on_server(info: ServerInfo, kernels: list[Kernel]) -> None:
            own.add(info.name)
            answered[info.name] = (info, list(kernels))
            if state["open"]:
                emit()

        def from_child(frame: tuple) -> None:
            if frame[0] == "names" and self._fleet is None:
                names[:] = [n for n in frame[1] if isinstance(n, str)]
            elif frame[0] == "server" and frame[1].name not in own:
                answered[frame[1].name] = (frame[1], list(frame[2]))
                emit()

        def open_partials() -> None:
            state["open"] = True
            emit()

        timer = None if prev is None else self._loop.call_later(PARTIAL_AFTER, open_partials)
        try:
            if first is not None:
                self._follow(first, from_child)
                if usage_after is not None:  # the fleet opens (httpx, psutil…) once the screen is drawn
                    await usage_after()
                    usage_after = None
            names[:] = list(getattr(self.fleet, "names", ()) or ())
            kw: dict[str, Any] = {}
            holds_back = self._accepts("hold_back")
            if holds_back or self._accepts("on_server"):
                kw["on_server"] = on_server
            if holds_back:
                kw["hold_back"] = HOLD_BACK
            if usage_after is not None and self._accepts("usage_after"):
                kw["usage_after"] = usage_after
            snap = await self.fleet.snapshot(**kw)
            state["final"] = True
            # servers whose read goes on (their last answer, if any, is in the snapshot)
            still = tuple(getattr(self.fleet, "still_reading", ()) or ())
            if first is not None:  # ended before the whole read is out; what only it had read stays
                self._unfollow(first)
                kept = {n: answered[n] for n in still if n in answered and n not in own}
                if kept:  # (no hub with a child's read: every server of snap is in names)
                    snap = self._partial(snap, kept, names)[0]
                    still = tuple(n for n in still if n not in kept)
            self.history.add(snap.kernels)
            self._last = snap
            job.put(self._finish(snap, still), done=True)
        except BaseException as e:  # the screen says why in one line
            state["final"] = True
            job.put(done=True, error=e if isinstance(e, Exception) else RuntimeError("read cancelled"))
        finally:
            if timer is not None:
                timer.cancel()
            if first is not None:
                self._unfollow(first)

    def _follow(self, first: "ForkedRead", deliver: Callable[[tuple], None]) -> None:
        """Hand each frame from the child to ``deliver`` as it arrives (on this loop)."""
        def readable() -> None:
            for frame in first.frames():
                deliver(frame)
            if first.ended:
                self._loop.remove_reader(first.fd)

        self._loop.add_reader(first.fd, readable)

    def _unfollow(self, first: "ForkedRead") -> None:
        if first.fd >= 0:
            self._loop.remove_reader(first.fd)
        first.close()  # idempotent

    def _partial(self, prev: Optional[Snapshot], answered: dict, names: list[str]):
        """A snapshot of what has answered so far: their kernels (with the last whole
        snapshot's usage and orphan reasons, where it had them), and the last snapshot's
        servers and kernels for the rest; the names of servers never read yet."""
        prev_servers = {s.name: s for s in prev.servers} if prev else {}
        prev_kernels = {k.key: k for k in prev.kernels} if prev else {}
        servers, kernels, waiting = [], [], []
        order = list(names) + [n for n in answered if n not in names]  # a hub's user servers join as read
        for name in order:
            if name in answered:
                info, ks = answered[name]
                old = prev_servers.get(name)
                if old is not None and info.ok:
                    info = dataclasses.replace(info, usage_source=old.usage_source, usage_note=old.usage_note)
                servers.append(info)
                for k in ks:
                    was = prev_kernels.get(k.key)
                    if was is not None:
                        k = dataclasses.replace(k, usage=was.usage, orphan_reasons=was.orphan_reasons, user=was.user,
                                                process_user=was.process_user)
                    kernels.append(k)
            elif prev is not None and name in prev_servers:
                servers.append(prev_servers[name])
                kernels += [k for k in prev.kernels if k.server == name]
            else:
                waiting.append(name)
        kernels.sort(key=fleet_order)
        if prev is not None:
            snap = dataclasses.replace(prev, servers=tuple(servers), kernels=tuple(kernels))
        else:
            settings = getattr(self._fleet if self._fleet is not None else self._source, "settings", None)
            snap = Snapshot(generated_at=_now(), servers=tuple(servers), kernels=tuple(kernels),
                            idle_threshold=getattr(settings, "orphan_idle", 3600.0))
        return snap, tuple(waiting)

    def prefetch(self) -> None:
        """Start the first read now (before the screen exists); the next read gets it. Its
        servers are read at once (or the child's read is followed); the host is sampled once
        ``screen_shown`` is called (or SCREEN_WAIT has passed)."""
        if self._pending is None:
            first, self._first = self._first, None  # the job owns it from here
            self._pending = self._start(self._after_screen, first)

    def arrived(self) -> Optional[Read]:
        """The newest read of the prefetched job that has arrived so far (never waits)."""
        job = self._pending
        if job is None:
            return None
        with job._lock:
            return job.items[-1] if job.items else None

    def waiting_names(self) -> tuple[str, ...]:
        """Every server of the fleet (before any answer: all of them are waited for); of a
        fleet not opened yet, those known before (never opened for this)."""
        fleet = self._fleet if self._fleet is not None else self._source
        return tuple(getattr(fleet, "names", ()) or ())

    async def reads(self):
        """The reads of one refresh as they come: partial ones (each server as it answers,
        superseded ones skipped), then the whole one, last."""
        job, self._pending = self._pending, None
        job = job or self._start()
        seen = 0
        while True:
            seen, item = await job.latest_after(seen)
            if item is None:
                return
            yield item
            if not item.partial:
                return

    async def read(self) -> Read:
        """The whole read: snapshot, rows by key, and (once the table said its layout) their cells."""
        last = None
        async for item in self.reads():
            last = item
        assert last is not None
        return last

    async def snapshot(self) -> Snapshot:
        return (await self.read()).snapshot

    async def _shutdown(self, limit: float) -> None:
        """On the runner's loop, at quit: every task still running ends first (cancelled and
        waited for), then the fleet closes its clients."""
        await _cancel_all(limit)
        aclose = getattr(self._fleet, "aclose", None)  # a fleet never opened has nothing to close
        if aclose is not None:
            await aclose()
        await self._loop.shutdown_asyncgens()

    def close(self, timeout: float = 3.0) -> None:
        try:
            self._stop(timeout)
        finally:
            first, self._first = self._first, None  # a child's read nobody took: ended, reaped
            if first is not None:
                first.close()

    def _stop(self, timeout: float) -> None:
        if not self._loop.is_running():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(timeout / 2), self._loop).result(timeout)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._loop.close()


async def _cancel_all(limit: float) -> None:
    """Cancel every other task of this loop (a read in flight, its servers' requests) and
    wait for them, up to ``limit`` seconds: a task left pending when the loop closes, or an
    error nobody read, is what asyncio prints at exit ("Task was destroyed but it is
    pending", "exception was never retrieved")."""
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for t in tasks:
        t.cancel()
    if tasks:
        done, _ = await asyncio.wait(tasks, timeout=limit)
        for t in done:
            if not t.cancelled():
                t.exception()  # read: a read that failed on its way out says nothing


def _now():
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc)
