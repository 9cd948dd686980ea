"""JupyterHub as a server source: one hub token, every user's single-user servers.

A configured hub (``servers add NAME URL --hub``) expands at each read into the servers
``HUB/USER`` (a user's default server) and ``HUB/USER/SERVER`` (a named one). Each is then
read like any Jupyter server, by the fleet, over a pool of sockets shared by the hub's
servers (200 servers do not open 200 sockets).

Observe without disturbing: the hub's proxy marks a route active on every request it
forwards, and the hub copies that into the user's and the server's ``last_activity`` —
a poller reading through the proxy keeps every server alive. So a server is read at its
internal target (the proxy's route table, scope ``proxy``) where that is reachable; where
it is not, it is read through the proxy, said so, and no more often than the hub's
``proxy_interval``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
from dataclasses import dataclass, replace
from typing import Any, AsyncIterator, Optional, Sequence
from urllib.parse import urlsplit

import httpx

from nbtui.files.config import ServerConfig
from nbtui.jupyter.hubtokens import TokenMint
from nbtui.jupyter.rest import (AUTH_FAILED, NOT_JUPYTER, TIMEOUT, TOO_BIG, ServerClient, ServerError, deadline,
                               is_loopback, server_token)
from nbtui.jupyter.urlpath import UnsafeSegment, segment, server_path
from nbtui.sources import ServerReader

PAGINATION = "application/jupyterhub-pagination+json"
MAX_PAGES = 10_000  # a hub that keeps answering "next" forever is cut off here
MAX_ITEMS = 200_000  # the longest list nbtui takes from a hub (its pages together)
MAX_SERVERS = 5_000  # users' servers nbtui reads of one hub; a hub listing more is that hub's error
SOCKETS = 16  # sockets one hub's servers share (the pool of their HTTP clients)
CONCURRENCY = SOCKETS  # single-user servers of one hub read at once (each asks 3 things: the gate queues them)
DIRECT, PROXY = "direct", "proxy"
ROUTES = ("auto", DIRECT, PROXY)
DEFAULT_PROXY_INTERVAL = 900.0  # seconds between reads of a server through the proxy

# What a token lacking each scope costs nbtui (servers test prints one line per missing one).
SCOPE_COSTS = {
    "list:users": "the hub's users cannot be listed: no servers at all",
    "read:users": "users' names and activity cannot be read",
    "read:servers": "users' servers cannot be listed (the server list is empty)",
    "tokens": ("no token for each user's server can be minted: users' servers are not read (nbtui never "
               "sends the hub's own token to a user's server)"),
    "admin:server_state": "no PIDs of single-user servers: local usage cannot be tied to a user's server",
    "proxy": "no route table: kernels are read through the proxy, which marks every server active",
    "servers": "servers cannot be stopped (server:HUB/USER targets, cull --servers)",
}
# A scope also counts as held when the token holds one that includes it.
_PARENTS = {
    "read:users": ("admin:users",), "list:users": ("admin:users",),
    "read:servers": ("servers", "admin:users"), "admin:server_state": ("admin:users",),
    "servers": ("admin:users",), "delete:servers": ("servers", "admin:users"),
}

PROXY_NOTE = ("read through the hub's proxy: each read marks the server active (its hub last_activity), "
              "which keeps it from idle culling; read at most every {interval}")


def scope_held(scopes: list[str], want: str) -> Optional[str]:
    """"all" when the token holds ``want`` (or a scope that includes it), "some" when only
    for some users or servers (``want!user=…``), else None."""
    names = {s for s in scopes if isinstance(s, str)}
    if want in names or any(p in names for p in _PARENTS.get(want, ())):
        return "all"
    if any(s.startswith(want + "!") for s in names):
        return "some"
    return None


def missing_scopes(scopes: list[str]) -> list[tuple[str, str, str]]:
    """(scope, "missing" | "only some", what it costs) for each scope nbtui would use."""
    out = []
    for scope, cost in SCOPE_COSTS.items():
        held = scope_held(scopes, scope)
        if scope == "servers" and held is None:
            held = scope_held(scopes, "delete:servers")
        if held != "all":
            out.append((scope, "missing" if held is None else "only some", cost))
    return out


def _time(value: object) -> Optional[dt.datetime]:
    from nbtui.core.units import parse_time
    return parse_time(value)


@dataclass(frozen=True)
class HubServer:
    """One user's server as the hub lists it."""

    hub: str
    user: str
    server_name: str  # "" for the default server
    path: str  # where the proxy serves it, e.g. /user/alice/
    ready: bool
    pending: Optional[str]
    started: Optional[dt.datetime]
    last_activity: Optional[dt.datetime]
    pid: Optional[int] = None  # state.pid (scope admin:server_state, local spawners)

    @property
    def name(self) -> str:
        """``HUB/USER[/SERVER]``, the user's and server's names escaped (``text.name_part``):
        a user named ``alice/x`` is ``hub/alice%2Fx``, never alice's server ``x``."""
        from nbtui.core.text import name_part
        return f"{self.hub}/{name_part(self.user)}" + (f"/{name_part(self.server_name)}" if self.server_name else "")


def parse_users(hub: str, users: list) -> list[HubServer]:
    """Users' servers from ``GET /hub/api/users`` (hostile input: anything odd is skipped)."""
    out = []
    for u in users:
        if not isinstance(u, dict) or not isinstance(u.get("name"), str) or not u["name"]:
            continue
        servers = u.get("servers")
        if not isinstance(servers, dict):
            continue
        for sname, s in servers.items():
            if not isinstance(s, dict) or not isinstance(sname, str):
                continue
            try:  # the hub's own URL for it; else the default one. Never one that climbs out (``/../``)
                path = server_path(s["url"], "server URL") if str(s.get("url")).startswith("/") else (
                    f"/user/{segment(u['name'], 'user name', named_by_hub=True)}/"
                    + (f"{segment(sname, 'server name', named_by_hub=True)}/" if sname else ""))
            except UnsafeSegment:
                continue
            pending = s.get("pending") if s.get("pending") in ("spawn", "stop") else None
            state: dict = s["state"] if isinstance(s.get("state"), dict) else {}
            pid = state.get("pid")
            out.append(HubServer(
                hub=hub, user=u["name"], server_name=sname, path=path if path.endswith("/") else path + "/",
                ready=s.get("ready") is True, pending=pending, started=_time(s.get("started")),
                last_activity=_time(s.get("last_activity")),
                pid=pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None,
            ))
    return out


class HubClient(ServerClient):
    """The hub's REST API (``/hub/api``), token in the Authorization header."""

    async def hub_version(self) -> Optional[str]:
        data = await self.request("GET", "hub/api")
        if not isinstance(data, dict) or not isinstance(data.get("version"), str):
            raise ServerError(self.name, NOT_JUPYTER, f"{self.url}hub/api does not answer as JupyterHub")
        return data["version"]

    async def whoami(self) -> dict:
        data = await self.request("GET", "hub/api/user")
        return data if isinstance(data, dict) else {}

    async def paged(self, path: str) -> list:
        """Every item of a paginated list (a dict's items become (key, value) pairs)."""
        items: list = []
        offset, sep = 0, "&" if "?" in path else "?"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout  # the pages as a whole, whatever else bounds the read
        for _ in range(MAX_PAGES):
            if loop.time() > deadline:
                raise ServerError(self.name, TIMEOUT, f"/{path}: pagination did not end within {self.timeout:g} s: "
                                                      "not read")
            data = await self.request("GET", f"{path}{sep}offset={offset}", headers={"Accept": PAGINATION})
            if not isinstance(data, dict) or "items" not in data:  # a hub before pagination: the whole list
                whole = list(data.items()) if isinstance(data, dict) else (data if isinstance(data, list) else [])
                if len(whole) > MAX_ITEMS:
                    raise ServerError(self.name, NOT_JUPYTER, f"lists more than {MAX_ITEMS:,} items at /{path}: not read")
                return whole
            page = data["items"]
            items.extend(page.items() if isinstance(page, dict) else (page if isinstance(page, list) else []))
            if len(items) > MAX_ITEMS:
                raise ServerError(self.name, NOT_JUPYTER, f"lists more than {MAX_ITEMS:,} items at /{path}: not read")
            nxt = (data.get("_pagination") or {}).get("next") if isinstance(data.get("_pagination"), dict) else None
            new = nxt.get("offset") if isinstance(nxt, dict) else None
            if not isinstance(new, int) or new <= offset:
                return items
            offset = new
        raise ServerError(self.name, NOT_JUPYTER, f"/{path}: pagination did not end after {MAX_PAGES:,} pages: not read")

    async def users(self) -> list:
        return await self.paged("hub/api/users?state=active")

    async def routes(self) -> dict[str, str]:
        """routespec -> internal target (``GET /hub/api/proxy``, scope ``proxy``)."""
        out = {}
        for spec, route in await self.paged("hub/api/proxy"):
            target = route.get("target") if isinstance(route, dict) else None
            if isinstance(spec, str) and isinstance(target, str) and urlsplit(target).scheme in ("http", "https"):
                out[spec] = target
        return out

    async def user(self, name: str) -> dict:
        data = await self.request("GET", f"hub/api/users/{segment(name, 'user name', named_by_hub=True)}")
        return data if isinstance(data, dict) else {}

    async def stop_server(self, user: str, server_name: str = "", timeout: Optional[float] = None) -> None:
        path = f"hub/api/users/{segment(user, 'user name', named_by_hub=True)}/" + (
            f"servers/{segment(server_name, 'server name', named_by_hub=True)}" if server_name else "server")
        await self.request("DELETE", path, expect_json=False, timeout=timeout)


class _SharedTransport(httpx.AsyncBaseTransport):
    """One pool for all of a hub's servers: their clients close, the pool stays. At most
    ``gate``'s count of requests are in the pool at once, each until its body is closed:
    httpcore matches every queued request against every connection whenever one frees, so
    a queue of a thousand servers' requests (their notebook checks run beside their reads)
    cost a third of a 1,000-server hub read's CPU."""

    def __init__(self, inner: httpx.AsyncBaseTransport, gate: asyncio.Semaphore):
        self.inner = inner
        self.gate = gate

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self.gate.acquire()
        try:
            response = await self.inner.handle_async_request(request)
        except BaseException:
            self.gate.release()
            raise
        response.stream = _Releasing(response.stream, self.gate)
        return response

    async def aclose(self) -> None:
        pass


class _Releasing(httpx.AsyncByteStream):
    """A response's body that gives its place in the gate back once closed (once only)."""

    def __init__(self, inner: Any, gate: asyncio.Semaphore):
        self.inner = inner
        self.gate: Optional[asyncio.Semaphore] = gate

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            gate, self.gate = self.gate, None
            if gate is not None:
                gate.release()


def _origin(path_or_url: str) -> str:
    return path_or_url.rstrip("/")


@dataclass
class Child:
    """A user's server as a fleet server: its config (direct or proxy URL) and hub facts."""

    config: ServerConfig
    server: HubServer
    route: Optional[str]  # direct | proxy | None (pending: nothing to read)
    note: Optional[str]
    proxy_url: str
    no_token: Optional[str] = None  # why it has no token of its own (then it is not read)

    @property
    def pid(self) -> Optional[int]:
        return self.server.pid

    def extra(self) -> dict[str, Any]:
        s = self.server
        return {"hub": s.hub, "user": s.user, "server_name": s.server_name, "pending": s.pending,
                "started": s.started, "hub_last_activity": s.last_activity,
                "route": self.route, "route_note": self.note}


class HubSource:
    """Lists one hub's users' servers; the fleet reads each of them (a ``ServerSource``,
    nbtui.sources)."""

    def __init__(self, config: ServerConfig, default_timeout: float):
        self.config = config
        self.timeout = config.timeout or default_timeout
        self._client: Optional[HubClient] = None
        self._transport: Optional[httpx.AsyncHTTPTransport] = None
        self._gate = asyncio.Semaphore(SOCKETS)  # requests in the shared pool at once (_SharedTransport)
        self.version: Optional[str] = None
        self.scopes: Optional[list[str]] = None
        self.kind: Optional[str] = None  # user | service (the token's owner)
        self.owner: Optional[str] = None
        self.unreachable: set[str] = set()  # servers whose internal target did not answer here
        self.limit = asyncio.Semaphore(CONCURRENCY)
        self.children: dict[str, Child] = {}
        # The last read of each server through the proxy (monotonic time, info, kernels): a
        # proxied server is read at most every proxy_interval.
        self.proxy_reads: dict[str, tuple[float, Any, list[Any]]] = {}
        self.mint = TokenMint(config.name)  # one token per user's server; the hub's own goes to the hub only

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def token(self) -> Optional[str]:
        return self.client().token

    @property
    def proxy_interval(self) -> float:
        return self.config.proxy_interval or DEFAULT_PROXY_INTERVAL

    def client(self) -> HubClient:
        if self._client is None:
            c = self.config
            token = server_token(c)
            # Through the pool its users' servers share: the tokens minted for them at the first
            # read open no sockets beside it.
            self._client = HubClient(c.name, c.url, token, timeout=self.timeout, ca_bundle=c.ca_bundle,
                                     insecure_http=c.insecure_http, transport=self.transport())
        return self._client

    def transport(self) -> httpx.AsyncBaseTransport:
        """The sockets this hub's servers share (bounded: SOCKETS at most)."""
        if self._transport is None:
            from nbtui.jupyter.rest import tls_context
            self._transport = httpx.AsyncHTTPTransport(
                verify=tls_context(self.config.ca_bundle),
                limits=httpx.Limits(max_connections=SOCKETS, max_keepalive_connections=SOCKETS))
        return _SharedTransport(self._transport, self._gate)

    async def aclose(self) -> None:
        if self._client is not None:
            await self.mint.revoke_all(self._client)
            await self._client.aclose()
            self._client = None
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    async def _list(self) -> tuple[list[HubServer], Optional[dict[str, str]], float]:
        client = self.client()
        t0 = time.perf_counter()
        if self.version is None:
            self.version = await client.hub_version()
        if self.scopes is None:
            me = await client.whoami()
            scopes = me.get("scopes")
            self.scopes = [s for s in scopes if isinstance(s, str)] if isinstance(scopes, list) else []
            self.kind = me.get("kind") if isinstance(me.get("kind"), str) else None
            self.owner = me.get("name") if isinstance(me.get("name"), str) else None
        want_routes = self.config.route != PROXY and scope_held(self.scopes, "proxy") is not None
        users_call = client.users()
        if want_routes:
            users, routes = await asyncio.gather(users_call, self._routes(client))
        else:
            users, routes = await users_call, None
        # Counted before they are parsed (the parse runs on the event loop) and read: each
        # would be read, so a hub (or its users) listing too many cannot make nbtui hang.
        count = sum(len(u["servers"]) for u in users if isinstance(u, dict) and isinstance(u.get("servers"), dict))
        if count > MAX_SERVERS:
            raise ServerError(self.name, TOO_BIG, f"lists {count:,} users' servers, more than the "
                                                  f"{MAX_SERVERS:,} nbtui reads of one hub: none read")
        return parse_users(self.name, users), routes, (time.perf_counter() - t0) * 1000

    async def _routes(self, client: HubClient) -> Optional[dict[str, str]]:
        try:
            return await client.routes()
        except ServerError as e:
            if e.kind == AUTH_FAILED:
                return None
            raise

    async def read(self) -> tuple[dict[str, Any], list[Child]]:
        """The hub's own row (ServerInfo fields) and its users' servers now; bounded by the
        hub's timeout as a whole."""
        from nbtui.core import model
        from nbtui.files.secrets import redact
        row: dict[str, Any] = {"name": self.name, "url": self.config.url, "source": "hub", "hub": self.name,
                               "local": is_loopback(self.config.url)}
        try:
            servers, routes, latency = await deadline(self._list(), self.timeout + 0.25)
        except asyncio.TimeoutError:
            row.update(status=model.TIMEOUT, error_kind="timeout",
                       error=f"server {self.name}: timed out after {self.timeout:g} s")
            return row, []  # (as below: no listing, no user's server read)
        except ServerError as e:
            from nbtui.jupyter.rest import STATUS_OF_KIND as _STATUS_OF_KIND
            row.update(status=_STATUS_OF_KIND.get(e.kind, model.ERROR),
                       error_kind="auth-failed" if e.kind == "token" else e.kind, error=redact(str(e)))
            if e.kind == "not-found":
                row["error"] = f"server {self.name}: {self.config.url}hub/api/users not found: not a JupyterHub?"
            # No listing, no users' servers read: a hub that cannot say where each one is now
            # (restarting, it may have stopped them) must not have a token sent to whatever
            # took a stopped server's port.
            return row, []
        row.update(version=self.version, latency_ms=round(latency, 1))
        await self.mint.ensure(self.client(), servers, deadline=self.timeout)
        children, seen = [], set()
        for s in servers:  # a hub listing a user twice: once (the first)
            if s.name not in seen:
                seen.add(s.name)
                children.append(self._child(s, routes))
        self.children = {c.config.name: c for c in children}
        for gone in self.proxy_reads.keys() - self.children.keys():
            del self.proxy_reads[gone]
        return row, list(children)

    def listed(self, name: str) -> Optional[Child]:
        return self.children.get(name)

    async def read_listed(self, reader: ServerReader, name: str, now: dt.datetime) -> tuple[Any, list[Any]]:
        return await _read_listed(self, reader, name, now)

    def _child(self, s: HubServer, routes: Optional[dict[str, str]]) -> Child:
        hub = self.config
        proxy_url = _origin(hub.url) + s.path
        target = (routes or {}).get(s.path) if routes is not None else None
        route: Optional[str] = PROXY
        note, url = None, proxy_url
        interval = _human(self.proxy_interval)
        if s.pending or not s.ready:
            route = None  # nothing to read yet (a spawn or stop in progress): no route to speak of
        elif hub.route == PROXY:
            note = PROXY_NOTE.format(interval=interval) + " (route = proxy in servers.toml)"
        elif routes is None:
            note = PROXY_NOTE.format(interval=interval) + "; the token lacks scope proxy (the route table)"
        elif target is None:
            note = PROXY_NOTE.format(interval=interval) + "; the proxy has no route for it"
        elif urlsplit(target).scheme == "http" and not is_loopback(target) and not hub.insecure_http:
            note = (PROXY_NOTE.format(interval=interval) + "; its internal target is plain http on another "
                    "host (servers add … --hub --insecure-http reads it there)")
        elif s.name in self.unreachable and hub.route != DIRECT:
            note = PROXY_NOTE.format(interval=interval) + f"; its internal target {target} did not answer from here"
        else:
            route, url = DIRECT, _origin(target) + s.path
        token = self.mint.token_for(s.user, s.server_name)
        cfg = ServerConfig(
            name=s.name, url=url, token_source="hub", ca_bundle=hub.ca_bundle, insecure_http=hub.insecure_http,
            timeout=hub.timeout, source="hub", token=token, pid=s.pid,
        )
        no_token = self.mint.why_none(s.user, s.server_name) if token is None and route is not None else None
        return Child(cfg, s, route, note, proxy_url, no_token)


def _human(seconds: float) -> str:
    from nbtui.core.units import human_duration
    return human_duration(seconds)


async def detect(url: str, *, timeout: float = 3.0, ca_bundle: Optional[str] = None) -> Optional[str]:
    """The JupyterHub version when ``URL/hub/api`` answers as JupyterHub, else None."""
    client = HubClient("probe", url, None, timeout=timeout, ca_bundle=ca_bundle)
    try:
        return await asyncio.wait_for(client.hub_version(), timeout + 0.25)
    except (ServerError, asyncio.TimeoutError):
        return None
    finally:
        await client.aclose()


# -- reading one user's server (the fleet calls HubSource.read_listed) ------------------------


async def _read_listed(hub: HubSource, reader: ServerReader, name: str, now: dt.datetime) -> tuple[Any, list[Any]]:
    """Read one user's server: a pending one is a state (nothing to read); one reached
    through the proxy is read at most every ``proxy_interval``; a direct route that does not
    answer from here falls back to the proxy, said so."""
    child = hub.children.get(name)
    extra = child.extra() if child is not None else {}
    if extra.get("pending") or (child is not None and not child.server.ready):
        return reader.server_info(name), []
    if child is not None and child.no_token is not None:
        from nbtui.core import model
        return reader.server_info(name, status=model.AUTH_FAILED, error_kind="token",
                                  error=f"server {name}: not read: {child.no_token}"), []
    last = hub.proxy_reads.get(name)
    if extra.get("route") == PROXY and last is not None:
        at, info, kernels = last
        if time.monotonic() - at < hub.proxy_interval:
            return reader.server_info(name, latency_ms=info.latency_ms), list(kernels)  # idle times count on (as of when asked)
    elif extra.get("route") == PROXY and child is not None:
        skipped = _read_elsewhere(reader, name, child.config.url, hub)
        if skipped is not None:
            return skipped, []
    async with hub.limit:
        info, kernels = await reader.read_server(name, now)
    if (info.error_kind == "unreachable" and extra.get("route") == DIRECT and child is not None
            and hub.config.route != DIRECT):
        hub.unreachable.add(name)
        child = hub.children[name] = hub._child(child.server, {child.server.path: child.config.url})
        extra = child.extra()
        await reader.rebind(name, child.config, extra)
        skipped = _read_elsewhere(reader, name, child.config.url, hub)
        if skipped is not None:
            return skipped, []
        async with hub.limit:
            info, kernels = await reader.read_server(name, now)
    if info.error_kind == AUTH_FAILED and child is not None:
        await hub.mint.refused(hub.client(), child.server.user, child.server.server_name)
    # Kernel.user: the fleet fills it (the process owner where local, else this hub user).
    if extra.get("route") == PROXY and info.ok and child is not None:
        from nbtui.jupyter import proxy_reads
        hub.proxy_reads[name] = (time.monotonic(), info, kernels)
        if reader.proxy_reader is not None:  # the interval holds across nbtui processes too
            proxy_reads.record([child.config.url], by=f"{reader.proxy_reader}, pid {os.getpid()}")
    return info, kernels


def _read_elsewhere(reader: ServerReader, name: str, url: str, hub: HubSource) -> Any:
    """The server's row when another nbtui (a one-shot ``ls``, a cron job) read it through the
    proxy within ``proxy_interval``: not read now, and said so (status skipped); else None."""
    from nbtui.core import model
    from nbtui.jupyter import proxy_reads
    if reader.acting:  # exec, kill, servers test …: what a person asked for is read
        return None
    last = proxy_reads.last_read(url)
    ago = None if last is None else time.time() - last.at
    if last is None or ago is None or not 0 <= ago < hub.proxy_interval:
        return None
    from nbtui.core.text import one_line
    by = f"by {one_line(last.by, 80)}" if last.by else "by another nbtui"
    return reader.server_info(
        name, status=model.SKIPPED, error_kind="proxy-interval",
        error=(f"server {name}: read through the hub's proxy {_human(ago)} ago {by}; "
               f"read at most every {_human(hub.proxy_interval)} (each read marks it active), "
               f"next in {_human(hub.proxy_interval - ago)}"))


def name_leftovers(hubs: Sequence[HubSource], processes: Sequence[Any]) -> list[Any]:
    """A leftover of a hub user's server (JUPYTERHUB_USER in its environment) named
    HUB/USER[/SERVER]: under the hub that lists, or last listed, that user's server, else the
    only hub configured; several hubs and no listing: the user alone names it."""
    out = []
    for p in processes:
        if p.hub_user and p.hub_server is None and hubs:
            from nbtui.core.text import name_part  # escaped as the hub's own names are (HubServer.name)

            tail = f"/{name_part(p.hub_user)}" + (f"/{name_part(p.hub_server_name)}" if p.hub_server_name else "")
            known = [h.name for h in hubs if h.name + tail in h.children]
            hub = known[0] if len(known) == 1 else (hubs[0].name if len(hubs) == 1 else None)
            if hub is not None:
                p = replace(p, hub_server=hub + tail)
        out.append(p)
    return out
