"""The fleet service: the one fleet, on the one event loop it runs on, for every front end.

A front end (the TUI, a CLI command, the exporter, the demo) builds one ``FleetService``
and does two things with it, from its own thread:

- **reads**: a stream per refresh, partial reads as each server answers (that server's
  kernels, with the usage of the last whole snapshot where there was one), then the whole
  snapshot (usage sampled, orphan rules applied), last. A hung server never holds back the
  others. What the front end wants of each read (the TUI's rows and cells) is made by the
  ``prepare`` hook it hands in, here, off its own thread;
- **actions**: ``act(fn)`` runs ``fn(fleet)`` on the service's loop, through the fleet that
  read the rows the front end shows (its HTTP clients live on this loop).

The fleet is opened on first use when the service is handed an ``OpenOnce`` (`nbtui` draws
its screen before httpx, psutil and discovery are loaded), and the first read may be begun
in a child process forked as `nbtui` starts (nbtui.service.forked_read): its answers are
the first partial reads, invisible as such to the front end.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import datetime as dt
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Generic, Optional, Protocol, Sequence, TypeVar

from nbtui.core.model import Kernel, ServerInfo, Snapshot, in_fleet_order

if TYPE_CHECKING:
    from nbtui.service.forked_read import ForkedRead

T = TypeVar("T")
R = TypeVar("R")

# On a read after the first, partial reads are handed on only once the read has taken this
# long (a slow or hung server); a quick read hands on its whole snapshot at once.
PARTIAL_AFTER = 0.5
# Partial readings of a refresh are handed on at most this often (the first at once): servers
# answering meanwhile join the next one, or the whole reading. (The first read hands on each.)
PARTIAL_EVERY = 0.25
# Once a server of a read has answered, one that has not answered this long after the
# latest answer is not waited for: its read goes on at its own pace (Fleet.snapshot's
# hold_back), the read ends with that server's last answer, and the next refresh starts on
# time, so a hung server never holds back the others' refreshes.
HOLD_BACK = 1.0
# The read begun before the screen exists (prefetch) samples the host once the front end
# says it has painted, or this long after it began: the process scan and NVML's start would
# otherwise take the CPU (and the GIL) from the screen's start.
SCREEN_WAIT = 2.0

OnServer = Callable[[ServerInfo, list[Kernel]], None]


class Readable(Protocol):
    """What the service reads: a ``nbtui.service.fleet.Fleet``, or a stand-in of the same
    shape (a recorded snapshot in tests)."""

    @property
    def names(self) -> Sequence[str]: ...

    async def snapshot(self, on_server: Optional[OnServer] = None, *, hold_back: Optional[float] = None,
                       usage_after: Optional[Callable[[], Awaitable[Any]]] = None) -> Snapshot: ...


THREAD_NAME = "nbtui-fleet"  # the fleet service's thread, as Python and the OS name it


def _run_named(loop: asyncio.AbstractEventLoop) -> None:
    """The service's loop, its thread named for ``top -H`` and ``ps -L`` too: an admin sees
    what of nbtui's CPU is the fleet's reads and what the screen's (Python names only its own
    record of a thread before 3.14; Linux takes the name from /proc, elsewhere nothing). The
    threads it starts (``asyncio.to_thread``'s workers: the process scan, discovery) are
    named after it by Linux: the fleet's work too."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as f:
            f.write(THREAD_NAME)
    except OSError:
        pass
    loop.run_forever()


class OpenOnce:
    """A fleet opened on its first use, once, from any thread (``open_()`` builds it).
    ``names`` and ``settings`` are known before: the servers waited for at first (the
    configured ones) and the fleet's settings."""

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


@dataclass(frozen=True)
class Reading:
    """One read as the service hands it to ``prepare``."""

    snapshot: Snapshot
    waiting: tuple[str, ...] = ()  # servers that have not answered (a first read in progress)
    partial: bool = False  # more of this read is coming


class _Job(Generic[R]):
    """One read in flight: partial reads as servers answer, then the whole one. Filled on
    the service's thread, read on the front end's loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[R] = []
        self.done = False
        self.error: Optional[BaseException] = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def put(self, item: Optional[R] = None, *, done: bool = False, error: Optional[BaseException] = None) -> None:
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

    def newest(self) -> Optional[R]:
        with self._lock:
            return self.items[-1] if self.items else None

    async def latest_after(self, seen: int) -> tuple[int, Optional[R]]:
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
                loop = asyncio.get_running_loop()
                fut: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, fut))
            await fut


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _as_reading(r: Reading) -> Any:
    return r


class FleetService(Generic[R]):
    """The one fleet and its loop (a thread of its own); see the module's docstring.

    ``fleet``: a fleet, or an ``OpenOnce`` (opened on first use); ``first``: the first
    read, begun in a child process; ``prepare``: what each read becomes for the front end,
    made on the service's thread; ``readonly``: set on the fleet before anything can act
    through it; ``partials``: hand on partial reads as servers answer (the TUI), or only whole
    ones (the exporter); ``hold_back``: how long a refresh waits for a server once another has
    answered (None: each server is waited for, up to its own timeout)."""

    def __init__(self, fleet: Any, *, first: Optional["ForkedRead"] = None,
                 prepare: Callable[[Reading], R] = _as_reading, readonly: Optional[bool] = None,
                 partials: bool = True, hold_back: Optional[float] = HOLD_BACK):
        self._source = fleet
        self._fleet: Any = None
        self._readonly = readonly
        if not isinstance(fleet, OpenOnce):
            self._adopt(fleet)
        self._first = first
        self._prepare = prepare
        self._partials = partials
        self._hold_back = hold_back
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=_run_named, args=(self._loop,), name=THREAD_NAME, daemon=True)
        self._thread.start()
        self._pending: Optional[_Job[R]] = None
        self._last: Optional[Snapshot] = None  # the last whole snapshot
        self._shown = asyncio.Event()  # set on the service's loop once the front end has painted

    def _adopt(self, fleet: Any) -> None:
        if self._readonly is not None:
            fleet.readonly = self._readonly  # the one gate: nbtui.service.actions' require_writable reads it
        if hasattr(fleet, "reads_again"):  # a Fleet: a service reads it on and on
            fleet.reads_again = True
        self._fleet = fleet

    @property
    def fleet(self) -> Any:
        """The one fleet (opened here on first use, from any thread, when the service was
        handed an OpenOnce)."""
        if self._fleet is None:
            self._adopt(self._source())
        return self._fleet

    def read_whole_next(self) -> None:
        """Each server's next read asks it for everything, whatever the pace of its asks
        (``Fleet.read_whole_next``, run on the service's loop: from any thread). A fleet not
        opened yet has nothing paced to ask."""
        fleet = self._fleet
        if fleet is None or not hasattr(fleet, "read_whole_next") or self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(fleet.read_whole_next)

    @property
    def readonly(self) -> Optional[bool]:
        return self._readonly

    @readonly.setter
    def readonly(self, value: bool) -> None:
        """--readonly: set on the fleet now, or as it opens (before anything can act through it)."""
        self._readonly = value
        if self._fleet is not None:
            self._fleet.readonly = value

    @property
    def opened(self) -> bool:
        return self._fleet is not None

    @property
    def settings(self) -> Any:
        return getattr(self._fleet if self._fleet is not None else self._source, "settings", None)

    # -- actions -------------------------------------------------------------------------

    def submit(self, fn: Callable[[Any], Awaitable[T]]) -> "concurrent.futures.Future[T]":
        """Run ``fn(fleet)`` on the service's loop (from any thread)."""
        async def call() -> T:
            return await fn(self.fleet)

        return asyncio.run_coroutine_threadsafe(call(), self._loop)

    async def act(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """``fn(fleet)`` on the service's loop, awaited from the caller's loop: every action
        of a front end goes through the fleet that read its rows."""
        return await asyncio.wrap_future(self.submit(fn))

    def run(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """``fn(fleet)`` on the service's loop, waited for here (a command's one action)."""
        return self.submit(fn).result()

    # -- reads ---------------------------------------------------------------------------

    def screen_shown(self) -> None:
        """The front end has painted (any thread): the prefetched read may sample the host."""
        try:
            self._loop.call_soon_threadsafe(self._shown.set)
        except RuntimeError:  # closed
            pass

    async def _after_screen(self) -> None:
        try:
            await asyncio.wait_for(self._shown.wait(), SCREEN_WAIT)
        except asyncio.TimeoutError:
            pass

    def _start(self, usage_after: Optional[Callable[[], Awaitable[Any]]] = None,
               first: Optional["ForkedRead"] = None) -> _Job[R]:
        job: _Job[R] = _Job()
        reading = self._read(job, usage_after, first)
        try:
            asyncio.run_coroutine_threadsafe(reading, self._loop)
        except RuntimeError:  # the service has closed (a refresh asked for while quitting)
            reading.close()
            job.put(done=True, error=RuntimeError("the fleet service has stopped"))
        return job

    def _hand_on(self, job: _Job[R], reading: Reading, *, done: bool = False) -> None:
        job.put(self._prepare(reading), done=done)

    async def _read(self, job: _Job[R], usage_after: Optional[Callable[[], Awaitable[Any]]] = None,
                    first: Optional["ForkedRead"] = None) -> None:
        """``first``: a child's read (nbtui.service.forked_read), this read's first answers."""
        prev = self._last
        names = list(self.waiting_names())
        answered: dict[str, tuple[ServerInfo, list[Kernel]]] = {}
        own: set[str] = set()  # servers this process's read has answered (the child's answer is superseded)
        opened, final = prev is None, False
        emitted_at = -PARTIAL_EVERY  # (loop time) the last partial handed on
        later: Optional[asyncio.Handle] = None  # the next one, waiting to go

        def emit() -> None:
            """A partial reading now, or PARTIAL_EVERY after the last one: each is a whole
            table's rows and cells, so one per answering server made a 20-server refresh that
            ran past PARTIAL_AFTER build the table up to 20 times over."""
            nonlocal later
            if final or not answered or later is not None:
                return
            if prev is None:  # the first read: each server's rows as it answers (the first paint)
                emit_now()
                return
            wait = emitted_at + PARTIAL_EVERY - self._loop.time()
            # (at once: after this turn of the loop, with every answer delivered in it)
            later = self._loop.call_later(wait, emit_now) if wait > 0 else self._loop.call_soon(emit_now)

        def emit_now() -> None:
            nonlocal emitted_at, later
            later = None
            if final or not answered:
                return
            emitted_at = self._loop.time()
            snap, waiting = self._partial(prev, answered, names)
            self._hand_on(job, Reading(snap, waiting, partial=True))

        def on_server(info: ServerInfo, kernels: list[Kernel]) -> None:
            own.add(info.name)
            answered[info.name] = (info, list(kernels))
            if opened:
                emit()

        def from_child(frame: tuple[Any, ...]) -> None:
            if frame[0] == "names" and self._fleet is None:
                names[:] = [n for n in frame[1] if isinstance(n, str)]
            elif frame[0] == "server" and frame[1].name not in own:
                answered[frame[1].name] = (frame[1], list(frame[2]))
                emit()

        def open_partials() -> None:
            nonlocal opened
            opened = True
            emit()

        timer = None if prev is None else self._loop.call_later(PARTIAL_AFTER, open_partials)
        try:
            if first is not None:
                self._follow(first, from_child)
                if usage_after is not None:  # the fleet opens (httpx, psutil…) once the screen is drawn
                    await usage_after()
                    usage_after = None
            fleet: Readable = self.fleet
            names[:] = list(fleet.names)
            snap = await fleet.snapshot(on_server if self._partials else None, hold_back=self._hold_back,
                                        usage_after=usage_after)
            final = True
            # servers whose read goes on (their last answer, if any, is in the snapshot)
            still = tuple(getattr(fleet, "still_reading", ()) or ())
            if first is not None:  # ended before the whole read is out; what only it had read stays
                self._unfollow(first)
                kept = {n: answered[n] for n in still if n in answered and n not in own}
                if kept:  # (no hub with a child's read: every server of snap is in names)
                    snap = self._partial(snap, kept, names)[0]
                    still = tuple(n for n in still if n not in kept)
            self._last = snap
            self._hand_on(job, Reading(snap, still), done=True)
        except BaseException as e:  # the front end says why in one line
            final = True
            job.put(done=True, error=e if isinstance(e, Exception) else RuntimeError("read cancelled"))
        finally:
            if timer is not None:
                timer.cancel()
            if later is not None:
                later.cancel()
            if first is not None:
                self._unfollow(first)

    def _follow(self, first: "ForkedRead", deliver: Callable[[tuple[Any, ...]], None]) -> None:
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

    def _partial(self, prev: Optional[Snapshot], answered: dict[str, tuple[ServerInfo, list[Kernel]]],
                 names: list[str]) -> tuple[Snapshot, tuple[str, ...]]:
        """A snapshot of what has answered so far: their kernels (with the last whole
        snapshot's usage and orphan reasons, where it had them), and the last snapshot's
        servers and kernels for the rest; the names of servers never read yet."""
        prev_servers = {s.name: s for s in prev.servers} if prev else {}
        prev_kernels = {k.key: k for k in prev.kernels} if prev else {}
        servers: list[ServerInfo] = []
        kernels: list[Kernel] = []
        waiting: list[str] = []
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
                    if was is not None and was is not k:  # (the very kernel, unchanged: nbtui.jupyter.join)
                        k = dataclasses.replace(k, usage=was.usage, orphan_reasons=was.orphan_reasons, user=was.user,
                                                process_user=was.process_user)
                    kernels.append(k)
            elif prev is not None and name in prev_servers:
                servers.append(prev_servers[name])
                kernels += [k for k in prev.kernels if k.server == name]
            else:
                waiting.append(name)
        kernels = in_fleet_order(kernels)
        if prev is not None:
            snap = dataclasses.replace(prev, servers=tuple(servers), kernels=tuple(kernels))
        else:
            snap = Snapshot(generated_at=dt.datetime.now(dt.timezone.utc), servers=tuple(servers),
                            kernels=tuple(kernels), idle_threshold=getattr(self.settings, "orphan_idle", 3600.0))
        return snap, tuple(waiting)

    def prefetch(self) -> None:
        """Start the first read now (before the front end has painted); the next read gets
        it. Its servers are read at once (or the child's read is followed); the host is
        sampled once ``screen_shown`` is called (or SCREEN_WAIT has passed)."""
        if self._pending is None:
            first, self._first = self._first, None  # the job owns it from here
            self._pending = self._start(self._after_screen, first)

    def arrived(self) -> Optional[R]:
        """The newest read of the prefetched job that has arrived so far (never waits)."""
        job = self._pending
        return job.newest() if job is not None else None

    def waiting_names(self) -> tuple[str, ...]:
        """Every server of the fleet (before any answer: all of them are waited for); of a
        fleet not opened yet, those known before (never opened for this)."""
        fleet = self._fleet if self._fleet is not None else self._source
        return tuple(getattr(fleet, "names", ()) or ())

    async def reads(self) -> AsyncIterator[R]:
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
            if not getattr(item, "partial", False):
                return

    async def read(self) -> R:
        """The whole read of one refresh."""
        last: Optional[R] = None
        async for item in self.reads():
            last = item
        assert last is not None
        return last

    # -- the end -------------------------------------------------------------------------

    async def _shutdown(self, limit: float) -> None:
        """On the service's loop, at quit: every task still running ends first (cancelled and
        waited for), then the fleet closes its clients."""
        await _cancel_all(limit)
        aclose = getattr(self._fleet, "aclose", None)  # a fleet never opened has nothing to close
        if aclose is not None:
            await aclose()
        await self._loop.shutdown_asyncgens()

    def close(self, timeout: float = 3.0) -> bool:
        """Stop within ``timeout`` seconds as a whole (work still running is cancelled, then
        the fleet's clients close); whether the service's thread ended in that time."""
        try:
            return self._stop(timeout)
        finally:
            first, self._first = self._first, None  # a child's read nobody took: ended, reaped
            if first is not None:
                first.close()

    def __enter__(self) -> "FleetService[R]":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _stop(self, timeout: float) -> bool:
        if not self._loop.is_running():
            return not self._thread.is_alive()
        deadline = time.monotonic() + timeout
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(timeout / 2), self._loop).result(timeout)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            return False
        self._loop.close()
        return True


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
