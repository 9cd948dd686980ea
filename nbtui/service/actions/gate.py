"""The gate every action passes first: readonly (one rule, every caller), who runs nbtui,
ids that cannot be one URL path segment, and what an audit line says of a kernel."""

from __future__ import annotations

from typing import Any, Optional

from nbtui.core.errors import UsageError
from nbtui.core.model import Kernel
from nbtui.core.text import visible
from nbtui.host import signals
from nbtui.jupyter.urlpath import segment, why_not_segment


def kernel_audit_target(k: Kernel) -> dict[str, Any]:
    u = k.usage
    return {
        "server": k.server,
        "kernel_id": k.kernel_id,
        "notebook": k.session.path if k.session else None,
        "pid": u.pid if u else None,
        "memory_bytes": u.memory_bytes if u else None,
        "gpu_memory_bytes": u.gpu_memory_bytes if u else None,
    }


def current_user() -> str:
    """Who runs nbtui (views compare owners with it; signals are sent only here)."""
    return signals.current_user()


class Readonly(UsageError):
    """An action refused because nbtui runs ``--readonly`` (exit 2).

    ``str()`` is the CLI's line; ``short`` the TUI's notice. Every caller renders it; none
    decides readonly itself.
    """

    def __init__(self, what: str, *, plan: bool = False) -> None:
        self.what = what
        super().__init__(f"--readonly: {what} is off" + (" (--dry-run still shows the plan)" if plan else ""))

    @property
    def short(self) -> str:
        return f"readonly: {self.what} is off"


def require_writable(subject: object, what: str, *, dry_run: bool = False, plan: bool = False) -> None:
    """Raise Readonly if ``subject`` (a Fleet, the CLI's arguments, the TUI app: anything
    with a ``readonly`` flag) is read-only and this is not a dry run.

    The actions call it with their fleet before they act, whoever calls them; a view calls
    it early too (before it reads servers or asks for a confirmation), with ``plan`` where
    ``--dry-run`` exists.
    """
    if getattr(subject, "readonly", False) and not dry_run:
        raise Readonly(what, plan=plan)


def addressable(k: Kernel) -> None:
    """Raise UnsafeSegment (exit 1, one line) for a kernel whose id cannot be one URL path
    segment: listed like any other, acted on never (urlpath)."""
    segment(k.kernel_id, "kernel id")


def unaddressable(what: str, value: str) -> Optional[str]:
    """A plan's refusal for an id that cannot be one URL path segment, else None."""
    why = why_not_segment(value)
    return None if why is None else f"its {what} '{visible(value)[:80]}' cannot be one URL path segment ({why})"
