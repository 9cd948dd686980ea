"""A kernel's channels (shell, iopub, stdin, control): one interface, two transports.

- :class:`WebsocketChannels` talks to a kernel through its Jupyter server's websocket
  (``/api/kernels/{id}/channels``), token in the header, the
  ``v1.kernel.websocket.jupyter.org`` binary protocol where the server offers it and JSON
  frames otherwise. On Linux its socket gets ``TCP_NODELAY`` and ``TCP_QUICKACK`` re-armed
  after every read: a stock server leaves Nagle on, and a client that delays its ACKs
  pays ~40 ms per round trip (see DESIGN.md, "Facts measured").
- :class:`ZmqChannels` talks to a kernel known only by its connection file, through
  jupyter_client's async ZMQ client (signed with the file's key).

Requests are correlated with their replies and outputs by ``msg_id``.
:meth:`KernelChannels.execute` gives an async iterator over everything a request causes
(iopub outputs, stdin input requests, the reply) that ends once the reply and the
kernel's idle status have both arrived.

A websocket that drops is reopened with backoff; a request in flight when it dropped
fails with :class:`ConnectionLost` ("result unknown"), never silently lost or re-sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import secrets
import socket
import ssl
import struct
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from jupyter_client.jsonutil import json_default
from jupyter_client.session import Session

from nbtui.core.errors import NbtuiError, TimedOut
from nbtui.jupyter.urlpath import segment
from nbtui.jupyter.rest import (AUTH_FAILED, NOT_FOUND, NOT_JUPYTER, TIMEOUT, UNREACHABLE, ServerClient, ServerError,
                                is_loopback)
from nbtui.files.secrets import redact

if TYPE_CHECKING:
    from jupyter_client.channels import AsyncZMQSocketChannel
V1 = "v1.kernel.websocket.jupyter.org"
CHANNELS = ("shell", "iopub", "stdin", "control")
REPLY_CHANNEL = {"shell": "shell", "control": "control"}
BACKOFF = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


class ChannelError(NbtuiError):
    """A kernel channel failed; the message says how."""


class ConnectionLost(ChannelError):
    """The connection dropped while a request was in flight: its result is unknown."""


class KernelDied(ChannelError):
    """The kernel died or was restarted while a request was in flight."""

    def __init__(self, message: str, state: str):
        super().__init__(message)
        self.state = state


@dataclass(frozen=True)
class Event:
    """Something that happened outside any request of ours.

    kind: ``status`` (data: the state), ``disconnected`` (data: reason), ``reconnected``,
    ``gone`` (the kernel no longer exists; data: reason), ``message`` (data: an iopub
    message parented by another client).
    """

    kind: str
    data: Any = None


def msg_type(msg: dict) -> str:
    return (msg.get("header") or {}).get("msg_type") or msg.get("msg_type") or ""


def parent_id(msg: dict) -> Optional[str]:
    return (msg.get("parent_header") or {}).get("msg_id")


# -- the websocket wire formats ------------------------------------------------------------


def pack(obj: Any) -> bytes:
    return json.dumps(obj, default=json_default, ensure_ascii=False).encode("utf-8", "surrogateescape")


def encode_v1(channel: str, msg: dict) -> bytes:
    """``msg`` as one ``v1.kernel.websocket.jupyter.org`` frame (unsigned: the server signs)."""
    parts = [pack(msg["header"]), pack(msg["parent_header"]), pack(msg["metadata"]), pack(msg["content"])]
    parts.extend(bytes(b) for b in msg.get("buffers") or ())
    chan = channel.encode()
    offsets = [8 * (1 + 1 + len(parts) + 1)]
    offsets.append(offsets[-1] + len(chan))
    for p in parts:
        offsets.append(offsets[-1] + len(p))
    head = struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets)
    return b"".join([head, chan, *parts])


FRAGMENT = 1 << 20  # binary buffers go out in websocket fragments of this size


def encode_v1_fragments(channel: str, msg: dict, fragment: int = FRAGMENT) -> list:
    """``encode_v1`` as websocket fragments: the head, then each buffer in slices of at most
    ``fragment`` bytes, uncopied (a large payload is never joined into one frame)."""
    buffers = [memoryview(b).cast("B") for b in msg.get("buffers") or ()]
    parts = [pack(msg["header"]), pack(msg["parent_header"]), pack(msg["metadata"]), pack(msg["content"])]
    chan = channel.encode()
    offsets = [8 * (1 + 1 + len(parts) + len(buffers) + 1)]
    offsets.append(offsets[-1] + len(chan))
    for p in [*parts, *buffers]:
        offsets.append(offsets[-1] + len(p))
    head = struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets)
    return [b"".join([head, chan, *parts]), *_slices(buffers, fragment)]


def _slices(buffers: Iterable[memoryview], fragment: int) -> list:
    return [b[i:i + fragment] for b in buffers for i in range(0, len(b), fragment)]


def decode_v1(data: bytes) -> tuple[str, dict]:
    n = int.from_bytes(data[:8], "little")
    offsets = list(struct.unpack_from(f"<{n}Q", data, 8))  # the last is the end
    channel = data[offsets[0]:offsets[1]].decode("utf-8", "replace")
    parts = [data[offsets[i]:offsets[i + 1]] for i in range(1, min(5, len(offsets) - 1))]
    view = memoryview(data)  # buffers are views of the frame, not copies
    msg = {
        "header": _loads(parts[0]) if len(parts) > 0 else {},
        "parent_header": _loads(parts[1]) if len(parts) > 1 else {},
        "metadata": _loads(parts[2]) if len(parts) > 2 else {},
        "content": _loads(parts[3]) if len(parts) > 3 else {},
        "buffers": [view[offsets[i]:offsets[i + 1]] for i in range(5, len(offsets) - 1)],
    }
    return channel, msg


def encode_json(channel: str, msg: dict) -> str | bytes:
    if msg.get("buffers"):
        return b"".join(encode_json_fragments(channel, msg))
    out = {k: msg[k] for k in ("header", "parent_header", "metadata", "content")}
    out["channel"] = channel
    out["buffers"] = []
    return json.dumps(out, default=json_default)


def encode_json_fragments(channel: str, msg: dict) -> list:
    out = {k: msg[k] for k in ("header", "parent_header", "metadata", "content")}
    out["channel"] = channel
    out["buffers"] = []
    return encode_json_binary(out, msg.get("buffers") or ())


def encode_json_binary(msg: dict, buffers: Iterable[bytes | bytearray | memoryview], fragment: int = FRAGMENT) -> list:
    """The legacy protocol's binary message with binary buffers, as websocket fragments
    (migrate uses it); the buffers are sliced, not copied."""
    views = [memoryview(b).cast("B") for b in buffers]
    first = pack(msg)
    parts: list[bytes | memoryview] = [first, *views]
    offsets, at = [], 4 * (len(parts) + 1)
    for part in parts:
        offsets.append(at)
        at += len(part)
    head = struct.pack("!" + "I" * (len(parts) + 1), len(parts), *offsets) + first
    return [head, *_slices(views, fragment)]


def decode_json(data: str | bytes) -> tuple[str, dict]:
    if isinstance(data, bytes):  # the legacy protocol's binary form: a message with buffers
        nbufs = struct.unpack("!I", data[:4])[0]
        offsets = list(struct.unpack("!" + "I" * nbufs, data[4:4 * (nbufs + 1)])) + [len(data)]
        bufs = [data[offsets[i]:offsets[i + 1]] for i in range(nbufs)]
        msg = _loads(bufs[0])
        msg["buffers"] = bufs[1:]
    else:
        msg = json.loads(data)
    return msg.pop("channel", None) or "shell", msg


def _loads(b: bytes) -> Any:
    return json.loads(b.decode("utf-8", "replace")) if b else {}


# -- TCP tuning --------------------------------------------------------------------------

_QUICKACK = getattr(socket, "TCP_QUICKACK", None) if sys.platform.startswith("linux") else None


def tune_socket(sock: Optional[socket.socket]) -> Callable[[], None]:
    """Turn Nagle off and return a function that re-arms TCP_QUICKACK (a no-op elsewhere)."""
    if sock is None:
        return lambda: None
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if _QUICKACK is None:
        return lambda: None
    setsockopt = sock.setsockopt

    def rearm() -> None:
        try:
            setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        except OSError:
            pass

    rearm()
    return rearm


# -- the common part ---------------------------------------------------------------------


class _Pending:
    __slots__ = ("msg_id", "queue", "wants_all")

    def __init__(self, msg_id: str, wants_all: bool):
        self.msg_id = msg_id
        self.queue: asyncio.Queue = asyncio.Queue()
        self.wants_all = wants_all  # iopub and stdin too, or the reply alone


class Execution:
    """The messages one request causes, until its reply and the kernel's idle status.

    Iterate with ``async for msg in execution``; ``reply`` holds the reply once it came.
    Raises :class:`ConnectionLost` or :class:`KernelDied` where the result became unknown.
    """

    def __init__(self, channels: "KernelChannels", pending: _Pending, reply_channel: str):
        self.channels = channels
        self.msg_id = pending.msg_id
        self._pending = pending
        self._reply_channel = reply_channel
        self.reply: Optional[dict] = None
        self._idle = False

    def __aiter__(self) -> "Execution":
        return self

    async def __anext__(self) -> dict:
        if self.reply is not None and self._idle:
            self.channels._forget(self.msg_id)
            raise StopAsyncIteration
        item = await self._pending.queue.get()
        if isinstance(item, BaseException):
            self.channels._forget(self.msg_id)
            raise item
        channel, msg = item
        if channel == self._reply_channel and msg_type(msg).endswith("_reply"):
            self.reply = msg
        elif channel == "iopub" and msg_type(msg) == "status" and msg["content"].get("execution_state") == "idle":
            self._idle = True
        return msg

    async def wait(self) -> dict:
        """Drain every message and return the reply."""
        async for _ in self:
            pass
        assert self.reply is not None
        return self.reply

    def cancel(self) -> None:
        """Stop listening (the kernel is not told)."""
        self.channels._forget(self.msg_id)


class KernelChannels:
    """The transport-independent part: building, correlating and routing messages."""

    transport = "?"

    def __init__(self, *, session: Optional[Session] = None):
        # Over the websocket the server signs (it alone has the kernel's key); a local
        # random key keeps Session from warning that signing is off.
        self.session = session or Session(key=secrets.token_hex(16).encode(), username="nbtui")
        self._pending: dict[str, _Pending] = {}
        self._listeners: list[Callable[[Event], None]] = []
        self.state = "unknown"  # the kernel's execution_state as last seen
        self.connected = False
        self.closed = False

    # -- to override --------------------------------------------------------------------

    async def connect(self) -> "KernelChannels":
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def _send(self, channel: str, msg: dict) -> None:
        raise NotImplementedError

    async def interrupt(self) -> None:
        """Interrupt the kernel (a control-channel ``interrupt_request``)."""
        await self.request("interrupt_request", {}, channel="control", timeout=10)

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> "KernelChannels":
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def listen(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for events outside our requests; returns an unsubscribe."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def _emit(self, kind: str, data: Any = None) -> None:
        event = Event(kind, data)
        for cb in list(self._listeners):
            try:
                cb(event)
            except Exception:  # a listener's bug must not kill the reader
                pass

    # -- requests -----------------------------------------------------------------------

    def _new(self, msg_type_: str, content: dict, parent: Optional[dict] = None, metadata: Optional[dict] = None) -> dict:
        return self.session.msg(msg_type_, content=content, parent=parent, metadata=metadata)

    async def _start(self, channel: str, msg: dict, wants_all: bool) -> _Pending:
        if self.closed:
            raise ChannelError("the kernel connection is closed")
        if not self.connected:
            raise ConnectionLost("not connected to the kernel (reconnecting)")
        pending = _Pending(msg["header"]["msg_id"], wants_all)
        self._pending[pending.msg_id] = pending
        try:
            await self._send(channel, msg)
        except BaseException:
            self._forget(pending.msg_id)
            raise
        return pending

    def _forget(self, msg_id: str) -> None:
        self._pending.pop(msg_id, None)

    async def send_request(self, msg_type_: str, content: dict, *, channel: str = "shell") -> Execution:
        """Send a request and return the :class:`Execution` that follows it."""
        msg = self._new(msg_type_, content)
        pending = await self._start(channel, msg, wants_all=True)
        return Execution(self, pending, REPLY_CHANNEL.get(channel, channel))

    async def request(self, msg_type_: str, content: dict, *, channel: str = "shell",
                      timeout: Optional[float] = None) -> dict:
        """Send a request and return its reply message (the outputs it causes are dropped)."""
        msg = self._new(msg_type_, content)
        pending = await self._start(channel, msg, wants_all=False)

        async def reply() -> dict:
            while True:
                item = await pending.queue.get()
                if isinstance(item, BaseException):
                    raise item
                if item[0] == channel:
                    return item[1]

        try:
            return await asyncio.wait_for(reply(), timeout)
        except asyncio.TimeoutError:
            raise TimedOut(f"the kernel did not answer {msg_type_} within {timeout:g} s") from None
        finally:
            self._forget(pending.msg_id)

    async def execute(self, code: str, *, silent: bool = False, store_history: bool = True,
                      allow_stdin: bool = True, stop_on_error: bool = True,
                      user_expressions: Optional[dict] = None) -> Execution:
        content = {
            "code": code, "silent": silent, "store_history": store_history,
            "user_expressions": user_expressions or {}, "allow_stdin": allow_stdin,
            "stop_on_error": stop_on_error,
        }
        return await self.send_request("execute_request", content)

    async def execute_buffers(self, code: str, buffers: list) -> Execution:
        """A silent execute request that carries binary ``buffers``; the code reads them
        from its parent message (``get_ipython().kernel.get_parent()["buffers"]``).
        Used by migrate to hand a payload to a kernel without base64."""
        content = {
            "code": code, "silent": True, "store_history": False, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True,
        }
        msg = self._new("execute_request", content)
        msg["buffers"] = list(buffers)
        pending = await self._start("shell", msg, wants_all=True)
        return Execution(self, pending, "shell")

    async def input_reply(self, value: str, request: dict) -> None:
        """Answer an ``input_request`` (``request`` is that message)."""
        msg = self._new("input_reply", {"value": value}, parent=request.get("header"))
        await self._send("stdin", msg)

    async def kernel_info(self, timeout: Optional[float] = None) -> dict:
        return (await self.request("kernel_info_request", {}, timeout=timeout))["content"]

    async def complete(self, code: str, cursor_pos: int, timeout: Optional[float] = 5) -> dict:
        return (await self.request("complete_request", {"code": code, "cursor_pos": cursor_pos}, timeout=timeout))["content"]

    async def inspect(self, code: str, cursor_pos: int, detail_level: int = 0, timeout: Optional[float] = 5) -> dict:
        content = {"code": code, "cursor_pos": cursor_pos, "detail_level": detail_level}
        return (await self.request("inspect_request", content, timeout=timeout))["content"]

    async def is_complete(self, code: str, timeout: Optional[float] = 2) -> dict:
        return (await self.request("is_complete_request", {"code": code}, timeout=timeout))["content"]

    async def usage(self, timeout: Optional[float] = 5) -> dict:
        """The kernel's ``usage_request`` on the control channel (ipykernel >= 6.13)."""
        return (await self.request("usage_request", {}, channel="control", timeout=timeout))["content"]

    async def execution_count(self, timeout: Optional[float] = 10) -> Optional[int]:
        """The kernel's last execution count, without running anything or counting up."""
        ex = await self.execute("", silent=True, store_history=False, allow_stdin=False)
        try:
            reply = await asyncio.wait_for(ex.wait(), timeout)
        except asyncio.TimeoutError:
            ex.cancel()
            raise TimedOut(f"the kernel did not answer within {timeout:g} s") from None
        count = reply["content"].get("execution_count")
        return count if isinstance(count, int) else None

    # -- routing ------------------------------------------------------------------------

    def _dispatch(self, channel: str, msg: dict) -> None:
        mt = msg_type(msg)
        if channel == "iopub" and mt == "status":
            state = (msg.get("content") or {}).get("execution_state")
            if isinstance(state, str) and state != self.state:
                self.state = state
                self._emit("status", state)
                if state in ("restarting", "dead"):
                    what = "died" if state == "dead" else "restarted (it died, or someone restarted it)"
                    self._fail_all(KernelDied(f"the kernel {what}; the result is unknown", state))
        pid = parent_id(msg)
        pending = self._pending.get(pid) if pid else None
        if pending is not None:
            if pending.wants_all or channel != "iopub":
                pending.queue.put_nowait((channel, msg))
        elif channel == "iopub" and mt not in ("status", "execute_input"):
            self._emit("message", msg)

    def _fail_all(self, exc: BaseException) -> None:
        for pending in list(self._pending.values()):
            pending.queue.put_nowait(exc)
        self._pending.clear()


# -- through a Jupyter server's websocket ----------------------------------------------


class WebsocketChannels(KernelChannels):
    """A kernel through ``/api/kernels/{id}/channels`` on its server."""

    transport = "websocket"

    def __init__(self, client: ServerClient, kernel_id: str, *, reconnect: bool = True,
                 protocol: str = "auto", tcp_fix: bool = True, open_timeout: Optional[float] = None):
        super().__init__()
        self.client = client
        self.kernel_id = kernel_id
        self.reconnect = reconnect
        self.protocol = protocol  # auto | v1 | json
        self.tcp_fix = tcp_fix
        self.open_timeout = open_timeout or max(client.timeout, 10.0)
        self.subprotocol: Optional[str] = None
        self._ws: Any = None  # websockets' ClientConnection once open
        self._reader: Optional[asyncio.Task] = None
        self._holding: Optional[contextlib.ExitStack] = None
        self._rearm: Callable[[], None] = lambda: None

    @property
    def url(self) -> str:
        return self.client.ws_url(f"api/kernels/{segment(self.kernel_id, 'kernel id')}/channels?session_id={self.session.session}")

    def _where(self) -> str:
        return f"kernel {self.kernel_id[:8]} on {self.client.name}"

    async def _open(self) -> None:
        from websockets.asyncio.client import ClientConnection
        from websockets.typing import Subprotocol
        from websockets.exceptions import InvalidHandshake, InvalidStatus

        headers = {}
        if self.client.token:
            headers["Authorization"] = f"token {self.client.token}"
        url = self.url
        ssl_ctx = None
        if url.startswith("wss://"):
            ca = getattr(self.client, "ca_bundle", None)
            ssl_ctx = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
        try:
            # The whole handshake (TCP, TLS, HTTP upgrade) under one deadline: a server that
            # accepts and never upgrades costs open_timeout, not more.
            ws: ClientConnection = await asyncio.wait_for(_connect_no_redirect()(
                url, additional_headers=headers, user_agent_header="nbtui",
                subprotocols=[Subprotocol(V1)] if self.protocol in ("auto", "v1") else None,
                compression=None, max_size=None, max_queue=256, ssl=ssl_ctx,
                proxy=None if is_loopback(url) else True, open_timeout=self.open_timeout,
                ping_interval=20, ping_timeout=20, close_timeout=5,
            ), self.open_timeout)
        except InvalidStatus as e:
            code = e.response.status_code
            if code == 404:
                raise ServerError(self.client.name, NOT_FOUND, f"{self._where()}: no such kernel (it is gone)") from None
            if code in (401, 403):
                raise ServerError(self.client.name, AUTH_FAILED, f"token refused on the kernel websocket (HTTP {code})") from None
            if 300 <= code < 400:
                raise ServerError(self.client.name, NOT_JUPYTER, f"kernel websocket answered with a redirect (HTTP {code}): "
                                  "not followed (a Jupyter server never redirects it)") from None
            raise ServerError(self.client.name, UNREACHABLE, f"kernel websocket refused (HTTP {code})") from None
        except (TimeoutError, asyncio.TimeoutError):
            # jupyter_server answers the upgrade only once the kernel answers kernel_info
            # (or its kernel_info_timeout passes): a busy or starting kernel is the usual cause.
            raise ServerError(self.client.name, TIMEOUT, f"kernel websocket: no handshake within "
                              f"{self.open_timeout:g} s ({self._where()}; a Jupyter server waits for "
                              "the kernel to answer first: is it busy or still starting?)") from None
        except (OSError, InvalidHandshake) as e:
            text = redact(str(e) or type(e).__name__).splitlines()[0][:160]
            raise ServerError(self.client.name, UNREACHABLE, f"kernel websocket: {text}") from None
        self._ws = ws
        self.subprotocol = ws.subprotocol
        if self.tcp_fix:
            self._rearm = tune_socket(ws.transport.get_extra_info("socket"))
            rearm, received = self._rearm, ws.data_received

            def data_received(data: bytes) -> None:  # re-arm after each read = before the next
                received(data)
                rearm()

            ws.data_received = data_received  # type: ignore[method-assign]
        self._holding = contextlib.ExitStack()
        self._holding.enter_context(self.client.connections.holding(self.client.name, self.kernel_id))
        self.connected = True

    async def connect(self) -> "WebsocketChannels":
        await self._open()
        self._reader = asyncio.create_task(self._read_loop(), name=f"nbtui-ws-{self.kernel_id[:8]}")
        return self

    async def _send(self, channel: str, msg: dict) -> None:
        from websockets.exceptions import ConnectionClosed

        ws = self._ws
        if ws is None:
            raise ConnectionLost("not connected to the kernel")
        frame: Any
        if msg.get("buffers"):  # a fragmented binary message: no joined copy of the payload
            frame = (encode_v1_fragments if self.subprotocol == V1 else encode_json_fragments)(channel, msg)
        else:
            frame = encode_v1(channel, msg) if self.subprotocol == V1 else encode_json(channel, msg)
        try:
            await ws.send(frame)
        except ConnectionClosed:
            raise ConnectionLost(f"the connection to {self._where()} dropped; the result is unknown") from None

    def _release(self) -> None:
        self.connected = False
        if self._holding is not None:
            self._holding.close()
            self._holding = None

    async def _read_loop(self) -> None:
        from websockets.exceptions import ConnectionClosed

        while True:
            ws = self._ws
            decode = decode_v1 if self.subprotocol == V1 else decode_json
            reason = "closed"
            try:
                while True:
                    self._rearm()
                    data = await ws.recv()
                    try:
                        channel, msg = decode(data)
                    except (ValueError, KeyError, struct.error, IndexError):
                        continue  # a malformed frame is skipped, not fatal
                    self._dispatch(channel, msg)
            except ConnectionClosed as e:
                reason = f"connection closed ({e.rcvd.code if e.rcvd else 'no close frame'})"
            except asyncio.CancelledError:
                self._release()
                raise
            except Exception as e:  # the reader never dies silently
                reason = f"{type(e).__name__}: {redact(str(e))[:120]}"
            self._release()
            if self.closed:
                return
            self._fail_all(ConnectionLost(f"the connection to {self._where()} dropped; the result is unknown"))
            self.state = "unknown"
            self._emit("disconnected", reason)
            if not self.reconnect or not await self._reopen():
                return
            self._emit("reconnected")

    async def _reopen(self) -> bool:
        attempt = 0
        while not self.closed:
            await asyncio.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
            attempt += 1
            try:
                await self._open()
                return True
            except ServerError as e:
                if e.kind == NOT_FOUND:
                    self._emit("gone", str(e))
                    return False
                self._emit("disconnected", f"reconnecting (try {attempt}): {e.detail}")
        return False

    async def close(self) -> None:
        self.closed = True
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        self._release()
        self._fail_all(ChannelError("the kernel connection was closed"))

    async def drop(self) -> None:
        """Drop the line without closing (for tests of reconnection)."""
        if self._ws is not None:
            self._ws.transport.abort()


@functools.lru_cache(maxsize=1)
def _connect_no_redirect() -> type[Any]:
    """websockets' ``connect`` that follows no redirect. It would follow one to any host and
    port (dropping the Authorization header only across origins): a server answering the
    upgrade with ``302 Location: ws://127.0.0.1:PORT/api/kernels/ID/channels`` would put the
    console or ``exec`` of root into whatever kernel it names, or, behind a hub's proxy (one
    origin), send its token to another user's URL."""
    from websockets.asyncio.client import connect

    class NoRedirect(connect):
        def process_redirect(self, exc: Exception) -> Exception | str:
            return exc

    return NoRedirect


# -- local ZMQ, from a connection file ---------------------------------------------------


class ZmqChannels(KernelChannels):
    """A kernel known by its connection file, through jupyter_client's async ZMQ client."""

    transport = "zmq"

    def __init__(self, connection_file: str, info: dict):
        super().__init__()
        self.connection_file = connection_file  # named in messages only: never read again (its
        self.info = info  # owner could swap it for a link to root's after nbtui checked it)
        self._kc: Any = None  # jupyter_client's AsyncKernelClient once connected
        self._tasks: list[asyncio.Task] = []

    async def connect(self) -> "ZmqChannels":
        from jupyter_client.asynchronous import AsyncKernelClient

        kc = AsyncKernelClient()
        try:
            kc.load_connection_info(self.info)  # type: ignore[arg-type]  # checked: key, ports
        except (OSError, ValueError, KeyError) as e:
            raise ChannelError(f"cannot read connection file {self.connection_file}: {type(e).__name__}: {e}") from None
        kc.start_channels()
        self._kc = kc
        self.session = kc.session
        self._channels = {
            "shell": kc.shell_channel, "iopub": kc.iopub_channel,
            "stdin": kc.stdin_channel, "control": kc.control_channel,
        }
        self._tasks = [asyncio.create_task(self._pump(name, ch)) for name, ch in self._channels.items()]
        self.connected = True
        return self

    async def _pump(self, name: str, channel: AsyncZMQSocketChannel) -> None:
        while True:
            try:
                # Zero-copy receive: binary buffers stay views of the ZMQ frames (migrate
                # forwards payload chunks without copying them).
                frames = await channel.socket.recv_multipart(copy=False)
                _, parts = self.session.feed_identities(frames, copy=False)
                msg = self.session.deserialize(parts, content=True, copy=False)
            except asyncio.CancelledError:
                raise
            except Exception:
                if self.closed:
                    return
                await asyncio.sleep(0.05)
                continue
            self._dispatch(name, msg)

    async def _send(self, channel: str, msg: dict) -> None:
        if self._kc is None:
            raise ConnectionLost("not connected to the kernel")
        self._channels[channel].send(msg)

    async def wait_for_ready(self, timeout: float = 30) -> None:
        """Poll kernel_info until the kernel answers (and iopub is subscribed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                await self.kernel_info(timeout=1)
                return
            except TimedOut:
                if loop.time() > deadline:
                    raise TimedOut(f"the kernel of {self.connection_file} did not answer within {timeout:g} s") from None

    async def close(self) -> None:
        self.closed = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        if self._kc is not None:
            self._kc.stop_channels()
            self._kc = None
        self.connected = False
        self._fail_all(ChannelError("the kernel connection was closed"))


# -- one-shot helpers --------------------------------------------------------------------


async def request_usage(client: ServerClient, kernel_id: str, timeout: float) -> dict:
    """The kernel's ``usage_request`` reply content (pid, kernel_cpu, kernel_memory, …).

    Opens a websocket, asks on the control channel, closes. This moves the kernel's
    ``last_activity`` (see DESIGN.md): call it for a kernel the user asked about, never
    in a silent poll. Raises ServerError (cannot connect), TimedOut, or ChannelError.
    """
    channels = WebsocketChannels(client, kernel_id, reconnect=False, open_timeout=timeout)

    async def ask() -> dict:
        await channels.connect()
        return await channels.usage(timeout=None)

    try:
        return await asyncio.wait_for(ask(), timeout)
    except asyncio.TimeoutError:
        raise TimedOut(f"kernel {kernel_id[:8]} on {client.name}: no usage reply within {timeout:g} s") from None
    finally:
        await channels.close()
