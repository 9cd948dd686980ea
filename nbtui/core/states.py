"""What a kernel's state means to a person, one rule for the TUI, `ls` and the JSON.

A kernel started through the REST API that no client ever connected to stays
``execution_state: "starting"`` for as long as it lives (the server learns states from
messages it sees). After a minute that is not "slow to start" but "never used".
"""

from __future__ import annotations

from typing import Optional

from nbtui.core.model import Kernel

NEVER_USED_AFTER = 60.0  # seconds in "starting" with no client before it reads "never used"
NEVER_USED = "never used"


def never_used(k: Kernel) -> Optional[bool]:
    """True: still `starting`, nobody connected, untouched for a minute; None: cannot tell."""
    if k.state != "starting":
        return False
    if k.idle_seconds is None or k.connections is None:
        return None
    return k.connections == 0 and k.idle_seconds >= NEVER_USED_AFTER


def state_text(k: Kernel, short: bool = False) -> str:
    """The state as shown: `starting · never used` for a kernel nobody has used (``short``:
    `never used`, for a narrow column), else the state."""
    if never_used(k):
        return NEVER_USED if short else f"{k.state} · {NEVER_USED}"
    return k.state
