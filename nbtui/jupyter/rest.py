"""A Jupyter Server REST client (httpx), with short typed errors that name the server."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import ssl
from typing import Any, AsyncIterator, Awaitable, Callable, Final, NamedTuple, Optional, TypeVar
from urllib.parse import urlsplit

import httpx
import orjson

from nbtui.core import model
from nbtui.core.errors import EXIT_PARTIAL, NbtuiError
from nbtui.files.config import ServerConfig
from nbtui.jupyter.own import OwnConnections
from nbtui.jupyter.urlpath import UnsafeSegment, contents_path, segment
from nbtui.files.secrets import redact
from nbtui.core.text import visible
# ServerError's kinds (model.ErrorKind).
UNREACHABLE: Final = "unreachable"
TIMEOUT: Final = "timeout"
AUTH_FAILED: Final = "auth-failed"
NOT_JUPYTER: Final = "not-jupyter"
SERVER_ERROR: Final = "server-error"
NOT_FOUND: Final = "not-found"
INSECURE: Final = "insecure"
TOKEN: Final = "token"
_T = TypeVar("_T")
_TIMEOUT: Optional[Callable[[float], Any]] = getattr(asyncio, "timeout", None)  # (Python 3.11 on)
MAX_BODY = 64 << 20  # config.toml `max_body`
TOO_BIG: Final = "too-big"
MAX_CONTENTS_BYTES = 128 << 20  # the most of a notebook file nbtui reads to copy it
# How long an idle connection to a server on this machine is kept for the next request
# (httpx keeps one 5 s). The TUI asks a server's sessions, terminals and folders every 10 s
# to a minute beside its kernels every 2 s, each on a connection of its own: at 5 s each of
# those opened a new one (20 servers: 5 connections a refresh, 1 in 8 of its requests). A
# connection the server closed meanwhile is not reused (httpcore sees it readable at EOF); on
# loopback no NAT or firewall drops one silently, which is why remote servers keep httpx's 5 s.
LOOPBACK_KEEPALIVE = 120.0


async def deadline(work: Awaitable[_T], seconds: float) -> _T:
    """``await work``, cancelled past ``seconds`` (then ``asyncio.TimeoutError``): from Python
    3.11 in the caller's own task (``asyncio.timeout``), on 3.10 through ``wait_for``, which runs
    the work in a task of its own. That task holds a failure whose traceback holds the task: a
    cycle that kept every refused answer (its body, up to ``max_body``) for the cycle collector,
    hundreds at once in a hub of failing users' servers. And before 3.12, ``wait_for`` returned
    an answer that met a cancel instead of cancelling: a hub paging "next" forever ran past the
    read's deadline to its 10,000th page (3.10 cannot tell; the hub's paging keeps a deadline
    of its own)."""
    if _TIMEOUT is None:
        return await asyncio.wait_for(work, seconds)
    async with _TIMEOUT(seconds):
        return await work


# A read that failed with a ServerError of this kind: the server's status (else model.ERROR).
STATUS_OF_KIND: dict[model.ErrorKind, model.ServerStatus] = {
    UNREACHABLE: model.UNREACHABLE,
    TIMEOUT: model.TIMEOUT,
    AUTH_FAILED: model.AUTH_FAILED,
    TOKEN: model.AUTH_FAILED,
}


class Listing(NamedTuple):
    """A JSON list's answer (``ServerClient.listing``), checked as ``request`` checks one: its
    digest, and ``parse()``, which returns the list (or raises the server's ServerError: not
    JSON, not a list)."""

    digest: Optional[int]  # None: not asked for
    parse: Callable[[], list]


def _is_kernel(k: Any) -> bool:
    return isinstance(k, dict) and isinstance(k.get("id"), str)


def _is_dict(s: Any) -> bool:
    return isinstance(s, dict)


def _is_terminal(t: Any) -> bool:
    return isinstance(t, dict) and isinstance(t.get("name"), str) and bool(t["name"])


class ServerError(NbtuiError):
    """A server could not be read; ``kind`` says how, the message names the server."""

    exit_code = EXIT_PARTIAL

    def __init__(self, server: str, kind: model.ErrorKind, detail: str):
        self.server, self.kind, self.detail = server, kind, redact(detail)
        super().__init__(f"server {server}: {self.detail}")


def server_token(c: ServerConfig, timeout: float = 30.0) -> Optional[str]:
    """A server's token (nbtui.files.secrets.resolve); one that cannot be had is the server's
    ServerError of kind "token", its one line without the server's name twice."""
    from nbtui.files.secrets import TokenError, resolve
    try:
        return resolve(c, timeout)
    except TokenError as e:
        raise ServerError(c.name, TOKEN, str(e).removeprefix(f"server {c.name}: ")) from None


def is_loopback(url: str) -> bool:
    """Whether ``url``'s host is this machine: a loopback address, or a name that resolves
    to loopback addresses ONLY (a `localhost` that /etc/hosts points elsewhere is not)."""
    return _host_is_loopback(urlsplit(url).hostname or "")


@functools.lru_cache(maxsize=256)
def _host_is_loopback(host: str) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    import socket

    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    addrs = {str(i[4][0]).split("%", 1)[0] for i in infos}
    try:
        return bool(addrs) and all(ipaddress.ip_address(a).is_loopback for a in addrs)
    except ValueError:
        return False


def check_transport(name: str, url: str, has_token: bool, insecure_http: bool) -> None:
    """Refuse to send a token in clear text to a host that is not this machine."""
    if has_token and urlsplit(url).scheme == "http" and not is_loopback(url) and not insecure_http:
        raise ServerError(
            name, INSECURE,
            "refusing to send a token over plain http to a remote host; use https, "
            "or add the server with --insecure-http",
        )


@functools.lru_cache(maxsize=None)
def tls_context(ca_bundle: Optional[str] = None) -> ssl.SSLContext:
    """One verifying TLS context per CA bundle (building one costs ~50 ms), shared by all
    HTTP clients and kernel websockets."""
    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()


@functools.lru_cache(maxsize=None)
def _no_tls() -> ssl.SSLContext:
    """For a plain-http server on this machine, whose client never makes a TLS connection
    (relative paths on an http base URL, no redirects followed, no proxy): verifying, with no
    CA loaded, so it could trust nothing. Loading the system's CA store costs ~50 ms (a tenth of the TUI's start)."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


class ServerClient:
    """One keep-alive HTTP client per server. Use as an async context manager."""

    def __init__(
        self,
        name: str,
        url: str,
        token: Optional[str] = None,
        *,
        timeout: float = 5.0,
        ca_bundle: Optional[str] = None,
        insecure_http: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        max_body: int = MAX_BODY,
        no_track_activity: bool = False,
        connections: Optional[OwnConnections] = None,
    ):
        self.name = name
        # nbtui's own kernel connections through this client (its fleet's, shared by all of them)
        self.connections = connections if connections is not None else OwnConnections()
        # A hub user's server counts every authenticated API request as activity and reports it
        # to the hub: nbtui's reads ask it not to (``?no_track_activity=1``).
        self.no_track_activity = no_track_activity
        self.url = url if url.endswith("/") else url + "/"
        self.timeout = timeout
        self.max_body = max_body
        self._held = 0  # bytes of answers being read right now (all requests together)
        check_transport(name, self.url, bool(token), insecure_http)
        headers = {"Accept": "application/json", "User-Agent": "nbtui"}
        if token:
            headers["Authorization"] = f"token {token}"
        self._token = token
        self.ca_bundle = ca_bundle  # the kernel websocket (channels.py) verifies TLS with it too
        local = is_loopback(self.url)  # no proxy, a longer keep-alive; over http: no TLS either
        plain_local = local and self.url.startswith("http:")
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout),
            verify=_no_tls() if plain_local else self._tls(ca_bundle),
            follow_redirects=False,
            transport=transport,
            trust_env=not local,
            # (httpx's own limits but for that; a given transport (a hub's) keeps its own pool)
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20,
                                keepalive_expiry=LOOPBACK_KEEPALIVE if local else 5.0),
        )

    def _tls(self, ca_bundle: Optional[str]) -> ssl.SSLContext:
        try:
            return tls_context(ca_bundle)
        except (OSError, ssl.SSLError, ValueError) as e:
            raise ServerError(self.name, UNREACHABLE,
                              f"cannot use ca_bundle {ca_bundle}: {getattr(e, 'strerror', None) or type(e).__name__}") from None

    @property
    def token(self) -> Optional[str]:
        return self._token

    async def __aenter__(self) -> "ServerClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the one place requests are made -------------------------------------------------

    async def request(self, method: str, path: str, *, json_body: Any = None, expect_json: bool = True,
                      timeout: Optional[float] = None, headers: Optional[dict] = None) -> Any:
        """One request, bounded AS A WHOLE by ``timeout`` (default: the server's): connect,
        headers and the body together, so a server that drips a byte a second costs no
        more than that. The body is streamed and capped at ``max_body``."""
        r, body, shown = await self._exchange(method, path, json_body, timeout, headers)
        return self._check(r, body, shown, expect_json)

    async def _exchange(self, method: str, path: str, json_body: Any = None, timeout: Optional[float] = None,
                        headers: Optional[dict] = None) -> tuple[httpx.Response, bytearray, str]:
        """``request``'s exchange, its answer not yet checked: the response, its body and the
        path as asked (for the errors)."""
        path = shown = path.lstrip("/")
        _no_dot_parts(path)
        if self.no_track_activity and method == "GET":
            path += ("&" if "?" in path else "?") + "no_track_activity=1"
        deadline = timeout or self.timeout
        extra: dict[str, Any] = {"timeout": httpx.Timeout(timeout)} if timeout else {}
        if headers:
            extra["headers"] = headers
        r, body = await self._bounded(self._fetch(method, path, json_body, extra), deadline)
        return r, body, shown

    async def listing(self, path: str, keep: Callable[[Any], bool], digest: bool = False) -> Listing:
        """``GET path``, a JSON list (its items those ``keep`` accepts), parsed when asked
        (``Listing.parse``); with ``digest``, with the digest of the answer: a read again whose
        answer has the digest of the last one it made something of skips the parse and keeps
        what it made (a refresh costs what changed)."""
        r, body, shown = await self._exchange("GET", path)
        has_body = self._answered(r, body, shown, True)  # a refusal or a failure fails the read now
        del r
        # Python's hash, salted per process (no server can aim a collision at it), of the body:
        # the answer is checked already, so the same body is the same list.
        seen = hash(bytes(body)) if digest else None

        def parse() -> list:
            data = parse_json(self.name, shown, body) if has_body else None
            if not isinstance(data, list):
                raise ServerError(self.name, NOT_JUPYTER, f"answered /{shown} with something other than a list")
            return [item for item in data if keep(item)]

        return Listing(seen, parse)

    async def _fetch(self, method: str, path: str, json_body: Any, extra: dict) -> tuple[httpx.Response, bytearray]:
        """Send and read the body, holding at most ``max_body`` of this server's answers at
        once: the requests of one read run side by side, and a server that sends a huge body
        to each would otherwise cost that cap once per request (four at a time in `ls`)."""
        if json_body is not None:  # ASCII JSON: a lone surrogate from outside (a name, a path) is "\\ud800", not an error
            extra["content"] = json.dumps(json_body).encode()
            extra["headers"] = {**extra.get("headers", {}), "Content-Type": "application/json"}
        request = self._http.build_request(method, path, **extra)
        r = await self._http.send(request, stream=True)
        body = bytearray()  # grown in place: no list of chunks and no join (a second copy)
        held = 0
        try:
            declared = r.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_body:
                raise ServerError(self.name, TOO_BIG, _too_big(path.split('?', 1)[0], self.max_body))
            async for chunk in r.aiter_bytes():
                body += chunk
                held += len(chunk)
                self._held += len(chunk)
                if self._held > self.max_body:
                    raise ServerError(self.name, TOO_BIG, _too_big(path.split('?', 1)[0], self.max_body,
                                                                   alone=len(body) > self.max_body))
        except BaseException:
            body = bytearray()  # dropped now, not when the error's traceback goes
            raise
        finally:
            self._held -= held  # here, whatever happens: a count that leaked would refuse every later read
            await r.aclose()
            _unbind(r)
        return r, body

    @contextlib.asynccontextmanager
    async def _stream(self, path: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        """``GET path`` streamed, its response unbound from its stream once closed (``_unbind``)."""
        streamed: Optional[httpx.Response] = None
        try:
            async with self._http.stream("GET", path, **kwargs) as r:
                streamed = r
                yield r
        finally:
            if streamed is not None:  # (closed by now)
                _unbind(streamed)

    def _check(self, r: httpx.Response, body: bytes | bytearray, path: str, expect_json: bool) -> Any:
        if not self._answered(r, body, path, expect_json):
            return None
        return parse_json(self.name, path, body)

    def _answered(self, r: httpx.Response, body: bytes | bytearray, path: str, expect_json: bool) -> bool:
        """Raise the ServerError the answer is (refused, a redirect, not found, a failure, not
        JSON); whether it holds a JSON body to parse."""
        if r.status_code in (401, 403):
            raise ServerError(self.name, AUTH_FAILED, f"token refused (HTTP {r.status_code}) at {self.url}")
        if r.is_redirect and urlsplit(r.headers.get("location", "")).scheme not in ("", "http", "https"):
            raise ServerError(self.name, NOT_JUPYTER, f"redirects /{path} to another scheme "
                              f"({urlsplit(r.headers.get('location', '')).scheme}:): refused")
        if r.is_redirect:
            where = r.headers.get("location", "")
            if "login" in where:
                raise ServerError(self.name, AUTH_FAILED, f"asks for a login (redirect to {urlsplit(where).path}); a token is needed")
            raise ServerError(self.name, NOT_JUPYTER, f"redirects /{path} to {where.split('?')[0]}: not a Jupyter API")
        if r.status_code == 404:
            if _is_json(r):
                raise ServerError(self.name, NOT_FOUND, f"not found: /{path}")
            raise ServerError(self.name, NOT_JUPYTER, f"/{path} not found: not a Jupyter server at {self.url}")
        if r.status_code >= 500:
            raise ServerError(self.name, SERVER_ERROR, f"server error HTTP {r.status_code} on /{path}")
        if r.status_code >= 400:
            raise ServerError(self.name, SERVER_ERROR, f"HTTP {r.status_code} on /{path}: {_message(body)}")
        if not expect_json or r.status_code == 204 or not body:
            return False
        if not _is_json(r):
            kind = "an HTML page" if "html" in r.headers.get("content-type", "") else "no JSON"
            raise ServerError(self.name, NOT_JUPYTER, f"answered /{path} with {kind}: not a Jupyter server API")
        return True

    # -- API --------------------------------------------------------------------------------

    async def version(self) -> Optional[str]:
        data = await self.request("GET", "api")
        version = data.get("version") if isinstance(data, dict) else None
        return version if isinstance(version, str) else None

    async def status(self) -> dict:
        return await self.request("GET", "api/status")

    async def kernels(self) -> list[dict]:
        return (await self.kernels_listing()).parse()

    async def kernels_listing(self, digest: bool = False) -> Listing:
        return await self.listing("api/kernels", _is_kernel, digest)

    async def sessions(self) -> list[dict]:
        return (await self.sessions_listing()).parse()

    async def sessions_listing(self, digest: bool = False) -> Listing:
        return await self.listing("api/sessions", _is_dict, digest)

    async def stream_list(self, path: str, each: Callable[[Any], None], *, timeout: Optional[float] = None) -> None:
        """``GET path``, a JSON list handed to ``each`` one item at a time as it is parsed
        (ijson): what is held is one item, never the whole answer, and the interpreter is free
        between items. Bounded as a whole by ``timeout`` (default: the server's) and in bytes by
        ``max_body``, with the errors of ``request``."""
        import ijson

        path = shown = path.lstrip("/")
        _no_dot_parts(path)
        if self.no_track_activity:
            path += ("&" if "?" in path else "?") + "no_track_activity=1"
        limit = timeout or self.timeout

        async def read() -> None:
            async with self._stream(path, timeout=httpx.Timeout(limit)) as r:
                if r.status_code != 200 or not _is_json(r):
                    head = bytearray()
                    async for chunk in r.aiter_bytes():
                        head += chunk
                        if len(head) > 65536:
                            break
                    self._check(r, head, shown, True)
                    raise ServerError(self.name, NOT_JUPYTER, f"answered /{shown} with something other than a list")
                items = ijson.sendable_list()
                parser = ijson.items_coro(items, "item", use_float=True)
                seen, started = 0, False
                try:
                    async for chunk in r.aiter_bytes():
                        seen += len(chunk)
                        if seen > self.max_body:
                            raise ServerError(self.name, TOO_BIG, _too_big(shown, self.max_body))
                        if not started and chunk.strip():
                            if not chunk.lstrip().startswith(b"["):
                                raise ServerError(self.name, NOT_JUPYTER,
                                                  f"answered /{shown} with something other than a list")
                            started = True
                        parser.send(chunk)
                        for item in items:
                            each(item)
                        del items[:]
                    parser.close()
                    for item in items:
                        each(item)
                except ijson.JSONError:
                    raise ServerError(self.name, NOT_JUPYTER, f"answered /{shown} with malformed JSON") from None
                except RecursionError:
                    raise ServerError(self.name, NOT_JUPYTER, f"answered /{shown} with JSON nested too deep") from None

        await self._bounded(read(), limit)

    async def terminals(self) -> list[dict]:
        """``GET /api/terminals``: ``[{"name", "last_activity"}]``; NOT_FOUND / NOT_JUPYTER
        when the server has terminals off (no terminado)."""
        return (await self.terminals_listing()).parse()

    async def terminals_listing(self, digest: bool = False) -> Listing:
        return await self.listing("api/terminals", _is_terminal, digest)

    async def terminal(self, name: str) -> dict:
        return await self.request("GET", f"api/terminals/{segment(name, 'terminal name')}")

    async def delete_terminal(self, name: str, timeout: Optional[float] = None) -> None:
        """End a terminal through its server (terminado sends its shell SIGHUP, then more)."""
        await self.request("DELETE", f"api/terminals/{segment(name, 'terminal name')}", expect_json=False, timeout=timeout)

    async def kernel(self, kernel_id: str) -> dict:
        return await self.request("GET", f"api/kernels/{segment(kernel_id, 'kernel id')}")

    async def kernelspecs(self) -> dict:
        return await self.request("GET", "api/kernelspecs")

    async def me(self) -> dict:
        return await self.request("GET", "api/me")

    async def nbtui_usage(self, idle_after: float = 3600.0) -> dict:
        """The nbtui server extension's usage report (see nbtui.serverext); NOT_FOUND or
        NOT_JUPYTER when the server has no such extension."""
        return await self.request("GET", f"api/nbtui/usage?idle={idle_after:g}")

    async def interrupt(self, kernel_id: str) -> None:
        await self.request("POST", f"api/kernels/{segment(kernel_id, 'kernel id')}/interrupt", expect_json=False)

    async def restart(self, kernel_id: str) -> dict:
        return await self.request("POST", f"api/kernels/{segment(kernel_id, 'kernel id')}/restart")

    async def shutdown(self, kernel_id: str, timeout: Optional[float] = None) -> None:
        """DELETE the kernel; ``timeout`` leaves room for the server's own shutdown wait."""
        await self.request("DELETE", f"api/kernels/{segment(kernel_id, 'kernel id')}", expect_json=False, timeout=timeout)

    async def start_kernel(self, name: Optional[str] = None, path: Optional[str] = None) -> dict:
        body: dict[str, Any] = {}
        if name:
            body["name"] = name
        if path:
            body["path"] = path
        return await self.request("POST", "api/kernels", json_body=body)

    async def create_session(
        self, path: str, *, kernel_id: Optional[str] = None, kernel_name: Optional[str] = None,
        type: str = "notebook", name: Optional[str] = None,
    ) -> dict:
        kernel: dict[str, Any] = {}
        if kernel_id:
            kernel["id"] = kernel_id
        if kernel_name:
            kernel["name"] = kernel_name
        body = {"path": path, "type": type, "name": name or path.rsplit("/", 1)[-1], "kernel": kernel}
        return await self.request("POST", "api/sessions", json_body=body)

    async def contents_exists(self, path: str) -> bool:
        try:
            await self.request("GET", f"api/contents/{contents_path(path)}?content=0")
        except ServerError as e:
            if e.kind == NOT_FOUND:
                return False
            raise
        return True

    # -- contents (migrate and rebind bring the notebook file along) ----------------------

    async def contents(self, path: str, *, max_bytes: int = MAX_CONTENTS_BYTES,
                       timeout: Optional[float] = None) -> dict:
        """A file's model with its content (``GET /api/contents/PATH``). The answer is read
        streaming and refused past ``max_bytes``; the whole read is bounded by ``timeout``
        (default: the server's timeout, at least 30 s). NOT_FOUND when there is no such file."""
        limit = timeout or max(self.timeout, 30.0)
        where = f"api/contents/{contents_path(path)}"

        async def read() -> httpx.Response:
            async with self._stream(where, params={"content": "1"}, timeout=httpx.Timeout(limit)) as r:
                declared = r.headers.get("content-length") or ""
                if r.status_code == 200 and declared.isdigit() and int(declared) > max_bytes:
                    raise ServerError(self.name, TOO_BIG, f"/{where} is {int(declared)} bytes, over {max_bytes}")
                body = bytearray()
                async for chunk in r.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise ServerError(self.name, TOO_BIG, f"/{where} is over {max_bytes} bytes")
                return httpx.Response(r.status_code, headers=r.headers, content=bytes(body), request=r.request)

        r = await self._bounded(read(), limit)
        model = self._check(r, r.content, where, True)
        if not isinstance(model, dict) or "content" not in model:
            raise ServerError(self.name, NOT_JUPYTER, f"answered /{where} with no file model")
        return model

    async def save_contents(self, path: str, model: dict, *, timeout: Optional[float] = None) -> dict:
        """``PUT /api/contents/PATH`` with ``{type, format, content}`` (a directory: only its type)."""
        body = {k: model[k] for k in ("type", "format", "content") if k in model}
        limit = timeout or max(self.timeout, 30.0)
        return await self._bounded(
            self.request("PUT", f"api/contents/{contents_path(path)}", json_body=body, timeout=limit), limit)

    async def within(self, work: Awaitable[Any], limit: Optional[float] = None, what: str = "") -> Any:
        """``work`` (a step of several requests: a re-check, a rebind) under ONE deadline,
        ``limit`` (default: the server's timeout) over all its requests together: a server
        that answers each just before its own timeout cannot stretch the step."""
        return await self._bounded(work, limit or self.timeout, what)

    async def _bounded(self, work: Awaitable[_T], limit: float, what: str = "") -> _T:
        """One network exchange bounded as a whole (``deadline``), with the errors of ``request``."""
        where = f"{what}, {self.url}" if what else self.url
        try:
            return await deadline(work, limit)
        except asyncio.TimeoutError:
            raise ServerError(self.name, TIMEOUT, f"timed out after {limit:g} s ({where})") from None
        except httpx.TimeoutException:
            raise ServerError(self.name, TIMEOUT, f"timed out after {limit:g} s ({where})") from None
        except httpx.ConnectError as e:
            raise ServerError(self.name, UNREACHABLE, f"cannot connect to {self.url}: {_reason(e)}") from None
        except httpx.HTTPError as e:
            raise ServerError(self.name, UNREACHABLE, f"connection failed ({self.url}): {_reason(e)}") from None

    def ws_url(self, path: str) -> str:
        base = self.url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        _no_dot_parts(path.lstrip("/"))
        return base + path.lstrip("/")


def _no_dot_parts(path: str) -> None:
    """The last guard before a request is built: a path with a ``.`` or ``..`` part would be
    resolved against the base URL (out of a hub user's prefix, into the hub's API)."""
    if any(part in (".", "..") for part in path.split("?", 1)[0].split("/")):
        raise UnsafeSegment(f"refusing to send a request to /{visible(path.split('?', 1)[0])[:120]}: "
                            f"a '.' or '..' part would leave the server's URL")


def _is_json(r: httpx.Response) -> bool:
    return "json" in r.headers.get("content-type", "")


def _too_big(path: str, limit: int, alone: bool = True) -> str:
    from nbtui.core.units import human_bytes
    others = "" if alone else " and others at once"
    return f"answered /{path}{others} with more than {human_bytes(limit)} (max_body in config.toml)"


def parse_json(server: str, path: str, body: bytes | bytearray) -> Any:
    """A server's JSON answer, or that server's error (malformed, nested too deep for the
    parser): never an exception of the parser's own."""
    try:
        return orjson.loads(body)  # ~3x the standard parser: at 5,000 kernels a refresh's largest cost
    except orjson.JSONDecodeError:  # what orjson refuses the standard parser may read (lone surrogates,
        pass  # NaN, UTF-16, nesting past 1,024): its answer, or its error, is the one given. (An int past
        # 64 bits, which no Jupyter model holds, orjson reads as a float.)
    try:
        return json.loads(body)
    except RecursionError:
        raise ServerError(server, NOT_JUPYTER, f"answered /{path} with JSON nested too deep") from None
    except (ValueError, UnicodeDecodeError):
        raise ServerError(server, NOT_JUPYTER, f"answered /{path} with malformed JSON") from None


def _message(body: bytes | bytearray) -> str:
    try:
        data = parse_json("", "", body[:65536])
        return str(data.get("message") or data.get("reason") or "")[:200] if isinstance(data, dict) else ""
    except Exception:
        return ""


def _reason(e: Exception) -> str:
    text = str(e) or type(e).__name__
    causes = f"{text} {e.__cause__!r} {e.__context__!r}"
    if "Connection refused" in causes or "Errno 111" in causes or "All connection attempts failed" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return "TLS certificate not trusted (use --ca-bundle)"
    return text.splitlines()[0][:160]


_DONE = httpx.ByteStream(b"")


def _unbind(r: httpx.Response) -> None:
    """Break the reference cycle httpx leaves between a streamed response and its stream (a
    ``BoundAsyncStream`` that holds the response holding it), once the response is closed
    (never before: closing closes the stream it holds then): it and its transport's objects (about 40 a request) are then freed by their
    counts. Left to the cycle collector, the TUI's 80 requests a refresh made it walk some
    120,000 objects at a time, 0.1 s in which the screen stood still."""
    r.stream = _DONE
