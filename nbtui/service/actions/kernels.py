"""Interrupt and restart a kernel through its server, and the re-check every action makes
right before it acts."""

from __future__ import annotations

from nbtui.core.model import Kernel
from nbtui.files import audit
from nbtui.jupyter.rest import ServerError
from nbtui.service.actions.gate import addressable, kernel_audit_target, require_writable
from nbtui.service.fleet import Fleet

SHUTDOWN_TIMEOUT = 30.0  # the server's own shutdown wait (5 s by default) and kill come first
RECHECK = "the re-check before acting"  # named in the timeout's line; one deadline over its requests


async def recheck_kernel(fleet: Fleet, k: Kernel) -> None:
    """Raise ServerError (kind not-found) if the kernel is no longer on its server."""
    await fleet.client(k.server).kernel(k.kernel_id)


async def interrupt_kernel(fleet: Fleet, k: Kernel) -> None:
    """Interrupt (SIGINT or interrupt_request, as the kernel spec says) through the server."""
    require_writable(fleet, "interrupt")
    addressable(k)
    await recheck_kernel(fleet, k)
    await fleet.client(k.server).interrupt(k.kernel_id)


async def restart_kernel(fleet: Fleet, k: Kernel) -> None:
    """Restart a kernel (its variables are lost): re-checked, audited."""
    require_writable(fleet, "restart")
    addressable(k)
    target = kernel_audit_target(k)
    audit.intent("restart", target)  # before acting: unwritable means not started
    try:
        await recheck_kernel(fleet, k)
        await fleet.client(k.server).restart(k.kernel_id)
    except ServerError as e:
        audit.record("restart", target, f"failed: {e}")
        raise
    audit.record("restart", target, "ok")
