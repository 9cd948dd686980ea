"""How long a child of nbtui lives: never longer than nbtui itself."""

from __future__ import annotations

import signal
import sys


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """In a child (a forked process, or a spawned one before exec): the kernel sends it
    ``signum`` when its parent ends, however it ends (Linux's PR_SET_PDEATHSIG; elsewhere
    nothing)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signum)  # PR_SET_PDEATHSIG
    except Exception:
        pass
