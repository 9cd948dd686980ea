"""Actions that change kernels and processes, shared by the CLI and the TUI.

Each re-checks its target right before acting and writes one audit line.
"""

from __future__ import annotations

from nbtui import audit
from nbtui.fleet import Fleet
from nbtui.jupyter.rest import ServerError
from nbtui.model import Kernel


def kernel_audit_target(k: Kernel) -> dict:
    u = k.usage
    return {
        "server": k.server,
        "kernel_id": k.kernel_id,
        "notebook": k.session.path if k.session else None,
        "pid": u.pid if u else None,
        "memory_bytes": u.memory_bytes if u else None,
        "gpu_memory_bytes": u.gpu_memory_bytes if u else None,
    }


async def recheck_kernel(fleet: Fleet, k: Kernel) -> None:
    """Raise ServerError (kind not-found) if the kernel is no longer on its server."""
    await fleet.client(k.server).kernel(k.kernel_id)


async def interrupt_kernel(fleet: Fleet, k: Kernel) -> None:
    """Interrupt (SIGINT or interrupt_request, as the kernel spec says) through the server."""
    await recheck_kernel(fleet, k)
    await fleet.client(k.server).interrupt(k.kernel_id)


async def restart_kernel(fleet: Fleet, k: Kernel) -> None:
    """Restart a kernel (its variables are lost): re-checked, audited."""
    target = kernel_audit_target(k)
    try:
        await recheck_kernel(fleet, k)
        await fleet.client(k.server).restart(k.kernel_id)
    except ServerError as e:
        audit.record("restart", target, f"failed: {e}")
        raise
    audit.record("restart", target, "ok")
