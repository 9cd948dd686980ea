"""Pure rules: what in a fleet snapshot is left over, and why.

Reason names are the CLI contract's: no-session, disconnected-idle, notebook-missing,
server-gone, kernel-gone.
"""

from __future__ import annotations

from typing import Iterable, Optional

from nbtui.model import Kernel

NO_SESSION = "no-session"
DISCONNECTED_IDLE = "disconnected-idle"
NOTEBOOK_MISSING = "notebook-missing"
SERVER_GONE = "server-gone"
KERNEL_GONE = "kernel-gone"


def kernel_reasons(
    kernel: Kernel,
    *,
    idle_threshold: float,
    own_connections: int = 0,
    notebook_exists: Optional[bool] = None,
) -> tuple[str, ...]:
    """Reasons a kernel of a reachable server is an orphan (empty: it is not).

    ``own_connections`` are nbtui's own websockets to the kernel, which do not count as
    someone being connected. ``notebook_exists`` is None when nobody checked.
    """
    reasons: list[str] = []
    if kernel.session is None:
        reasons.append(NO_SESSION)
    if kernel.connections is not None and kernel.idle_seconds is not None:
        others = kernel.connections - own_connections
        if others <= 0 and kernel.idle_seconds >= idle_threshold and kernel.state != "busy":
            reasons.append(DISCONNECTED_IDLE)
    if kernel.session is not None and notebook_exists is False:
        reasons.append(NOTEBOOK_MISSING)
    return tuple(reasons)


def orphans_only(kernels: Iterable[Kernel]) -> tuple[Kernel, ...]:
    return tuple(k for k in kernels if k.orphan_reasons)


def process_reasons(*, server_alive: Optional[bool], kernel_alive: Optional[bool]) -> tuple[str, ...]:
    """Reasons a local Jupyter process outside every live kernel is left over.

    ``server_alive``: whether the server that launched it (JPY_PARENT_PID or its runtime
    file) still runs; ``kernel_alive``: whether the kernel it belongs to still runs and a
    reachable server lists it. None means unknown, which is never a reason.
    """
    reasons: list[str] = []
    if server_alive is False:
        reasons.append(SERVER_GONE)
    if kernel_alive is False:
        reasons.append(KERNEL_GONE)
    return tuple(reasons)
