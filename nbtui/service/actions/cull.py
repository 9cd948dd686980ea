"""Cull: what a policy selects (idle kernels, orphans, GPU holders), planned as kill steps,
and the lock that lets one cull run at a time on a host."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional

from nbtui.core import orphans
from nbtui.core.errors import NbtuiError, NotFound
from nbtui.core.model import Kernel, Process, Snapshot, Terminal
from nbtui.files.config import state_dir
from nbtui.host import signals
from nbtui.service.actions.kill import Step, plan_kernel, plan_process, plan_terminal


@dataclass(frozen=True)
class CullPolicy:
    idle: Optional[float] = None  # idle kernels past it, no client connected
    gpu_only: bool = False  # only what holds GPU memory
    orphans: bool = False  # every kernel and process with a reason
    servers: tuple[str, ...] = ()
    gpu_idle: Optional[float] = None  # holding GPU memory at 0 % SM this long (needs history)

    @property
    def selects_anything(self) -> bool:
        return self.idle is not None or self.orphans or self.gpu_idle is not None


def _gpu_idle_past(seconds: Optional[float], policy: CullPolicy) -> bool:
    return policy.gpu_idle is not None and seconds is not None and seconds >= policy.gpu_idle


def cull_selects_kernel(k: Kernel, policy: CullPolicy) -> bool:
    # --server HUB covers its users' servers HUB/USER[/SERVER] (a configured name holds no "/")
    if policy.servers and k.server not in policy.servers and k.server.partition("/")[0] not in policy.servers:
        return False
    chosen = False
    if policy.idle is not None and k.idle_seconds is not None and k.connections is not None:
        others = k.connections - k.own_connections
        chosen = others <= 0 and orphans.kernel_is_idle(k, policy.idle)
    if policy.orphans and k.orphan_reasons:
        chosen = True
    if _gpu_idle_past(k.gpu_idle_seconds, policy):
        chosen = True
    if chosen and policy.gpu_only:
        chosen = bool(k.usage and k.usage.gpu_memory_bytes)
    return chosen


def cull_selects_process(p: Process, policy: CullPolicy) -> bool:
    if policy.servers:
        return False
    if not ((policy.orphans and p.orphan_reasons) or _gpu_idle_past(p.gpu_idle_seconds, policy)):
        return False
    return bool(p.gpu_memory_bytes) if policy.gpu_only else True


def cull_selects_terminal(t: Terminal, policy: CullPolicy) -> bool:
    """A terminal goes by --orphans (terminal-idle, gpu-idle) or --gpu-idle; --idle alone
    never selects one (nobody can tell whether someone watches it)."""
    if policy.servers and t.server not in policy.servers:
        return False
    if not ((policy.orphans and t.orphan_reasons) or _gpu_idle_past(t.gpu_idle_seconds, policy)):
        return False
    return bool(t.usage and t.usage.gpu_memory_bytes) if policy.gpu_only else True


def plan_cull(snapshot: Snapshot, policy: CullPolicy) -> list[Step]:
    """Kernels of readable servers and leftover processes that the policy selects.

    A process already in a selected kernel's tree goes with that kernel, not twice.
    """
    readable = {s.name for s in snapshot.servers if s.ok}
    protected = signals.ancestors_of_self()
    steps = [plan_kernel(snapshot, k, protected) for k in snapshot.kernels
             if k.server in readable and cull_selects_kernel(k, policy)]
    steps += [plan_terminal(snapshot, t, protected) for t in snapshot.terminals
              if t.server in readable and cull_selects_terminal(t, policy)]
    covered = {c.pid for s in steps for c in (([s.process] if s.process else []) + list(s.children))}
    for p in snapshot.processes:
        if p.pid in covered or not cull_selects_process(p, policy):
            continue
        try:
            step = plan_process(snapshot, p.pid, explicit=False, protected=protected)
        except NotFound:
            continue  # gone since it was listed: nothing to cull
        steps.append(step)
        covered.update(c.pid for c in step.children)
    return steps


class CullBusy(NbtuiError):
    """Another cull holds the lock."""


@contextmanager
def cull_lock() -> Iterator[None]:
    """One cull at a time on this host, across processes (an flock on the state folder)."""
    import fcntl

    from nbtui.files.safefile import open_fd
    path = state_dir() / "cull.lock"
    fd = open_fd(path, os.O_RDWR | os.O_CREAT)  # never through a symlink: as root it would truncate its target
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise CullBusy(f"another nbtui cull is running (pid {holder}); try again when it ends") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
