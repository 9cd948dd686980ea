"""Usage through a kernel's control channel (``usage_request``), only when the user asks.

This touches the kernel: the server counts the messages it causes, so the kernel's
``last_activity`` moves to now (DESIGN.md, "Observe without disturbing"). It is for
``nbtui ls --probe`` and the TUI's detail pane, never for a periodic poll. nbtui's own
connection is not counted as someone connected (nbtui.jupyter.own, via channels).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from typing import TYPE_CHECKING, Optional, Protocol

from nbtui.core import model
from nbtui.core.errors import NbtuiError
if TYPE_CHECKING:  # for the type only: no import at run time, as before
    from nbtui.jupyter.rest import ServerClient
CONTROL: model.UsageSource = "control"
# ipykernel's first usage_reply carries a meaningless 0.0 CPU (psutil's first sample):
# a second request this long after the first gives a measured one.
CPU_INTERVAL = 0.25
MAX_PARALLEL = 8


class Clients(Protocol):
    """What a probe needs of the fleet (``nbtui.service.fleet.Fleet``, a layer above): a server's client."""

    def client(self, name: str) -> ServerClient: ...


def _num(v: object) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        return None
    return float(v)


def usage_from_reply(first: dict, second: Optional[dict]) -> model.Usage:
    """A Usage from two usage_reply contents (the CPU % is only trusted from the second)."""
    last = second if isinstance(second, dict) else first
    pid = last.get("pid")
    mem = _num(last.get("kernel_memory"))
    return model.Usage(
        source=CONTROL,
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None,
        host=last.get("hostname") if isinstance(last.get("hostname"), str) else None,
        cpu_percent=None if second is None else _num(second.get("kernel_cpu")),
        memory_bytes=None if mem is None else int(mem),
        note="from the kernel's usage_request (memory is PSS where the kernel can read it); no GPU figures",
    )


async def probe_kernel(fleet: Clients, kernel: model.Kernel, timeout: float) -> model.Usage:
    """Ask one kernel for its usage (raises NbtuiError when it cannot be asked)."""
    from nbtui.jupyter.channels import request_usage
    client = fleet.client(kernel.server)
    first = await request_usage(client, kernel.kernel_id, timeout)
    await asyncio.sleep(CPU_INTERVAL)
    try:
        second = await request_usage(client, kernel.kernel_id, timeout)
    except NbtuiError:
        second = None
    return usage_from_reply(first, second)


async def probe_missing(fleet: Clients, snap: model.Snapshot, timeout: float = 5.0) -> tuple[model.Snapshot, list[str]]:
    """Fill usage, through the control channel, for kernels that no other source covered.

    Returns the new snapshot and one line per kernel that could not be asked.
    """
    ok = {s.name for s in snap.servers if s.ok}
    targets = [k for k in snap.kernels if k.usage is None and k.server in ok and k.state != "dead"]
    gate = asyncio.Semaphore(MAX_PARALLEL)

    async def one(k: model.Kernel) -> model.Usage:
        async with gate:
            return await probe_kernel(fleet, k, timeout)

    answers = await asyncio.gather(*(one(k) for k in targets), return_exceptions=True)
    found, errors = {}, []
    for k, a in zip(targets, answers):
        if isinstance(a, model.Usage):
            found[k.key] = a
        elif isinstance(a, NbtuiError):
            errors.append(f"probe {k.server}:{k.kernel_id[:8]}: {a}")
        else:
            errors.append(f"probe {k.server}:{k.kernel_id[:8]}: {type(a).__name__}: {a}")
    kernels = tuple(replace(k, usage=found.get(k.key, k.usage)) for k in snap.kernels)
    return replace(snap, kernels=kernels), errors
