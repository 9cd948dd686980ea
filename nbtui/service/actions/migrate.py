"""Rebind, migrate and adopt (nbtui/migrate/), behind the readonly gate and the audit log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from nbtui.core.errors import NbtuiError, NotFound
from nbtui.core.model import Kernel
from nbtui.files import audit
from nbtui.host import signals
from nbtui.service.actions.gate import addressable, kernel_audit_target, require_writable
from nbtui.service.actions.kernels import RECHECK, SHUTDOWN_TIMEOUT
from nbtui.service.fleet import Fleet

if TYPE_CHECKING:
    from nbtui.migrate.adopt import LocalKernel, Placement
    from nbtui.migrate.move import Migration, Options, Progress


async def rebind_kernel(fleet: Fleet, k: Kernel, path: str, *, dry_run: bool = False) -> Optional[dict[str, Any]]:
    """Give a session-less kernel a notebook session on its server (re-checked, audited)."""
    from nbtui.migrate import rebind
    require_writable(fleet, "rebind", dry_run=dry_run)
    addressable(k)
    path = rebind.clean_path(path)
    target = kernel_audit_target(k)
    client = fleet.client(k.server)
    if dry_run:
        await client.within(rebind.check(client, k.kernel_id, path), what=RECHECK)
        return None
    audit.intent("rebind", target, notebook=path)
    try:
        session = await rebind.rebind(client, k.kernel_id, path, act_timeout=SHUTDOWN_TIMEOUT)
    except NbtuiError as e:
        audit.record("rebind", target, f"failed: {e}", notebook=path)
        raise
    audit.record("rebind", target, "ok", notebook=path, session_id=session.get("id"))
    return session


def _known(fleet: Fleet, server: str) -> None:
    if server not in fleet.names:
        raise NotFound(f"unknown server {server!r} (known: {', '.join(fleet.names) or 'none'})")


def migration_for(fleet: Fleet, k: Kernel, opts: Options,
                  progress: Optional[Callable[[Progress], None]] = None) -> Migration:
    """A Migration (nbtui/migrate/move.py) of server kernel ``k``; ``await m.run()`` moves it."""
    from nbtui.migrate.move import Migration, ServerSource
    require_writable(fleet, "migrate", dry_run=bool(getattr(opts, "dry_run", False)))
    addressable(k)
    _known(fleet, opts.to)
    source = ServerSource(fleet.client(k.server), k.kernel_id, k.kernel_name,
                          k.session.path if k.session else None)
    return Migration(source, fleet.client(opts.to), opts, progress)


def local_migration_for(fleet: Fleet, pid: int, opts: Options,
                        progress: Optional[Callable[[Progress], None]] = None) -> Migration:
    """A Migration of a live local kernel known by its process (its server gone)."""
    from nbtui.migrate import adopt
    from nbtui.migrate.move import LocalSource, Migration
    require_writable(fleet, "migrate", dry_run=bool(getattr(opts, "dry_run", False)))
    _known(fleet, opts.to)
    return Migration(LocalSource(adopt.find(pid)), fleet.client(opts.to), opts, progress)


async def plan_adopt(fleet: Fleet, pid: int, server: str, connection_dir: Optional[str] = None, *,
                     dry_run: bool = False) -> tuple[LocalKernel, Placement]:
    """Check that the live local kernel ``pid`` may be placed for server ``server`` (on this
    host, run by the kernel's own owner, its connection folder theirs all the way): returns
    ``(LocalKernel, Placement)``; writes nothing. A refusal outside a dry run is audited."""
    from nbtui.migrate import adopt
    require_writable(fleet, "adopt --to", dry_run=dry_run)
    lk = await adopt.check(pid)
    _known(fleet, server)
    client = fleet.client(server)
    try:
        placement = adopt.plan_place(lk, server, fleet.config_of(server).pid, client.url, connection_dir)
    except adopt.NotAdoptable as e:
        if not dry_run:
            try:
                why = str(e)
                audit.record("adopt", lk.describe() | {"to": server}, why if why.startswith("refused") else f"refused: {why}")
            except OSError:
                pass  # nothing is done either way; the refusal is the line the user sees
        raise
    return lk, placement


async def adopt_kernel(fleet: Fleet, lk: LocalKernel, placement: Placement) -> str:
    """Make ``placement.server`` list the kernel ``lk`` through its external_connection_dir
    (as plan_adopt checked it; the folder walked again when writing): audited before and
    after; returns the id the server gave it."""
    from nbtui.migrate import adopt
    require_writable(fleet, "adopt --to")
    if not signals.same_process(lk.ident, signals.identify(lk.pid)):
        raise adopt.NotAdoptable(f"pid {lk.pid} is another process now (or gone); nothing was placed")
    target = lk.describe() | placement.json() | {"to": placement.server}
    audit.intent("adopt", target)
    try:
        new_id = await adopt.place(fleet.client(placement.server), lk, placement)
    except NbtuiError as e:
        audit.record("adopt", target, f"failed: {e}")
        raise
    audit.record("adopt", target, "ok", kernel_id=new_id)
    return new_id
