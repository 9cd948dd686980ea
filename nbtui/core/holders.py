"""Holders beyond kernels, joined into a snapshot: terminal rows and every row's owner.

Pure functions the fleet calls after the host view (and the servers' extensions) have
said what they know. Nothing here reads the host or the network.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterable, Mapping, Optional, Protocol

from nbtui.core import model, orphans

Owner = Callable[..., tuple[Optional[str], Optional[str]]]


def owners(servers: Iterable[model.ServerInfo], users: Mapping[str, Optional[str]]) -> Owner:
    """``owner(key, server, process_user=None) -> (user, process_user)``: ``user`` is the
    person (the hub user of a hub's server: its single-user servers often all run as one OS
    user, root or jovyan; else the owner of the row's process), ``process_user`` the OS owner
    of the row's process (local, or from the server's extension; ``process_user`` where the
    caller learnt it), each None where unknown."""
    hub_user = {s.name: s.user for s in servers if s.hub and s.user}

    def owner(key: str, server: str, process_user: Optional[str] = None) -> tuple[Optional[str], Optional[str]]:
        proc = users.get(key) or process_user
        return hub_user.get(server) or proc, proc

    return owner


def terminal_rows(terminals: Iterable[model.Terminal], filled: Mapping[str, model.Terminal],
                  owner: Owner, idle_threshold: float) -> list[model.Terminal]:
    """The servers' terminals with what the host learnt (shell, usage, its owner) and their
    orphan reasons, sorted like kernels (server, then the longest idle first)."""
    out = []
    for t in terminals:
        row = filled.get(t.key) or t
        # The host (or the extension) fills ``user`` with the shell's OS owner.
        user, proc = owner(t.key, t.server, row.process_user or row.user)
        row = replace(row, user=user, process_user=proc)
        out.append(replace(row, orphan_reasons=orphans.terminal_reasons(row, idle_threshold=idle_threshold)))
    out.sort(key=lambda t: (t.server, -(t.idle_seconds if t.idle_seconds is not None else -1.0), t.name))
    return out


def shell_hints(terminals: Iterable[model.Terminal], by_host: Mapping[str, model.Terminal],
                merged: Mapping[str, model.Terminal]) -> Optional[list[model.Terminal]]:
    """The terminals again, with the shell PIDs a server's extension named on this host for
    those the local host left untied (None when there are none)."""
    import socket

    here = socket.gethostname()
    out, any_hint = [], False
    for t in terminals:
        mine, ext = by_host.get(t.key), merged.get(t.key)
        if (mine is not None and mine.pid is None and ext is not None and ext.pid is not None
                and ext.usage is not None and ext.usage.source == "extension" and ext.usage.host == here):
            out.append(replace(t, pid=ext.pid))
            any_hint = True
        else:
            out.append(t)
    return out if any_hint else None


class ExtensionTerminal(Protocol):
    """A terminal as a server's extension reports it (``nbtui.host.wire.ExtTerminal``)."""

    @property
    def pid(self) -> Optional[int]: ...
    @property
    def user(self) -> Optional[str]: ...
    @property
    def usage(self) -> Optional[model.Usage]: ...
    @property
    def clients(self) -> Optional[int]: ...


class ExtensionExtra(Protocol):
    """What a server's extension adds beyond kernels' usage (``nbtui.host.wire.Extra``)."""

    @property
    def terminals(self) -> Mapping[str, ExtensionTerminal]: ...
    @property
    def users(self) -> Mapping[str, Optional[str]]: ...


def merge_extension(terms: dict[str, model.Terminal], users: dict[str, Optional[str]], usage: dict[str, model.Usage],
                    terminals: Iterable[model.Terminal], server: str, extra: ExtensionExtra) -> None:
    """What a server's extension says (``wire.Extra``) fills what the local host did not:
    shells of its terminals, their usage and client count, and kernels' owners."""
    for t in terminals:
        if t.server != server:
            continue
        have = terms.get(t.key) or t
        ext = extra.terminals.get(t.name)
        if ext is None:
            continue
        if have.pid is None and ext.pid is not None:
            have = replace(have, pid=ext.pid, user=ext.user, usage=ext.usage, note=None)
        terms[t.key] = replace(have, clients=ext.clients)
    for kid, user in extra.users.items():
        key = f"{server}:{kid}"
        if user and key not in users and usage.get(key) is not None and usage[key].source == "extension":
            users[key] = user
