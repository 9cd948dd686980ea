"""Servers discovered for other OS users, grouped by owner: root's discovery finds every
user's servers on the host, and a view lists them as one line per user (the servers view
and `ls --json` keep each one). Pure code over the model, shared by every view."""

from __future__ import annotations

import functools
import getpass
from dataclasses import dataclass
from typing import Iterable, Optional

from nbtui.core.model import ServerInfo


@dataclass(frozen=True)
class OwnerGroup:
    """Another user's discovered servers: ``owner`` as the host names them."""

    owner: str
    servers: tuple[ServerInfo, ...]

    @property
    def unread(self) -> int:
        return sum(1 for s in self.servers if not s.ok)

    def summary(self) -> str:
        """`3 servers` or `3 servers, 1 not read` (what follows the owner's name)."""
        n = len(self.servers)
        text = f"{n} server{'s' if n != 1 else ''}"
        return text + (f", {self.unread} not read" if self.unread else "")


@functools.cache  # who runs nbtui does not change; the summary asks at every refresh (a passwd lookup)
def me() -> Optional[str]:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def split_others(servers: Iterable[ServerInfo], user: Optional[str] = None
                 ) -> tuple[list[ServerInfo], list[OwnerGroup]]:
    """(the servers shown one by one, in order; other users' discovered servers, one group
    per owner in order of first appearance). ``user`` is this one (default: who runs nbtui)."""
    user = user if user is not None else me()
    own: list[ServerInfo] = []
    groups: dict[str, list[ServerInfo]] = {}
    for s in servers:
        if s.source == "discovered" and s.owner and s.owner != user:
            groups.setdefault(s.owner, []).append(s)
        else:
            own.append(s)
    return own, [OwnerGroup(o, tuple(ss)) for o, ss in groups.items()]
