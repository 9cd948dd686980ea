"""Stop a hub user's single-user server through its hub (``server:HUB/USER[/SERVER]``,
``cull --servers``): plan, re-check right before, audit."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from nbtui.core.kinds import SERVER, Kind
from nbtui.core.model import Kernel, ServerInfo, Snapshot
from nbtui.core.text import visible
from nbtui.core.units import human_duration
from nbtui.display.frees import frees
from nbtui.files import audit
from nbtui.jupyter.rest import NOT_FOUND, ServerError
from nbtui.service.actions.gate import require_writable
from nbtui.service.actions.kernels import SHUTDOWN_TIMEOUT
from nbtui.service.actions.kill import Outcome
from nbtui.service.fleet import Fleet

STOP_WAIT = 30.0  # seconds to wait for the hub to finish stopping a server


@dataclass(frozen=True)
class ServerStep:
    """Stop one user's single-user server through its hub (its kernels go with it)."""

    target: str  # server:HUB/USER[/SERVER]
    server: ServerInfo
    kernels: tuple[Kernel, ...] = ()
    refusal: Optional[str] = None
    reasons: tuple[str, ...] = ()
    explanation: str = ""
    idle_after: Optional[float] = None  # cull --servers: the threshold re-checked before acting
    kind: Kind = SERVER

    @property
    def owner(self) -> Optional[str]:
        return self.server.user

    @property
    def memory_bytes(self) -> Optional[int]:
        values = [k.usage.memory_bytes for k in self.kernels if k.usage and k.usage.memory_bytes]
        return sum(values) if values else None

    @property
    def gpu_memory_bytes(self) -> Optional[int]:
        values = [k.usage.gpu_memory_bytes for k in self.kernels if k.usage and k.usage.gpu_memory_bytes]
        return sum(values) if values else None

    @property
    def notebook(self) -> Optional[str]:
        return None

    def audit_target(self) -> dict[str, Any]:
        s = self.server
        return {"server": s.name, "hub": s.hub, "user": s.user, "server_name": s.server_name,
                "started": s.started.isoformat() if s.started else None,
                "hub_last_activity": s.hub_last_activity.isoformat() if s.hub_last_activity else None,
                "kernels": [k.kernel_id for k in self.kernels],
                "memory_bytes": self.memory_bytes, "gpu_memory_bytes": self.gpu_memory_bytes}

    def json(self) -> dict[str, Any]:
        s = self.server
        return {"kind": SERVER, "target": self.target, "server": s.name, "hub": s.hub, "user": s.user,
                "server_name": s.server_name, "kernels": len(self.kernels),
                "hub_last_activity": s.hub_last_activity,  # (a time: print_json writes it as ls --json does)
                "memory_bytes": self.memory_bytes, "gpu_memory_bytes": self.gpu_memory_bytes,
                "reasons": list(self.reasons), "explanation": self.explanation, "refused": self.refusal}

    def describe(self) -> str:
        n = len(self.kernels)
        text = f"server {visible(self.server.name)} of user {visible(self.server.user)} ({n} kernel{'s' if n != 1 else ''})"
        freed = frees(self.memory_bytes, self.gpu_memory_bytes)
        if freed:
            text += "; frees " + freed
        if self.refusal:
            text += f" — REFUSED: {self.refusal}"
        return text


@dataclass
class ServerOutcome(Outcome):
    """An Outcome of a ServerStep: no process fates (the hub's spawner ends the server), and
    ``interrupted`` stays False (a stop through the hub is one request, never cut short)."""

    step: ServerStep  # type: ignore[assignment]  # a server step, not a kernel or process one
    result: str  # ok | gone | stopping | refused: … | failed: …

    OK_RESULTS: ClassVar[tuple[str, ...]] = ("ok", "gone", "stopping")

    def describe(self) -> str:
        return f"{visible(self.step.target)}: {self.result}"


def plan_stop_server(snapshot: Snapshot, server: ServerInfo, *, reasons: tuple[str, ...] = (),
                     explanation: str = "", idle_after: Optional[float] = None) -> ServerStep:
    refusal = None
    if server.pending == "stop":
        refusal = "the hub is stopping it already"
    elif server.pending == "spawn":
        refusal = "it is still starting (pending spawn)"
    kernels = tuple(k for k in snapshot.kernels if k.server == server.name)
    return ServerStep(f"server:{server.name}", server, kernels, refusal, reasons, explanation, idle_after)


def plan_cull_servers(snapshot: Snapshot, idle: float, only: tuple[str, ...] = ()) -> list[ServerStep]:
    """Hub users' servers whose hub last_activity is older than ``idle`` (what
    jupyterhub-idle-culler does); unknown activity is never idle."""
    now = snapshot.generated_at
    steps = []
    for s in snapshot.servers:
        if s.source != "hub" or s.user is None or s.pending or s.hub_last_activity is None:
            continue
        if only and s.name not in only and s.hub not in only:
            continue
        idle_for = (now - s.hub_last_activity).total_seconds()
        if idle_for >= idle:
            steps.append(plan_stop_server(snapshot, s, reasons=("server-idle",), idle_after=idle,
                                          explanation=f"no activity on the hub for {human_duration(idle_for)}"))
    return steps


def _hub_server_now(user_model: Any, server_name: str) -> Optional[dict[str, Any]]:
    servers = user_model.get("servers") if isinstance(user_model, dict) else None
    s = servers.get(server_name) if isinstance(servers, dict) else None
    return s if isinstance(s, dict) else None


async def stop_servers(fleet: Fleet, steps: list[ServerStep], *, action: str = "stop",
                       wait: float = STOP_WAIT) -> list[ServerOutcome]:
    """Stop each server through its hub: re-checked right before (still listed, the same
    start, still idle for a cull), an audit line before acting and one with the result."""
    from nbtui.core.units import parse_time
    require_writable(fleet, "stopping servers", plan=True)

    async def one(step: ServerStep) -> ServerOutcome:
        s = step.server
        if step.refusal:
            return _audited(action, step, ServerOutcome(step, f"refused: {step.refusal}"))
        user = s.user
        if user is None:
            return _audited(action, step, ServerOutcome(step, "refused: not a hub user's server"))
        try:
            hub = fleet.hub_of(s.hub or "").client()
            now = _hub_server_now(await hub.user(user), s.server_name or "")
        except (KeyError, ServerError) as e:
            return _audited(action, step, ServerOutcome(step, f"failed: {e}", server_error=True))
        if now is None:
            return _audited(action, step, ServerOutcome(step, "gone"))
        started, last = parse_time(now.get("started")), parse_time(now.get("last_activity"))
        refusal = None
        if s.started is not None and started != s.started:
            refusal = "it was restarted since it was listed"
        elif now.get("pending") == "stop":
            refusal = "the hub is stopping it already"
        elif step.idle_after is not None and (last is None or (
                _utcnow() - last).total_seconds() < step.idle_after):
            refusal = "it was active again since it was listed"
        if refusal:
            return _audited(action, step, ServerOutcome(step, f"refused: {refusal}"))
        try:
            audit.record(action, step.audit_target(), "requested")
        except OSError as e:  # no audit line, no action
            return ServerOutcome(step, f"refused: could not write the audit log {audit.audit_path()}: {e.strerror or e}",
                                 audit_error=f"could not write the audit log {audit.audit_path()}: {e.strerror or e}")
        try:  # the hub answers when the spawner stopped it, or 202 after its slow_stop_timeout (10 s)
            await hub.stop_server(user, s.server_name or "", timeout=max(hub.timeout, SHUTDOWN_TIMEOUT))
        except ServerError as e:
            if e.kind != "timeout":  # a slow stop goes on at the hub: wait for it below
                result = "gone" if e.kind == NOT_FOUND else f"failed: {e}"
                return _audited(action, step, ServerOutcome(step, result, server_error=e.kind != NOT_FOUND))
        deadline = asyncio.get_running_loop().time() + wait
        while True:  # the hub answers 202 while the spawner stops it: wait until it is gone
            try:
                if _hub_server_now(await hub.user(user), s.server_name or "") is None:
                    return _audited(action, step, ServerOutcome(step, "ok"))
            except ServerError as e:
                if e.kind == NOT_FOUND:
                    return _audited(action, step, ServerOutcome(step, "ok"))
            if asyncio.get_running_loop().time() >= deadline:
                return _audited(action, step, ServerOutcome(step, "stopping"))
            await asyncio.sleep(0.5)

    return list(await asyncio.gather(*(one(s) for s in steps)))


def _audited(action: str, step: ServerStep, outcome: ServerOutcome) -> ServerOutcome:
    try:
        audit.record(action, step.audit_target(), outcome.result, reasons=list(step.reasons))
    except OSError as e:
        outcome.audit_error = f"could not write the audit log {audit.audit_path()}: {e.strerror or e}"
    return outcome


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
