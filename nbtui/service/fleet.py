"""Reads every server concurrently and merges what it learns into one immutable Snapshot.

A server that is down, hung or refusing the token costs at most its own timeout and
never holds back the others: each server's read is bounded on its own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Mapping, Optional, Sequence, TypeVar

from nbtui.core import holders, model, orphans
from nbtui.files.config import Config, ServerConfig, Settings
from nbtui.host import wire
from nbtui.jupyter.own import OwnConnections
from nbtui.jupyter.capped import CappedKernels, OverCap
from nbtui.jupyter.notebooks import NotebookChecks
from nbtui.jupyter.discovery import Discovery, discover_host, is_same_server_url, pid_alive
from nbtui.jupyter.join import SaidSession, join_kernels, sessions_of, terminals_of
from nbtui.jupyter.rest import STATUS_OF_KIND, Listing, ServerClient, ServerError, deadline, is_loopback, server_token
from nbtui.files.secrets import redact
from nbtui.service.sources import source_for
from nbtui.sources import HostSample, HostView

if TYPE_CHECKING:  # (imported where a hub is configured: a fleet of plain servers, the first read's, loads neither)
    from nbtui.files.probe_memory import ProbeMemory
    from nbtui.jupyter.hub import HubSource

_STATUS_OF_KIND = STATUS_OF_KIND


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


TIMEOUT_KIND = "timeout"
_T = TypeVar("_T")


async def _timed(work: Awaitable[_T]) -> tuple[_T, float]:
    t0 = time.perf_counter()
    got = await work
    return got, (time.perf_counter() - t0) * 1000


async def _lists(client: ServerClient, capped: Optional[CappedKernels], digest: bool,
                 known: Optional[frozenset[str]] = None,
                 last: Optional[int] = None) -> tuple[list | Listing, Optional[list | Listing], float]:
    """``(kernels, sessions, latency_ms)`` of one server: both answers at once, not yet
    parsed (``Listing``, with their digests if asked), or with a cap one item at a time, the
    kernels first (the sessions kept are the kept kernels'). With ``known`` (a fleet that
    reads again, between its asks of /api/sessions: the kernel ids listed beside the last),
    the kernels alone, and the sessions (None: not asked) only where a kernel is new to them;
    kernels said as last time (``last``: that answer's digest) are new to none."""
    if known is not None and capped is None:
        kernels, latency = await _timed(client.kernels_listing(digest))
        if last is not None and kernels.digest == last:
            return kernels, None, latency
        listed = kernels.parse()
        parsed = Listing(kernels.digest, lambda: listed)
        if all(k["id"] in known for k in listed):
            return parsed, None, latency
        return parsed, await client.sessions_listing(digest), latency
    if capped is None:
        (kernels, latency), sessions = await all_or_none([_timed(client.kernels_listing(digest)),
                                                           client.sessions_listing(digest)])
        return kernels, sessions, latency
    t0 = time.perf_counter()
    await client.stream_list("api/kernels", capped.add)
    latency = (time.perf_counter() - t0) * 1000
    await client.stream_list("api/sessions", capped.add_session)
    return capped.kept(), capped.sessions, latency


@dataclass
class _Server:
    config: ServerConfig
    client: Optional[ServerClient] = None
    version: Optional[str] = None
    setup_error: Optional[ServerError] = None
    # The nbtui server extension (usage of kernels on the server's host): the last answer,
    # why there is none, and when to ask again after it was absent or failed.
    ext_result: Optional[tuple] = None
    ext_note: Optional[str] = None
    ext_retry_at: float = 0.0
    ext_extra: Optional[wire.Extra] = None  # terminals, owners and ledgers from the extension
    ext_task: Optional[asyncio.Future] = None  # its extension read in flight (a refresh waits hold_back for it)
    terminals: tuple[model.Terminal, ...] = ()  # rows of the last read
    terminal_note: Optional[str] = None  # why its terminals are unknown
    # A server read again: the digests of its last answers the fleet made rows of
    # (ServerClient.listing), and what it made of them; the same answers again are not parsed.
    lists_digests: Optional[tuple[int, int]] = None  # /api/kernels, /api/sessions
    # its kernels, in the server's order: each one's key and the digest of what was said of it
    # (the kernel the fleet holds under that key may be older: a read that outlasted a refresh)
    lists_made: tuple[tuple[str, int], ...] = ()
    terminals_digest: Optional[int] = None
    terminals_made: tuple[model.Terminal, ...] = ()
    # A fleet that reads again asks /api/sessions and /api/terminals once their last answer is
    # PACED_MAX_AGE old, and /api/sessions at once where /api/kernels names a kernel the last
    # ask did not list: each kernel's session as that ask said it, the kernel ids listed
    # beside it, its digest, when (monotonic), and whether it found new kernels (asked again at
    # the next read: a kernel listed before its session was made).
    sessions: Optional[dict[str, SaidSession]] = None
    sessions_ids: frozenset[str] = frozenset()
    sessions_digest: Optional[int] = None
    sessions_at: float = 0.0
    sessions_soon: bool = False
    terminals_at: float = 0.0
    whole_next: bool = False  # its next read asks everything (``Fleet.read_whole_next``)
    # Probes kept for the server's lifetime (``_forget_probes``: a read that fails as a whole,
    # since the server may come back as another process): its version was asked, and it
    # has no terminals (the extension's absence: ``ext_retry_at`` is then infinite).
    version_asked: bool = False
    terminals_off: bool = False
    # notebook-missing checks of this server still running from an earlier read
    nb_task: Optional[asyncio.Future] = None
    nb_limit: Optional[asyncio.Semaphore] = None
    nb_deadline: float = 0.0  # (monotonic) until when a one-shot read waits for them
    # A server a source listed (a hub's user's server, nbtui.jupyter.hub): the source's name
    # and its facts for ServerInfo.
    hub: Optional[str] = None
    extra: dict = field(default_factory=dict)
    probe_key: Optional[str] = None  # a hub's server: its probes' key in ProbeMemory (its process)

    def leave(self) -> Optional[ServerClient]:
        """This entry leaves the fleet: its notebook checks stop (they would ask a server no
        longer the fleet's); returns its client, to be closed."""
        if self.nb_task is not None:
            self.nb_task.cancel()
        return self.client


def merge_servers(configured: Iterable[ServerConfig], found: Discovery | None) -> list[ServerConfig]:
    """Configured servers plus discovered ones that are not configured already."""
    out = list(configured)
    if found:
        for d in found.servers:
            match = next((c for c in out if is_same_server_url(c.url, d.url)), None)
            if match is None:
                out.append(d)
            elif match.source == "config" and match.pid is None:
                # Known from both: keep the user's name, learn the local PID.
                out[out.index(match)] = replace(match, pid=d.pid, root_dir=d.root_dir)
    return out


async def all_or_none(calls: list[Awaitable[Any]]) -> list[Any]:
    """``gather``, except that the first failure stops the other requests of the read: a
    server whose one answer is over the cap or broken is not read on in the background."""
    tasks = [asyncio.ensure_future(c) for c in calls]
    try:
        return await asyncio.gather(*tasks)
    finally:
        # A failure's traceback holds this frame: were its tasks (one holds the failure) still
        # here, a cycle would keep the refused answer (up to max_body) for the cycle collector.
        _cancel_pending(tasks)
        tasks.clear()


def _cancel_pending(tasks: Iterable["asyncio.Future[Any]"]) -> None:
    for t in tasks:
        if not t.done():
            t.cancel()


class FleetHooks:
    """How a front end customises the fleet's reads: public hooks, each doing nothing here.
    The exporter keeps at most a cap of kernels per server and times each server's read
    (nbtui.exporter.metrics.ExporterHooks); the demo shows its server as starting while it
    starts."""

    def kernel_cap(self, server: str) -> Optional[int]:
        """How many kernels of a server's read the fleet keeps (usage, notebook checks, orphan
        rules, the snapshot): all (None), or at most this many, read so that memory follows
        the cap, not the server (nbtui.jupyter.capped)."""
        return None

    def counted_over_cap(self, server: str, over: Optional[OverCap]) -> None:
        """What a capped read of ``server`` counted and dropped (None: nothing)."""

    def server_read(self, server: str, seconds: float) -> None:
        """A server's read took ``seconds`` (ended, answered or not)."""

    def failed(self, info: model.ServerInfo) -> model.ServerInfo:
        """The row of a server whose read failed, as the front end shows it."""
        return info


class Fleet:
    """Keeps one client per server and produces snapshots on demand."""

    def __init__(
        self,
        servers: list[ServerConfig],
        settings: Settings | None = None,
        *,
        stale_files: tuple[str, ...] = (),
        host: HostView | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        hooks: Optional[FleetHooks] = None,
    ):
        self.settings = settings or Settings()
        self.hooks = hooks or FleetHooks()
        self.stale_files = stale_files
        self.untrusted_files: tuple[str, ...] = ()  # other users' runtime files discovery did not trust
        self.host = host
        self.clock = clock
        self.readonly = False  # --readonly: nbtui.service.actions.require_writable refuses every action
        self.acting = False  # reads for an action on a TARGET: a proxied server is read even within proxy_interval
        # Who this fleet's reads through a hub's proxy are recorded as, for every nbtui of this
        # user (nbtui.jupyter.proxy_reads); None: recorded nowhere (servers test spends no budget).
        self.proxy_reader: Optional[str] = "nbtui"
        self.connections = OwnConnections()  # nbtui's own kernel connections, through any of its clients
        # Whether reads learn if sessions' notebooks exist (the orphan rule notebook-missing):
        # off for a command that shows no orphan reasons (exec, migrate, rebind, servers), which
        # then neither sends those requests nor waits for them.
        self.checks_notebooks = True
        # Entries a source reads (a hub: its users' servers), by name; the rest are servers.
        self._sources = {s.name: source for s in servers
                         if (source := source_for(s, self.settings.timeout)) is not None}
        self._servers = {s.name: _Server(s) for s in servers if s.name not in self._sources}
        self.notebooks = NotebookChecks()  # notebook-missing, a listing per folder at most once a minute
        self._settled_once = False  # a snapshot has waited for (or gone without) the notebook checks
        self.gpu_idle = orphans.GpuIdleTracker(self.settings.orphan_gpu_idle)  # gpu-idle needs history
        # snapshot(hold_back=...): reads that outlived their snapshot, each server's last
        # answer (info, kernels, terminals), and the servers the last snapshot went on without.
        self._reading: dict[str, asyncio.Future] = {}
        self._last_read: dict[str, tuple] = {}
        self.still_reading: tuple[str, ...] = ()
        self._probes: Optional[ProbeMemory] = None  # a hub's servers' probes across runs (opened with a hub)
        # Whether the fleet reads again (the TUI, the exporter: set by the fleet service), not
        # once (a command). Such a fleet keeps each kernel its server says the same of from its
        # first read to the next (nbtui.jupyter.join; others from their second snapshot on),
        # and a first notebook check lists the folders' parents too (NotebookChecks' stamps).
        self.reads_again = False
        self._reads = 0  # snapshots begun
        # Servers read at once (None: all). The exporter reads few at a time: 50 servers' answers
        # parsed together left ~90 MB of arenas behind each refresh (a server slower than
        # READ_GATE_HOLD gives its place up, so a hung one holds the others back no longer).
        self.read_concurrency: Optional[int] = None
        self._read_gate: Optional[asyncio.Semaphore] = None
        self._kept: Optional[dict[str, model.Kernel]] = None  # the last snapshot's kernels by key

    @classmethod
    def from_config(cls, config: Config, *, discover_local: bool = True, only: Iterable[str] = (),
                    host: HostView | None = None, stale_files: bool = True) -> "Fleet":
        """``stale_files``: whether to look for runtime files left behind (a scan of every
        process where kernel connection files lie about); a fleet whose snapshots nobody
        shows (the forked first read's) goes without."""
        found = discover_host() if discover_local and config.settings.discover else None
        servers = [_with_process(s) if s.source == "discovered" else s
                   for s in merge_servers(config.servers.values(), found)]
        only = list(only)
        if only:
            servers = [s for s in servers if s.name in only]
        fleet = cls(servers, config.settings, stale_files=_stale_files(found) if stale_files else (), host=host)
        fleet.untrusted_files = found.untrusted if found else ()
        return fleet

    @property
    def names(self) -> list[str]:
        """Configured and discovered servers and hubs (not the hubs' users' servers)."""
        return [n for n, e in self._servers.items() if e.hub is None] + list(self._sources)

    def config_of(self, name: str) -> ServerConfig:
        if name in self._sources:
            return self._sources[name].config
        return self._entry(name).config

    def hub_of(self, name: str) -> HubSource:
        """The HubSource of hub ``name`` (KeyError if it is none)."""
        from nbtui.jupyter.hub import HubSource
        source = self._sources[name]
        if not isinstance(source, HubSource):
            raise KeyError(name)
        return source

    def copy(self, *, only: Optional[Iterable[str]] = None, hooks: Optional[FleetHooks] = None) -> "Fleet":
        """A fleet of the same servers (or ``only`` these), settings, host view, files and
        flags, not read yet, with ``hooks`` (else these): the one way a fleet is copied."""
        names = list(dict.fromkeys(only)) if only is not None else self.names
        fleet = Fleet([self.config_of(n) for n in names], self.settings, stale_files=self.stale_files,
                      host=self.host, clock=self.clock, hooks=hooks or self.hooks)
        fleet.untrusted_files, fleet.readonly = self.untrusted_files, self.readonly
        fleet.acting, fleet.proxy_reader = self.acting, self.proxy_reader
        fleet.checks_notebooks = self.checks_notebooks
        fleet.read_concurrency = self.read_concurrency
        return fleet

    def _entry(self, name: str) -> _Server:
        """A server's entry; a server a source listed is taken on at first use."""
        entry = self._servers.get(name)
        if entry is not None:
            return entry
        source = name.partition("/")[0]
        listed = self._sources[source].listed(name) if source in self._sources else None
        if listed is None:
            raise KeyError(name)
        entry = self._servers[name] = _Server(listed.config, hub=source, extra=listed.extra())
        return entry

    def client(self, name: str) -> ServerClient:
        """The server's client, created on first use (raises ServerError if it cannot be)."""
        entry = self._entry(name)
        if entry.client is None:
            c = entry.config
            token = server_token(c)
            entry.client = ServerClient(
                c.name, c.url, token,
                timeout=c.timeout or self.settings.timeout,
                ca_bundle=c.ca_bundle, insecure_http=c.insecure_http,
                max_body=self.settings.max_body,
                transport=self._sources[entry.hub].transport() if entry.hub else None,
                no_track_activity=entry.hub is not None,
                connections=self.connections,
            )
        return entry.client

    async def aclient(self, name: str) -> ServerClient:
        """``client(name)``, with a token command run off the event loop under the server's
        own deadline: a slow `--token-cmd` delays only its server, never the others."""
        entry = self._servers[name]
        if entry.client is None and entry.config.token_source == "cmd" and not entry.config.token:
            c = entry.config
            timeout = c.timeout or self.settings.timeout
            try:
                token = await asyncio.wait_for(asyncio.to_thread(server_token, c, timeout), timeout + 0.25)
            except asyncio.TimeoutError:
                raise ServerError(c.name, "token", f"token command took over {timeout:g} s") from None
            if entry.client is None:
                entry.config = replace(c, token=token)
                try:
                    return self.client(name)
                finally:
                    entry.config = c
        return self.client(name)

    async def aclose(self) -> None:
        reading, self._reading = list(self._reading.values()), {}
        for t in reading:
            t.cancel()
        await asyncio.gather(*reading, return_exceptions=True)
        checks = [s.nb_task for s in self._servers.values() if s.nb_task is not None and not s.nb_task.done()]
        for t in checks:
            t.cancel()
        await asyncio.gather(*checks, return_exceptions=True)  # ended before their clients close under them
        await asyncio.gather(*(s.client.aclose() for s in self._servers.values() if s.client), return_exceptions=True)
        for s in self._servers.values():
            s.client = None
        await asyncio.gather(*(h.aclose() for h in self._sources.values()), return_exceptions=True)

    async def __aenter__(self) -> "Fleet":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- reading -------------------------------------------------------------------------

    def _info(self, entry: _Server, **kw: Any) -> model.ServerInfo:
        c = entry.config
        local = c.pid is not None or is_loopback(c.url)
        return model.ServerInfo(
            name=c.name, url=c.url, source=c.source, version=entry.version,
            pid=c.pid, root_dir=c.root_dir, owner=c.owner, local=local, **{**entry.extra, **kw},
        )

    async def _read_one(self, entry: _Server, now: dt.datetime) -> tuple[model.ServerInfo, list[model.Kernel]]:
        t0 = time.monotonic()
        try:
            if entry.hub is not None:  # a source's server: its pacing, limits and fallbacks
                return await self._sources[entry.hub].read_listed(self, entry.config.name, now)
            return await self._read_server(entry, now)
        finally:
            self.hooks.server_read(entry.config.name, time.monotonic() - t0)

    # -- what a server source may call (nbtui.sources.ServerReader) --------------------------

    def server_info(self, name: str, **fields: Any) -> model.ServerInfo:
        return self._info(self._entry(name), **fields)

    async def read_server(self, name: str, now: dt.datetime) -> tuple[model.ServerInfo, list[model.Kernel]]:
        return await self._read_server(self._entry(name), now)

    async def rebind(self, name: str, config: ServerConfig, extra: Mapping[str, Any]) -> None:
        entry = self._entry(name)
        client, entry.client = entry.client, None
        entry.config, entry.extra = config, dict(extra)
        entry.lists_digests = entry.terminals_digest = None
        entry.lists_made, entry.terminals_made = (), ()
        if client is not None:
            await client.aclose()

    # -- hubs (nbtui.jupyter.hub lists their users' servers; the fleet keeps an entry for each) --

    async def _expand_hubs(self) -> list[model.ServerInfo]:
        """List every hub, then make the fleet's servers match: one entry per user's server
        (kept across reads, so its client and sockets stay), none for servers gone. A server
        both reached through a hub and discovered locally is kept once, under the hub's name.
        Returns the hubs' own rows."""
        from nbtui.files.probe_memory import probe_key
        hubs = list(self._sources.values())
        results = await asyncio.gather(*(h.read() for h in hubs))
        rows, closing = [], []
        pids, urls = set(), []
        for hub, (row, children) in zip(hubs, results):
            rows.append(model.ServerInfo(**row))
            names = {c.config.name for c in children}
            for name, e in list(self._servers.items()):
                if e.hub == hub.name and name not in names:
                    closing.append(self._remove(name))
            for c in children:
                known = self._servers.get(c.config.name)
                if known is not None and known.hub != hub.name:
                    continue  # a configured server of that very name wins (names cannot hold "/")
                extra = c.extra()
                key = probe_key(hub.name, c.config.url, extra.get("started"))
                if known is None or known.config.url != c.config.url:
                    if known is not None:
                        closing.append(known.leave())
                    known = self._servers[c.config.name] = _Server(c.config, hub=hub.name)
                    self._recall_probes(known, key)
                elif key != known.probe_key:  # the hub says it started again: another process, probed anew
                    self._forget_probes(known)
                    self._recall_probes(known, key)
                if known.client is not None and known.client.token != c.config.token:
                    closing.append(known.client)  # a token minted anew (nbtui.jupyter.hubtokens)
                    known.client = None
                known.config = c.config
                known.extra = extra
                if c.pid is not None:
                    pids.add(c.pid)
                urls.append(c.config.url)
        for name, e in list(self._servers.items()):
            if e.hub is None and e.config.source == "discovered" and (
                    (e.config.pid is not None and e.config.pid in pids)
                    or any(is_same_server_url(e.config.url, u) for u in urls)):
                closing.append(self._remove(name))
        await asyncio.gather(*(c.aclose() for c in closing if c is not None), return_exceptions=True)
        return rows

    async def _read_server(self, entry: _Server, now: dt.datetime) -> tuple[model.ServerInfo, list[model.Kernel]]:
        if self.read_concurrency is None:
            return await self._read_server_now(entry, now)
        if self._read_gate is None:
            self._read_gate = asyncio.Semaphore(self.read_concurrency)
        gate = self._read_gate
        await gate.acquire()
        task = asyncio.ensure_future(self._read_server_now(entry, now))
        try:
            await asyncio.wait({task}, timeout=READ_GATE_HOLD)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            gate.release()
        return await task

    async def _read_server_now(self, entry: _Server, now: dt.datetime) -> tuple[model.ServerInfo, list[model.Kernel]]:
        name = entry.config.name
        timeout = entry.config.timeout or self.settings.timeout
        entry.ext_result = None
        entry.ext_extra = None
        entry.terminals = ()
        # A server on another host: its usage comes from its extension, asked alongside.
        ext = None if self._info(entry).local else asyncio.ensure_future(self._read_extension(entry))
        try:
            client = await self.aclient(name)
            cap = self.hooks.kernel_cap(name)
            capped = None if cap is None else CappedKernels(cap, self.settings.orphan_idle, now)
            digest = self._kept is not None  # read again: an answer the same as the last is not parsed
            whole = not (digest and self.reads_again) or entry.whole_next or capped is not None
            entry.whole_next = False
            known = None
            if not whole and entry.sessions is not None and not entry.sessions_soon \
                    and time.monotonic() - entry.sessions_at < PACED_MAX_AGE:
                known = entry.sessions_ids
            last = entry.lists_digests[0] if entry.lists_digests is not None else None
            calls: list[Awaitable[Any]] = [_lists(client, capped, digest, known, last),
                                           self._read_terminals(entry, digest, skip=not whole)]
            if not entry.version_asked:
                calls.append(client.version())
            results = await deadline(all_or_none(calls), timeout + 0.25)
            raw_kernels, raw_sessions, latency = results[0]
            results[0] = None  # an answer's body goes once it is parsed (or not needed)
            digests: tuple[Optional[int], Optional[int]] = (None, None)
            if isinstance(raw_kernels, Listing):
                digests = raw_kernels.digest, (entry.sessions_digest if raw_sessions is None else
                                               raw_sessions.digest if isinstance(raw_sessions, Listing) else None)
            kept = self._unchanged(entry, digests)
            if kept is not None:
                raw_kernels = []
            elif isinstance(raw_kernels, Listing):
                raw_kernels = raw_kernels.parse()
            sessions: dict[str, SaidSession] = {}
            if raw_sessions is None:  # not asked: as the last ask said
                sessions = entry.sessions or {}
            elif kept is not None:  # both answers as last time: so are the sessions kept
                entry.sessions_at, entry.sessions_soon = time.monotonic(), False
            else:
                said = raw_sessions.parse() if isinstance(raw_sessions, Listing) else raw_sessions
                if not (digest and capped is None):
                    sessions = sessions_of(said)
                else:  # read again: kept until the next ask, only those of kernels listed
                    ids = frozenset(k["id"] for k in raw_kernels)
                    sessions = sessions_of(said, ids)
                    entry.sessions_soon = entry.sessions is not None and not ids <= entry.sessions_ids
                    entry.sessions, entry.sessions_ids = sessions, ids
                    entry.sessions_digest, entry.sessions_at = digests[1], time.monotonic()
                del said  # (the answer goes once it is made into sessions)
        except asyncio.TimeoutError:
            if ext:
                ext.cancel()
            self._forget_probes(entry)
            return self._info(entry, status=model.TIMEOUT, error_kind="timeout",
                              error=f"server {name}: timed out after {timeout:g} s"), []
        except ServerError as e:
            if ext:
                ext.cancel()
            self._forget_probes(entry)
            return self._failed(entry, e), []
        if ext:
            await ext
        if len(results) > 2:
            entry.version, entry.version_asked = results[2], True
        del results
        if kept is not None:
            kernels = kept
        else:
            entry.lists_digests = None
            try:
                kernels = join_kernels(name, raw_kernels, sessions, self._kept)
            except (TypeError, ValueError, AttributeError, KeyError):  # JSON of the wrong shapes
                return self._failed(entry, ServerError(name, "not-jupyter", "answered /api/sessions or "
                                                       "/api/kernels with fields of the wrong types")), []
            if digests[0] is not None and digests[1] is not None:
                made = tuple((k.key, k.read_digest) for k in kernels)
                if all(d != -1 for _, d in made):  # (-1: a kernel that is built anew each read)
                    entry.lists_digests, entry.lists_made = (digests[0], digests[1]), made
        del raw_kernels, raw_sessions, sessions  # a big answer is not held past the join
        if capped is not None:
            self.hooks.counted_over_cap(name, capped.over())
        self._check_notebooks(entry, kernels)
        return self._info(entry, latency_ms=round(latency, 1)), kernels

    def _unchanged(self, entry: _Server, digests: tuple[Optional[int], Optional[int]]) -> Optional[list[model.Kernel]]:
        """The kernels the fleet made of this server's last answers, where both answers are
        those again (``digests``: of /api/kernels, /api/sessions) and the fleet still holds
        every one of them; else None."""
        if self._kept is None or entry.lists_digests is None or digests != entry.lists_digests:
            return None
        kept = self._kept
        out = []
        for key, digest in entry.lists_made:
            k = kept.get(key)
            if k is None or k.read_digest != digest:  # not held, or not what that answer said
                return None
            out.append(k)
        return out

    async def _read_terminals(self, entry: _Server, digest: bool = False, skip: bool = False) -> None:
        """The server's terminals (``GET /api/terminals``); a server with terminals off, or
        one that fails this read alone, has none known (said in ``terminal_note``). A server
        with terminals off is not asked again while it runs (``terminals_off``). With
        ``digest`` (read again) the same answer as the last keeps the last rows; with ``skip``
        too, a server read well last time is asked once that answer is PACED_MAX_AGE old."""
        if entry.terminals_off:
            return
        if skip and entry.terminals_digest is not None and entry.terminal_note is None \
                and time.monotonic() - entry.terminals_at < PACED_MAX_AGE:
            entry.terminals = entry.terminals_made
            return
        entry.terminals_at = time.monotonic()
        name = entry.config.name
        try:
            answer = await self.client(name).terminals_listing(digest)
            if answer.digest is None or answer.digest != entry.terminals_digest:
                entry.terminals_digest = None
                entry.terminals_made = tuple(terminals_of(name, answer.parse()))
                entry.terminals_digest = answer.digest
        except ServerError as e:
            if e.kind in (TIMEOUT_KIND, "unreachable", "auth-failed"):
                raise  # the server itself is not readable: the read fails as a whole
            entry.terminals_off = e.kind in ("not-found", "not-jupyter")
            entry.terminal_note = TERMINALS_OFF if entry.terminals_off else "terminals: " + e.detail
            return
        entry.terminal_note = None
        entry.terminals = entry.terminals_made

    async def _read_extension(self, entry: _Server) -> None:
        """Ask the server's nbtui extension for usage (bounded by the server's timeout);
        broken, it is asked again only after EXTENSION_RETRY seconds; absent, not while the
        server runs (``_forget_probes``)."""
        if entry.ext_retry_at > time.monotonic():
            return
        timeout = entry.config.timeout or self.settings.timeout
        try:
            data = await deadline(self.client(entry.config.name).nbtui_usage(self.settings.orphan_idle), timeout + 0.25)
            entry.ext_result = wire.load(entry.config.name, data)
            entry.ext_extra = wire.load_extra(entry.config.name, data)
            entry.ext_note = None
            return
        except asyncio.TimeoutError:
            entry.ext_note = f"the nbtui extension did not answer within {timeout:g} s"
        except ServerError as e:
            if e.kind in ("not-found", "not-jupyter"):
                entry.ext_note = NO_EXTENSION
                entry.ext_retry_at = float("inf")
                return
            entry.ext_note = f"nbtui extension: {e.detail}"
        except wire.WireError as e:
            entry.ext_note = str(e)
        entry.ext_retry_at = time.monotonic() + EXTENSION_RETRY

    def _recall_probes(self, entry: _Server, key: Optional[str]) -> None:
        """A hub's server seen for the first time in this process: what an earlier run
        learnt of the same server process (nbtui.files.probe_memory) is not asked again."""
        entry.probe_key = key
        if key is None:
            return
        if self._probes is None:
            from nbtui.files.probe_memory import ProbeMemory
            self._probes = ProbeMemory()
        p = self._probes.get(key)
        if p is None:
            return
        entry.version, entry.version_asked = p.version, p.version_asked
        if p.terminals_off:
            entry.terminals_off, entry.terminal_note = True, TERMINALS_OFF
        if p.no_extension:
            entry.ext_retry_at, entry.ext_note = float("inf"), NO_EXTENSION

    async def _remember_probes(self) -> None:
        """Keep what this read learnt of a hub's servers for later runs (a write only when
        something changed: a server new to the memory, or started again)."""
        assert self._probes is not None
        from nbtui.files.probe_memory import Probed
        for e in self._servers.values():
            if e.probe_key is not None and e.version_asked:  # (a failed read forgot its probes)
                self._probes.put(e.probe_key, Probed(
                    version=e.version, version_asked=e.version_asked, terminals_off=e.terminals_off,
                    no_extension=e.ext_retry_at == float("inf")))
        if self._probes.dirty:
            await asyncio.to_thread(self._probes.save)

    def _forget_probes(self, entry: _Server) -> None:
        """A server whose read failed as a whole may come back as another process (restarted,
        upgraded, with the extension or terminals now): its next read probes it again."""
        if entry.probe_key is not None and self._probes is not None:
            self._probes.forget(entry.probe_key)
        entry.version_asked = entry.terminals_off = False
        entry.lists_digests = entry.terminals_digest = entry.sessions = None
        entry.lists_made, entry.terminals_made = (), ()  # what was made of its answers is not kept
        if entry.ext_retry_at == float("inf"):
            entry.ext_retry_at = 0.0

    def _check_notebooks(self, entry: _Server, kernels: list[model.Kernel]) -> None:
        """notebook-missing: start checking the due folders of this server's sessions (one
        listing per folder, at most once a minute each: nbtui.jupyter.notebooks), beside the
        rest of the read. Nothing waits here: a one-shot read waits for them at its end, at
        most NOTEBOOK_WAIT (``_notebooks_settled``); a refresh takes what has come back and
        the rest from the next snapshot on."""
        if not self.checks_notebooks or (entry.nb_task is not None and not entry.nb_task.done()):
            return
        paths = [k.session.path for k in kernels if k.session is not None and orphans.session_checkable(k)]
        if not paths:
            self.notebooks.forget(entry.config.name)  # (its sessions all closed: nothing of them is kept)
            return
        if entry.nb_limit is None:
            entry.nb_limit = asyncio.Semaphore(NOTEBOOK_CONCURRENCY)
        name = entry.config.name
        entry.nb_deadline = time.monotonic() + NOTEBOOK_WAIT
        entry.nb_task = asyncio.ensure_future(self.notebooks.refresh(
            name, paths, lambda: self.client(name), limit=entry.nb_limit,
            timeout=entry.config.timeout or self.settings.timeout, stamp_first=self.reads_again))

    async def _notebooks_settled(self, hold_back: Optional[float]) -> None:
        """A fleet's first snapshot without ``hold_back`` (a one-shot command) waits for the
        notebook checks its reads started, until NOTEBOOK_WAIT after each began at most;
        a later snapshot or a refresh (``hold_back``) waits for none: what has not come back
        is unknown now and known from a later snapshot on (never "missing" meanwhile)."""
        first, self._settled_once = not self._settled_once, True
        if hold_back is not None or not first:
            return
        running = [s for s in self._servers.values() if s.nb_task is not None and not s.nb_task.done()]
        if running:
            left = max(s.nb_deadline for s in running) - time.monotonic()
            if left > 0:
                await asyncio.wait([s.nb_task for s in running if s.nb_task is not None], timeout=left)

    def _failed(self, entry: _Server, e: ServerError) -> model.ServerInfo:
        return self.hooks.failed(self._info(
            entry,
            status=_STATUS_OF_KIND.get(e.kind, model.ERROR),
            error_kind="auth-failed" if e.kind == "token" else e.kind,
            error=redact(str(e)),
        ))

    async def snapshot(self, on_server: Optional[Callable] = None, *,
                       hold_back: Optional[float] = None,
                       usage_after: Optional[Callable[[], Awaitable[Any]]] = None) -> model.Snapshot:
        """Every server read; ``on_server(info, kernels)`` is called as each one answers
        (before usage and orphan rules), so a view can show it without waiting for the rest.

        ``hold_back`` (the TUI's refreshes): once a server of this read has answered, one
        that does not answer within ``hold_back`` seconds of the latest answer is not waited
        for: its read runs on at its own pace (and is not started again until it ends), the
        snapshot has that server's last answer, or no row for it before its first one, and
        ``still_reading`` names it. So a hung server never delays the others' refreshes.

        ``usage_after`` (the TUI's first read, begun while the screen starts): awaited before
        the host is sampled, so the process scan and NVML's start do not take the CPU from
        the screen's first paint; the servers are read meanwhile and ``on_server`` hears them."""
        now = self.clock()
        self._reads += 1
        if (self._reads > 1 or self.reads_again) and self._kept is None:
            self._kept = {}  # its kernels get digests the next read can match
        # A host view that needs two samples for CPU % takes the first now, and the
        # server reads (a hub's listing first) run during the interval it asks for. A
        # refresh (hold_back) does not wait for that interval: a CPU % sampled sooner is
        # unknown in this snapshot (the host view says so) and measured in the next.
        prime = getattr(self.host, "prime", None)
        early = getattr(self.host, "early_wait", None)  # baselines taken as the process started

        async def primed() -> None:  # the process scan runs beside the first requests
            if usage_after is not None:
                await usage_after()
            wait = early() if early is not None else None
            if wait is None:
                wait = await asyncio.to_thread(prime) if prime else 0.0
            if hold_back is None:
                await asyncio.sleep(wait or 0.0)

        priming = asyncio.ensure_future(primed())
        hub_rows = []
        if self._sources:
            try:
                hub_rows = await self._expand_hubs()
            except BaseException:
                priming.cancel()
                raise

        async def read_one(e: _Server) -> tuple[model.ServerInfo, list[model.Kernel], tuple[model.Terminal, ...]]:
            info, ks = await self._read_one(e, now)
            if on_server is not None:
                try:
                    on_server(info, ks)
                except Exception:  # a view's trouble never fails the read
                    pass
            return info, ks, e.terminals

        if hold_back is None:
            self.still_reading = ()
            results, _ = await asyncio.gather(
                asyncio.gather(*(read_one(e) for e in self._servers.values())),
                priming,
            )
        else:
            results, _ = await asyncio.gather(self._read_at_own_pace(read_one, hold_back), priming)
        results = await self._forget_gone(results)
        servers = [r[0] for r in results]
        kernels = [k for r in results for k in r[1]]
        terminals = [t for r in results if r[0].ok for t in r[2]]
        sample = HostSample()
        if self.host is not None:
            sample = self.host.sample(servers, kernels, terminals)
        merged = await self._merge_extensions(servers, kernels, sample, terminals, hold_back=hold_back)
        hinted = holders.shell_hints(terminals, sample.terminals, merged.terminals) if self.host is not None else None
        if hinted:
            # Shells the host could not tell apart, named by the server's extension: the host
            # checks each (a session-leading child of that server) and samples again, so the
            # terminals' jobs count as theirs, not as leftovers or other processes.
            assert self.host is not None  # hinted is None without one
            merged = await self._merge_extensions(servers, kernels, self.host.sample(servers, kernels, hinted), hinted,
                                                  hold_back=hold_back)
        sample = merged
        if self._probes is not None:  # a hub's servers' probes, their extensions' answers in
            await self._remember_probes()
        unmeasured = {k.server for k in kernels if k.key not in sample.usage}  # once, not once per server
        servers = [replace(s, usage_source=_source_for(s, sample) or self._quiet_source(s),
                           usage_note=self._usage_note(s, unmeasured)) for s in servers]
        await self._notebooks_settled(hold_back)
        threshold = self.settings.orphan_idle
        owners = holders.owners(servers, sample.users)
        own_now, usage_of, notebook = self.connections.counts(), sample.usage.get, self.notebooks.get
        checked = self.checks_notebooks  # (unchecked: unknown, no lookup per kernel)
        at = model.clock()  # every kernel's idle time as of one reading
        judged_kernels = []
        for k in kernels:  # every kernel, every refresh: model.evolve, not replace
            key = k.key
            own = own_now.get(key, 0)
            who = owners(key, k.server)
            usage = usage_of(key)
            reasons = orphans.kernel_reasons(
                k, idle_threshold=threshold, own_connections=own,
                notebook_exists=(notebook(k.server, k.session.path)
                                 if checked and k.session is not None and orphans.session_checkable(k) else None),
                now=at,
            )
            if not _same_verdicts(k, own, usage, who, reasons):  # (a kept kernel judged alike: itself)
                k = model.evolve(k, own_connections=own, usage=usage, user=who[0], process_user=who[1],
                                 orphan_reasons=reasons)
            judged_kernels.append(k)
        kernels = judged_kernels
        kernels = model.in_fleet_order(kernels)
        terminals = holders.terminal_rows(terminals, sample.terminals, owners, threshold)
        judged = orphans.judge_processes(sample.processes, sample.facts)  # the host's facts -> reasons
        kernels, terminals, processes = self.gpu_idle.apply(now, kernels, terminals, judged)
        if self._kept is not None:  # read again: the next read keeps what it hears unchanged
            self._kept = {k.key: k for k in kernels}
        if self._sources:  # a hub user's leftovers, named HUB/USER[/SERVER]
            from nbtui.jupyter.hub import HubSource, name_leftovers
            hubs: list[HubSource] = [s for s in self._sources.values() if isinstance(s, HubSource)]
            processes = name_leftovers(hubs, processes)
        return model.Snapshot(
            generated_at=now,
            servers=tuple(hub_rows + servers),
            kernels=tuple(kernels),
            terminals=tuple(terminals),
            processes=tuple(processes),
            unattributed_gpu=tuple(sample.unattributed_gpu),
            gpus=tuple(sample.gpus),
            gpu_note=sample.gpu_note,
            stale_files=self.stale_files,
            untrusted_files=self.untrusted_files,
            idle_threshold=threshold,
            notebooks_checked=self.checks_notebooks,
        )

    def read_whole_next(self) -> None:
        """Each server's next read asks its sessions and terminals too, whatever their pace
        (PACED_MAX_AGE), and its notebook folders fall due a minute after their last check
        again, however quiet (``NotebookChecks.hurry``): a refresh asked for by hand shows what
        the servers say now. A server whose read is under way (its answer late: read at its
        own pace) keeps the flag for its next read. Called on the fleet's loop
        (``FleetService.read_whole_next``)."""
        for e in self._servers.values():
            e.whole_next = True
        self.notebooks.hurry()

    def _remove(self, name: str) -> Optional[ServerClient]:
        """``name`` leaves the fleet with everything kept of it: its entry, its last answer,
        its read (cancelled), its notebook checks (cancelled, and their answers); returns its
        client, to be closed. Every way out of the fleet goes through here (a hub's user
        stopped, a discovered server gone or found again through its hub)."""
        self._last_read.pop(name, None)
        reading = self._reading.pop(name, None)
        if reading is not None:
            reading.cancel()  # (its client is closed next: it would end at once)
        self.notebooks.forget(name)
        return self._servers.pop(name).leave()

    async def _forget_gone(self, results: list[tuple]) -> list[tuple]:
        """A discovered server whose read failed and whose process is gone (or its PID now
        another process's) is no server any more: it leaves the fleet after that one read, and
        its runtime file joins the stale ones (discovery is asked again for them), so a
        session never keeps an `unreachable` line for it."""
        gone = set()
        for r in results:
            entry = self._servers.get(r[0].name)
            if entry is None or r[0].ok or entry.hub is not None:
                continue
            c = entry.config
            if c.source == "discovered" and c.pid is not None and not pid_alive(c.pid, c.started_at):
                gone.add(c.name)
        if not gone:
            return results
        for name in gone:
            client = self._remove(name)
            if client is not None:
                await client.aclose()
        try:
            found = await asyncio.to_thread(discover_host)
            self.stale_files = tuple(dict.fromkeys(self.stale_files + _stale_files(found)))
        except Exception:  # the stale list is a courtesy: never a failed read
            pass
        return [r for r in results if r[0].name not in gone]

    async def _read_at_own_pace(self, read_one: Callable, hold_back: float) -> list[tuple]:
        """Each server's (info, kernels, terminals) for ``snapshot(hold_back=...)``: a new
        read of every server whose last one has ended; the last answer of one still reading."""
        fresh = set()
        for name, e in self._servers.items():
            self._take_answer(name)
            if name not in self._reading:
                fresh.add(self._reading.setdefault(name, asyncio.ensure_future(read_one(e))))
        answered = False
        while fresh:
            done, fresh = await asyncio.wait(fresh, timeout=hold_back if answered else None,
                                             return_when=asyncio.FIRST_COMPLETED)
            if not done:
                break  # the rest are slow or hung: they go on on their own
            answered = True
        results, reading = [], []
        for name in self._servers:
            if not self._take_answer(name):
                reading.append(name)
            if name in self._last_read:
                results.append(self._last_read[name])
        self.still_reading = tuple(reading)
        return results

    def _take_answer(self, name: str) -> bool:
        """Keep the answer of ``name``'s read if it has ended; False while it runs."""
        t = self._reading.get(name)
        if t is None:
            return True
        if not t.done():
            return False
        del self._reading[name]
        if not t.cancelled():
            self._last_read[name] = t.result()  # a read that failed as a whole fails this snapshot
        return True

    async def _merge_extensions(self, servers: Sequence[model.ServerInfo], kernels: Sequence[model.Kernel],
                                sample: HostSample, terminals: Sequence[model.Terminal] = (),
                                hold_back: Optional[float] = None) -> HostSample:
        """Usage from the servers' extensions for kernels the local host does not cover
        (local usage wins); GPUs of other hosts join the summary once each (by UUID).

        With ``hold_back`` (the TUI's refreshes) an extension read is waited for that long
        at most: one that hangs (its server stopped right after answering its REST read)
        goes on at its own pace, is not started again meanwhile, and its answer serves a
        later read; it never holds back the refresh for the server's whole timeout."""
        missing = {k.server for k in kernels if k.key not in sample.usage}
        missing |= {t.server for t in terminals if sample.terminals.get(t.key) is None
                    or sample.terminals[t.key].pid is None}
        later = [self._servers[s.name] for s in servers
                 if s.ok and s.local and s.name in missing and self._servers[s.name].ext_result is None
                 and s.name not in self.still_reading]  # its read goes on: no waiting on it here
        # Loopback servers whose kernels are not here (an SSH tunnel): ask them now.
        reads = []
        for e in later:
            if e.ext_task is None or e.ext_task.done():
                e.ext_task = asyncio.ensure_future(self._read_extension(e))
            reads.append(e.ext_task)
        if reads:
            done, _ = await asyncio.wait(reads, timeout=hold_back)
            for t in done:
                t.result()  # an error it does not say in ext_note fails the read, as before
        usage, gpus = dict(sample.usage), list(sample.gpus)
        uuids = {g.uuid for g in gpus}
        terms, users = dict(sample.terminals), dict(sample.users)
        for s in servers:
            result = self._servers[s.name].ext_result if s.ok else None
            if not result:
                continue
            extra = self._servers[s.name].ext_extra
            if extra is not None:
                holders.merge_extension(terms, users, usage, terminals, s.name, extra)
            ext_usage, devices, _note = result
            for key, u in ext_usage.items():
                usage.setdefault(key, u)
            for d in devices:
                if d.uuid not in uuids:
                    uuids.add(d.uuid)
                    gpus.append(d)
        return replace(sample, usage=usage, gpus=tuple(gpus), terminals=terms, users=users)

    def _quiet_source(self, s: model.ServerInfo) -> Optional[str]:
        """The usage source of a server with no kernels measured: its extension if it
        answered, local if the server's own process runs here (and a host view is on)."""
        if not s.ok:
            return None
        if self._servers[s.name].ext_result is not None:
            return wire.EXTENSION
        if self.host is not None and s.pid is not None:
            return "local"
        return None

    def _usage_note(self, s: model.ServerInfo, unmeasured: set[str]) -> Optional[str]:
        """Why a server's kernels have no usage (``unmeasured``: servers with such a kernel)."""
        if not s.ok or s.name not in unmeasured:
            return None
        entry = self._servers[s.name]
        if entry.ext_note:
            return entry.ext_note
        return "kernel processes not found on this host" if s.local else None


EXTENSION_RETRY = 60.0  # seconds before asking an absent or failing extension again
# A fleet that reads again (the TUI, the exporter) asks each server's /api/sessions and
# /api/terminals once their last answer is this old (seconds: every 5th read at the TUI's 2 s,
# every read at the exporter's 15 s), /api/kernels every read: a kernel new to the last
# sessions' ask has them asked at once (and at the next read). What only the sessions say of a
# kernel listed before (a notebook renamed) and a new terminal show within this, as
# JupyterLab's own lists poll (every 10 s). A refresh asked for by hand asks everything.
PACED_MAX_AGE = 9.5
TERMINALS_OFF = "terminals: off on this server"
NO_EXTENSION = "no nbtui extension on the server (install nbtui beside jupyter_server there)"
NOTEBOOK_WAIT = 0.5  # seconds a read waits for notebook checks before leaving them running
NOTEBOOK_CONCURRENCY = 8  # contents requests in flight per server
READ_GATE_HOLD = 1.0  # seconds a server's read holds its place under read_concurrency


def _with_process(c: ServerConfig) -> ServerConfig:
    """A discovered server with its process's OS owner and start time (None where unreadable)."""
    if c.pid is None:
        return c
    import psutil

    try:
        p = psutil.Process(c.pid)
        with p.oneshot():
            return replace(c, owner=p.username(), started_at=p.create_time())
    except (psutil.Error, KeyError, ValueError):
        return c


def _same_verdicts(k: model.Kernel, own: int, usage: Optional[model.Usage], who: tuple[Optional[str], Optional[str]],
                   reasons: tuple[str, ...]) -> bool:
    """What a read judged of a kernel is what ``k`` says already."""
    return (k.own_connections == own and k.usage == usage and k.user == who[0] and k.process_user == who[1]
            and k.orphan_reasons == reasons)


def _stale_files(found: Discovery | None) -> tuple[str, ...]:
    """Runtime files left behind: server files whose process is dead (discovery), and
    kernel connection files that no running process names."""
    if found is None:
        return ()
    from nbtui.host.signals import running_kernel_ids
    from nbtui.jupyter.discovery import kernel_connection_files
    files = [str(f) for f in kernel_connection_files()]
    if not files:
        return tuple(found.stale)
    try:
        running = running_kernel_ids()
    except Exception:  # the host cannot be read: say nothing about kernel files
        return tuple(found.stale)
    return tuple(found.stale) + orphans.stale_kernel_files(files, live_kernel_ids=(), running_kernel_ids=running)


def _source_for(server: model.ServerInfo, sample: HostSample) -> Optional[str]:
    sources = {u.source for key, u in sample.usage.items() if model.split_kernel_key(key)[0] == server.name}
    return next(iter(sources)) if len(sources) == 1 else (None if not sources else "mixed")

