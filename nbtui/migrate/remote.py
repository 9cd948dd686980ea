"""nbtui's end of the in-kernel agent (agent.py): install it, call it, remove it.

Every call is one silent execute request (no history, no execute_input) through the
kernel's channels (nbtui/jupyter/channels.py, websocket or ZMQ). The agent answers with
``comm_msg`` messages parented to the request; an exception in the agent comes back as
an error reply and is raised here as :class:`AgentError`. nbtui never unpickles: what
it receives is JSON and opaque bytes that it hands on.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Optional, Sequence

from nbtui.core.errors import NbtuiError, TimedOut
from nbtui.jupyter.channels import Execution, KernelChannels, KernelDied, msg_type
from nbtui.migrate import agent as _agent

COMM_ID = _agent.COMM_ID
NAME = _agent.NAME


class AgentError(NbtuiError):
    """The agent raised in the kernel; the message carries the kernel's error name and text."""


def _source() -> str:
    return Path(_agent.__file__).read_text(encoding="utf-8")


def _install_code() -> str:
    # Run in a namespace of its own: nothing but the hidden agent reaches the user's.
    code = _source() + "\ninstall()\n"
    return f"exec(compile({code!r}, '<nbtui-migrate-agent>', 'exec'), {{'__name__': 'nbtui_migrate_agent'}})"


def _code(method: str, args: Sequence[Any]) -> str:
    return f"{NAME}.{method}({', '.join(repr(a) for a in args)})"


class Call:
    """One request to the agent, sent; ``result()`` drains it."""

    def __init__(self, agent: "Agent", ex: Execution) -> None:
        self.agent = agent
        self.ex = ex

    async def result(self, timeout: Optional[float] = None) -> list[tuple[dict, list]]:
        """The agent's answers as (JSON, buffers); AgentError if it raised, TimedOut."""
        ex, results = self.ex, []

        async def drain() -> None:
            async for msg in ex:
                if msg_type(msg) == "comm_msg":
                    content = msg.get("content") or {}
                    if content.get("comm_id") == COMM_ID:
                        results.append((content.get("data") or {}, list(msg.get("buffers") or ())))

        limit = timeout or self.agent.timeout
        label = self.agent.label
        alive = getattr(self.agent.channels, "alive", None)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        task = asyncio.ensure_future(drain())
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=min(1.0, max(0.0, deadline - loop.time())))
                if task.done():
                    break
                if alive is not None and not alive():
                    raise KernelDied(f"the {label} kernel died", "dead")
                if loop.time() >= deadline:
                    raise TimedOut(f"the {label} kernel did not answer within {limit:g} s")
            task.result()
        except KernelDied:
            self.agent.installed = False  # its namespace died with it: nothing left to uninstall
            raise
        finally:
            if not task.done():
                task.cancel()
                ex.cancel()
        reply = (ex.reply or {}).get("content") or {}
        if reply.get("status") != "ok":
            ename, evalue = reply.get("ename") or "error", reply.get("evalue") or ""
            raise AgentError(f"the {label} kernel raised {ename}: {evalue}".strip()[:400])
        return results

    def cancel(self) -> None:
        self.ex.cancel()


class Agent:
    """Calls into the agent of one kernel."""

    def __init__(self, channels: KernelChannels, label: str, timeout: float = 600.0):
        self.channels = channels
        self.label = label  # "source" / "target", for messages
        self.timeout = timeout
        self.installed = False

    async def _run(self, code: str, buffers: Optional[Sequence[Any]] = None,
                   timeout: Optional[float] = None) -> list[tuple[dict, list]]:
        return await (await self._start(code, buffers)).result(timeout)

    async def _start(self, code: str, buffers: Optional[Sequence[Any]] = None) -> "Call":
        ch = self.channels
        if buffers:
            ex = await ch.execute_buffers(code, list(buffers))
        else:
            ex = await ch.execute(code, silent=True, store_history=False, allow_stdin=False)
        return Call(self, ex)

    async def start(self, method: str, *args: Any, buffers: Optional[Sequence[Any]] = None) -> "Call":
        """Send a call without waiting for it (calls run in the order sent); ``await call.result()``."""
        return await self._start(_code(method, args), buffers)

    async def call(self, method: str, *args: Any, buffers: Optional[Sequence[Any]] = None,
                   timeout: Optional[float] = None) -> list[tuple[dict, list]]:
        return await self._run(_code(method, args), buffers, timeout)

    async def one(self, method: str, *args: Any, timeout: Optional[float] = None) -> dict:
        """Call and return the single JSON answer."""
        results = await self.call(method, *args, timeout=timeout)
        if not results:
            raise AgentError(f"the {self.label} kernel's agent did not answer {method}")
        return results[-1][0]

    async def install(self) -> None:
        await self._run(_install_code(), timeout=60)
        self.installed = True

    async def uninstall(self) -> None:
        """Remove the agent and what it holds; best effort (the kernel may be gone)."""
        if not self.installed:
            return
        self.installed = False
        try:
            await self.call("uninstall", timeout=30)
        except Exception:
            pass
