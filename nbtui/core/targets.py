"""TARGET on the command line: `SERVER:KERNEL`, `KERNEL` (a unique id prefix), `pid:N`,
`terminal:SERVER/NAME` or `server:HUB/USER[/SERVER]` (a hub user's whole server)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from nbtui.core.errors import EXIT_PARTIAL, NbtuiError, NotFound, UsageError
from nbtui.core.model import Kernel, ServerInfo, Snapshot, Terminal
from nbtui.core.text import visible


@dataclass(frozen=True)
class KernelTarget:
    kernel: Kernel

    @property
    def server(self) -> str:
        return self.kernel.server

    @property
    def kernel_id(self) -> str:
        return self.kernel.kernel_id

    def __str__(self) -> str:
        return f"{self.server}:{self.kernel_id}"


@dataclass(frozen=True)
class PidTarget:
    pid: int

    def __str__(self) -> str:
        return f"pid:{self.pid}"


@dataclass(frozen=True)
class TerminalTarget:
    """``terminal:SERVER/NAME``: a Jupyter terminal and everything that runs in it."""

    terminal: Terminal

    @property
    def server(self) -> str:
        return self.terminal.server

    @property
    def kernel(self) -> Kernel:
        # Commands that act on kernels (rebind, migrate) reach for this: a clear refusal.
        raise UsageError(f"{self} is a terminal: this command needs a kernel (SERVER:KERNEL or KERNEL)")

    def __str__(self) -> str:
        return f"terminal:{self.terminal.server}/{self.terminal.name}"


@dataclass(frozen=True)
class ServerTarget:
    """A hub user's single-user server, stopped through its hub."""

    server: ServerInfo

    @property
    def kernel(self) -> Kernel:
        raise UsageError(f"{self} is a whole server: this command needs a kernel (SERVER:KERNEL or KERNEL)")

    def __str__(self) -> str:
        return f"server:{self.server.name}"


Target = Union[KernelTarget, PidTarget, TerminalTarget, ServerTarget]


def resolve_server(snapshot: Snapshot, text: str) -> ServerTarget:
    """``server:HUB/USER[/SERVER]``: a user's server that a hub lists."""
    name = text[len("server:"):].strip().rstrip("/")
    if not name:
        raise UsageError(f"bad target {text!r}: expected server:HUB/USER or server:HUB/USER/SERVER")
    users = [s for s in snapshot.servers if s.source == "hub" and s.user is not None]
    match = next((s for s in users if s.name == name), None)
    if match is not None:
        return ServerTarget(match)
    known = next((s for s in snapshot.servers if s.name == name), None)
    if known is not None and known.source == "hub":
        raise UsageError(f"bad target {text!r}: {name} is a hub; name one of its users' servers, "
                         f"server:{name}/USER[/SERVER]")
    if known is not None:
        raise UsageError(f"bad target {text!r}: server:NAME stops a hub user's server; {name} is no hub's")
    hub = name.partition("/")[0]
    row = next((s for s in snapshot.servers if s.name == hub and s.source == "hub"), None)
    if row is not None and not row.ok:
        raise NbtuiError(f"cannot resolve {text!r}: {row.error or row.status}", EXIT_PARTIAL)
    listed = ", ".join(visible(s.name) for s in users[:8]) + (" …" if len(users) > 8 else "")
    raise NotFound(f"no hub user's server {visible(name)!r} (listed: {listed or 'none'})")


def parse_pid(text: str) -> int | None:
    """N of ``pid:N``: ASCII digits only (``int()`` would read ``٣``, ``+3``, ``1_0`` or
    spaces as a PID too); None when ``text`` is no pid target."""
    if not text.startswith("pid:"):
        return None
    digits = text[4:]
    if not (digits.isascii() and digits.isdigit()):
        raise UsageError(f"bad target '{visible(text)}': pid:N takes the digits 0-9 only")
    pid = int(digits)
    if pid <= 0:
        raise UsageError(f"bad target {text!r}: a PID is a positive number")
    return pid


def _describe(k: Kernel) -> str:
    where = k.session.path if k.session else "no session"
    return f"{k.server}:{k.kernel_id[:8]} ({where})"


def resolve(snapshot: Snapshot, text: str) -> Target:
    """The one thing ``text`` names in ``snapshot``; NotFound (exit 3) lists candidates."""
    text = text.strip()
    if not text:
        raise UsageError("empty target")
    pid = parse_pid(text)
    if pid is not None:
        return PidTarget(pid)
    if text.startswith("terminal:"):
        return resolve_terminal(snapshot, text)
    if text.startswith("server:"):
        return resolve_server(snapshot, text)
    server, _, prefix = text.rpartition(":")
    kernels = list(snapshot.kernels)
    if server:
        names = {s.name for s in snapshot.servers}
        if server not in names:
            raise NotFound(f"unknown server {server!r} in target {text!r} (known: {', '.join(sorted(names)) or 'none'})")
        info = next(s for s in snapshot.servers if s.name == server)
        if not info.ok:
            raise NbtuiError(f"cannot resolve {text!r}: {info.error or info.status}", EXIT_PARTIAL)
        kernels = [k for k in kernels if k.server == server]
    if not prefix:
        raise UsageError(f"bad target {text!r}: expected SERVER:KERNEL, KERNEL or pid:N")
    matches = [k for k in kernels if k.kernel_id == prefix] or [k for k in kernels if k.kernel_id.startswith(prefix)]
    if len(matches) == 1:
        return KernelTarget(matches[0])
    if not matches:
        unread = [s.name for s in snapshot.servers if not s.ok]
        hint = f"; not read: {', '.join(unread)}" if unread and not server else ""
        raise NotFound(f"no kernel matches {text!r}{hint}")
    listed = ", ".join(_describe(k) for k in matches[:8]) + (" …" if len(matches) > 8 else "")
    raise NotFound(f"{text!r} is ambiguous: {len(matches)} kernels match: {listed}")


def resolve_terminal(snapshot: Snapshot, text: str) -> TerminalTarget:
    """``terminal:SERVER/NAME`` (a hub server's name holds slashes: the name is after the last)."""
    from nbtui.core.text import visible
    rest = text[len("terminal:"):]
    server, _, name = rest.rpartition("/")
    if not server or not name:
        raise UsageError(f"bad target '{visible(text)}': expected terminal:SERVER/NAME")
    info = next((s for s in snapshot.servers if s.name == server), None)
    if info is None:
        names = ", ".join(sorted(s.name for s in snapshot.servers)) or "none"
        raise NotFound(f"unknown server '{visible(server)}' in target '{visible(text)}' (known: {names})")
    if not info.ok:
        raise NbtuiError(f"cannot resolve '{visible(text)}': {info.error or info.status}", EXIT_PARTIAL)
    t = next((t for t in snapshot.terminals if t.server == server and t.name == name), None)
    if t is None:
        listed = ", ".join(t.name for t in snapshot.terminals if t.server == server) or "none"
        raise NotFound(f"no terminal '{visible(name)}' on server {server} (its terminals: {visible(listed)})")
    return TerminalTarget(t)
