"""One kernel session: what the TUI console renders and `nbtui exec` prints.

A ``KernelSession`` holds one websocket to one kernel of the fleet and does the kernel
work both views need: connect (kernel_info, the execution count, the language), run code
with its outputs, stream by stream, as they arrive (``on_output``) and the kernel's input
requests (``on_input``), interrupt and restart (through ``nbtui.service.actions``: the readonly
gate, the re-check, the audit line), complete and inspect (both wait for the kernel to be
ready first: a fresh kernel's first completion is not a failure), ``is_complete``, the
per-kernel-spec history and what a reconnect means (did the kernel survive?).

It never touches the screen: views subscribe to its events and render them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional, TypeVar

from nbtui.service.actions.gate import require_writable
from nbtui.service.actions.kernels import interrupt_kernel, restart_kernel
from nbtui.core.errors import TimedOut
from nbtui.files.console_history import History
from nbtui.jupyter.channels import ChannelError, ConnectionLost, Event, KernelDied, WebsocketChannels, msg_type
from nbtui.jupyter.rest import TIMEOUT, ServerError
from nbtui.display.outputs import Outputs, output_of
from nbtui.core.model import Kernel, normalize_state

T = TypeVar("T")

__all__ = ["SERVER_HOLDS_OPEN", "TIMEOUT", "ChannelError", "Completion", "ConnectionLost", "Event", "KernelDied", "KernelSession", "RunResult",
           "ServerError"]

READY_WAIT = 60.0  # seconds a completion or help request waits for a starting kernel
KERNEL_INFO_TIMEOUT = 30.0
# jupyter_server holds a kernel websocket's upgrade until the kernel answers kernel_info,
# giving up after its kernel_info_timeout (60 s by default) and opening anyway: a console
# on a busy kernel waits that long, plus a margin for the server itself.
SERVER_HOLDS_OPEN = 65.0


@dataclass
class RunResult:
    """How one execution ended: ``status`` ok / error / aborted / timeout, or None when unknown."""

    status: Optional[str] = None
    execution_count: Optional[int] = None
    reply: dict = field(default_factory=dict)
    asked_input: bool = False
    outputs: Optional[Outputs] = None  # every output, as a notebook keeps them (keep_outputs)


@dataclass(frozen=True)
class Completion:
    matches: tuple[str, ...]
    start: int
    end: int


class KernelSession:
    """A session with one kernel (``fleet``'s server ``server``, kernel ``kernel_id``).

    The websocket lives on the caller's loop. What goes through the fleet (the kernel's REST
    read, interrupt, restart) goes through ``act`` where the fleet runs on a loop of its own
    (the TUI's fleet service: ``act`` runs ``fn(fleet)`` there); without ``act`` (a command,
    one loop) it is awaited here."""

    def __init__(self, fleet: Any, server: str, kernel_id: str, *, reconnect: bool = True,
                 act: Optional[Callable[[Callable[[Any], Awaitable[Any]]], Awaitable[Any]]] = None):
        self.fleet = fleet
        self._act = act
        self.server = server
        self.kernel_id = kernel_id
        self.reconnect = reconnect
        self.channels: Optional[WebsocketChannels] = None
        self.info: dict = {}
        self.language = "python"
        self.kernel_name = "?"
        self.count: Optional[int] = None  # the kernel's last execution count
        self.history: Optional[History] = None
        self.ready = asyncio.Event()  # set once the kernel answered kernel_info
        self._listeners: list[Callable[[Event], None]] = []

    async def through_fleet(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """``fn(fleet)`` on the fleet's own loop (through ``act``), or here."""
        if self._act is not None:
            return await self._act(fn)
        return await fn(self.fleet)

    # -- connection ---------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.channels is not None and self.channels.connected

    @property
    def state(self) -> str:
        return self.channels.state if self.channels is not None else "unknown"

    def listen(self, callback: Callable[[Event], None]) -> None:
        """Channel events (status, disconnected, reconnected, gone) go to ``callback``."""
        self._listeners.append(callback)
        if self.channels is not None:
            self.channels.listen(callback)

    async def open(self, open_timeout: Optional[float] = None) -> None:
        """Open the websocket (raises ServerError / ChannelError when it cannot be); the
        handshake is bounded as a whole by ``open_timeout`` (default: the channels' own)."""
        async def client_of(fleet: Any) -> Any:
            return fleet.client(self.server)  # made on the fleet's loop; the websocket reads its address and token

        channels = WebsocketChannels(await self.through_fleet(client_of), self.kernel_id, reconnect=self.reconnect,
                                     open_timeout=open_timeout)
        await channels.connect()
        self.channels = channels
        for callback in self._listeners:
            channels.listen(callback)

    async def start(self, *, fallback_name: str = "?") -> None:
        """After ``open()``: the kernel's info, execution count, language and history.
        Raises ChannelError/TimedOut when the kernel does not answer (the session stays
        open: the kernel may answer later)."""
        self.kernel_name = await self._spec_name(fallback_name)
        self.history = History(self.kernel_name)
        self.info = await self._channels().kernel_info(timeout=KERNEL_INFO_TIMEOUT)
        self.language = (self.info.get("language_info") or {}).get("name") or "?"
        self.count = await self._channels().execution_count(timeout=KERNEL_INFO_TIMEOUT)
        self.ready.set()

    async def _spec_name(self, fallback: str) -> str:
        """The kernel spec's name (history is kept per spec)."""
        try:
            name = (await self.through_fleet(lambda fleet: fleet.client(self.server).kernel(self.kernel_id))).get("name")
        except Exception:
            name = None
        return name if isinstance(name, str) and name else fallback

    async def close(self) -> None:
        channels, self.channels = self.channels, None
        if channels is not None:
            await channels.close()

    def _channels(self) -> WebsocketChannels:
        if self.channels is None:
            raise ChannelError(f"not connected to {self.server}:{self.kernel_id[:8]}")
        return self.channels

    async def wait_ready(self, timeout: float = READY_WAIT) -> None:
        """Until the kernel answers (a starting kernel does not, for a while); raises TimedOut."""
        if self.ready.is_set():
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            try:
                await asyncio.wait_for(asyncio.shield(self.ready.wait()), 0.5)
                return
            except asyncio.TimeoutError:
                pass
            if self.channels is not None and self.channels.connected:
                try:
                    await self.channels.kernel_info(timeout=min(2.0, max(0.1, deadline - loop.time())))
                    self.ready.set()
                    return
                except (ChannelError, TimedOut):
                    await asyncio.sleep(0.2)
        raise TimedOut(f"the kernel did not become ready within {timeout:g} s")

    async def wait_restarted(self, timeout: float = 120.0) -> bool:
        """After a restart: ask until the fresh kernel answers; whether it did in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.channels is not None and loop.time() < deadline:
            try:
                await self.channels.kernel_info(timeout=2)
                self.count = 0
                return True
            except Exception:
                await asyncio.sleep(0.5)
        return False

    async def after_reconnect(self) -> tuple[Optional[int], Optional[int]]:
        """The execution count before and after a reconnect: lower after means the kernel
        was restarted meanwhile (its variables are gone). Raises when it does not answer."""
        before = self.count
        now = await self._channels().execution_count(timeout=KERNEL_INFO_TIMEOUT)
        self.count = now
        return before, now

    @staticmethod
    def survived(before: Optional[int], now: Optional[int]) -> bool:
        return before is None or now is None or now >= before

    # -- running ------------------------------------------------------------------------

    async def run(
        self, code: str, *,
        on_output: Callable[[dict, str, Optional[Outputs]], None],
        on_input: Optional[Callable[[dict], Awaitable[Optional[str]]]] = None,
        on_started: Optional[Callable[[Optional[int]], None]] = None,
        timeout: Optional[float] = None,
        store_history: bool = True,
        keep_outputs: bool = True,
        interrupt_on_cancel: bool = False,
    ) -> RunResult:
        """Run ``code``; each output message goes to ``on_output(msg, change, outputs)`` as
        it comes: ``change`` says what it did to the cell's outputs (``Outputs.add``:
        append, stream, reset, none), ``outputs`` are all of them (with ``keep_outputs``;
        else None and ``change`` is "append" for every output message).

        ``on_input(msg)`` answers the kernel's ``input()`` (None: leave it unanswered,
        the caller interrupts); without it the kernel is told input is not allowed.
        ``timeout`` bounds the whole run: past it the kernel is interrupted, the cell is
        given 5 s to finish, and the result's status is "timeout". With ``interrupt_on_cancel``, cancelling
        the run (ctrl+c in `nbtui exec`) interrupts the kernel too; a console that is left
        lets the code run on.
        Raises ChannelError (ConnectionLost, KernelDied) when the result became unknown.
        """
        require_writable(self.fleet, "running code")
        channels = self._channels()
        result = RunResult(outputs=Outputs() if keep_outputs else None)
        ex = await channels.execute(code, allow_stdin=on_input is not None, store_history=store_history)

        async def drain() -> None:
            async for msg in ex:
                mt = msg_type(msg)
                if mt == "execute_input":
                    if on_started is not None:
                        on_started(msg["content"].get("execution_count"))
                elif mt == "input_request":
                    value = await on_input(msg) if on_input is not None else None
                    if on_input is None:
                        result.asked_input = True  # asked although told it may not
                        await channels.input_reply("", msg)
                    elif value is not None:
                        await channels.input_reply(value, msg)
                elif mt == "execute_reply":
                    count = msg["content"].get("execution_count")
                    if isinstance(count, int):
                        self.count = count
                elif result.outputs is not None:
                    change = result.outputs.add(msg)
                    if change != "none":
                        on_output(msg, change, result.outputs)
                elif output_of(msg) is not None:
                    on_output(msg, "append", None)

        try:
            await asyncio.wait_for(drain(), timeout)
        except asyncio.TimeoutError:
            await self.interrupt()
            try:  # let the interrupted cell finish so the kernel is free again
                await asyncio.wait_for(ex.wait(), 5)
            except (asyncio.TimeoutError, ChannelError):
                pass
            result.status = "timeout"
            return result
        except asyncio.CancelledError:
            if not interrupt_on_cancel:
                raise
            try:
                await asyncio.wait_for(self.interrupt(), 3)
            except BaseException:
                pass
            raise
        finally:
            ex.cancel()
        reply = ex.reply["content"] if ex.reply else {}
        result.reply = reply
        result.status = reply.get("status")
        result.execution_count = reply.get("execution_count")
        if reply.get("ename") == "StdinNotImplementedError":
            result.asked_input = True
        return result

    # -- the rest of the protocol --------------------------------------------------------

    async def interrupt(self, k: Optional[Kernel] = None) -> None:
        """Through the server (``actions``: readonly gate, re-check); ``k`` as the
        snapshot knows it, where the caller has one."""
        kernel = k or self.kernel()
        await self.through_fleet(lambda fleet: interrupt_kernel(fleet, kernel))

    async def restart(self, k: Optional[Kernel] = None) -> None:
        """Restart (its variables are lost): re-checked and audited by ``actions``."""
        kernel = k or self.kernel()
        await self.through_fleet(lambda fleet: restart_kernel(fleet, kernel))
        self.count = 0

    async def is_complete(self, code: str) -> tuple[str, Optional[str]]:
        """(status, indent) of ``code``; "complete" when the kernel cannot say in time."""
        if self.channels is None:
            return "complete", None
        try:
            reply = await self.channels.is_complete(code, timeout=2)
        except Exception:
            return "complete", None
        return reply.get("status", "complete"), reply.get("indent")

    async def complete(self, code: str, cursor_pos: int, *, timeout: float = 10.0) -> Completion:
        await self.wait_ready()
        reply = await self._channels().complete(code, cursor_pos, timeout=timeout)
        matches = tuple(m for m in reply.get("matches") or [] if isinstance(m, str))[:200]
        start, end = reply.get("cursor_start", cursor_pos), reply.get("cursor_end", cursor_pos)
        return Completion(matches, start if isinstance(start, int) else cursor_pos,
                          end if isinstance(end, int) else cursor_pos)

    async def inspect(self, code: str, cursor_pos: int, *, timeout: float = 10.0) -> Optional[str]:
        """The kernel's help text on the object at ``cursor_pos`` (None: none found)."""
        from nbtui.display.outputs import plain_text
        await self.wait_ready()
        reply = await self._channels().inspect(code, cursor_pos, detail_level=0, timeout=timeout)
        return plain_text(reply.get("data") or {}) if reply.get("found") else None

    def kernel(self, snapshot: Any = None) -> Kernel:
        """This kernel as the latest snapshot knows it (or a bare record)."""
        for k in getattr(snapshot, "kernels", ()) or ():
            if k.server == self.server and k.kernel_id == self.kernel_id:
                return k
        return Kernel(self.server, self.kernel_id, self.kernel_name, normalize_state(self.state), None, None)
