"""A snapshot as the CLI contract's JSON (its times datetimes, which the one encoder,
``nbtui.cli.commands.common.print_json``, writes as RFC 3339 in UTC), and as a table that fits
the terminal."""

from __future__ import annotations

import shutil
from typing import Any, Iterable, Optional

from nbtui.core import model, orphans, summary
from nbtui.display import gpu_line
from nbtui.core.model import (UNKILLABLE, DeviceHolder, GpuDevice, GpuUse, Kernel, Process, ServerInfo, Snapshot, Terminal,
                              idle_since)
from nbtui.core.states import never_used
from nbtui.core.text import visible
from nbtui.core.units import human_bytes, human_duration, middle_truncate


def gpu_json(g: GpuUse) -> dict[str, Any]:
    return {"index": g.index, "id": g.label, "uuid": g.uuid, "memory_bytes": g.memory_bytes, "sm_percent": g.sm_percent}


def server_json(s: ServerInfo) -> dict[str, Any]:
    return {
        "name": s.name, "url": s.url, "source": s.source, "status": s.status, "error": s.error,
        "error_kind": s.error_kind, "version": s.version, "latency_ms": s.latency_ms,
        "pid": s.pid, "owner": s.owner, "local": s.local, "usage_source": s.usage_source, "usage_note": s.usage_note,
        "hub": s.hub, "user": s.user, "server_name": s.server_name, "pending": s.pending,
        "started": s.started, "hub_last_activity": s.hub_last_activity,
        "route": s.route, "route_note": s.route_note,
    }


# A kernel's usage fields where nothing measured it (most kernels of a large fleet): one dict
# its JSON takes them from. Lists are tuples in these documents (the encoder writes arrays).
_NO_USAGE: dict[str, Any] = {
    "pid": None, "host": None, "cpu_percent": None, "memory_bytes": None, "gpu_memory_bytes": None,
    "gpu_percent": None, "gpus": (), "usage_source": None,
}


def kernel_json(k: Kernel, now: Optional[float] = None) -> dict[str, Any]:
    """``now``: the clock reading its idle time is as of (one for a whole document). Built
    once per kernel in ``ls --json``; its times stay datetimes, its lists tuples, for the
    encoder (``print_json``) to write."""
    last = k.last_activity
    idle = idle_since(last, now)
    s = k.session
    out: dict[str, Any] = {
        "server": k.server,
        "kernel_id": k.kernel_id,
        "kernel_name": k.kernel_name,
        "state": k.state,
        "never_used": never_used(k),
        "connections": k.connections,
        "last_activity": last,
        "idle_seconds": None if idle is None else round(idle, 1),
        "session": None if s is None else {"id": s.id, "path": s.path, "type": s.type, "name": s.name},
    }
    u = k.usage
    if u is None:
        out.update(_NO_USAGE)
    else:
        out.update(pid=u.pid, host=u.host, cpu_percent=u.cpu_percent, memory_bytes=u.memory_bytes,
                   gpu_memory_bytes=u.gpu_memory_bytes, gpu_percent=u.gpu_percent,
                   gpus=tuple(gpu_json(g) for g in u.gpus), usage_source=u.source)
    out["user"] = k.user
    out["process_user"] = k.process_user
    out["gpu_idle_seconds"] = k.gpu_idle_seconds
    out["orphan_reasons"] = k.orphan_reasons
    return out


def terminal_json(t: Terminal) -> dict[str, Any]:
    u = t.usage
    return {
        "server": t.server, "name": t.name, "last_activity": t.last_activity,
        "idle_seconds": None if t.idle_seconds is None else round(t.idle_seconds, 1),
        "pid": t.pid, "user": t.user, "process_user": t.process_user,
        "cpu_percent": u.cpu_percent if u else None,
        "memory_bytes": u.memory_bytes if u else None,
        "gpu_memory_bytes": u.gpu_memory_bytes if u else None,
        "gpus": [gpu_json(g) for g in u.gpus] if u else [],
        "gpu_percent": u.gpu_percent if u else None, "host": u.host if u else None,
        "usage_source": u.source if u else None, "clients": t.clients, "note": t.note,
        "gpu_idle_seconds": t.gpu_idle_seconds,
        "orphan_reasons": list(t.orphan_reasons),
    }


def gpu_device_json(g: GpuDevice) -> dict[str, Any]:
    led = g.ledger
    return {
        "index": g.index, "id": g.label, "uuid": g.uuid, "parent_uuid": g.parent_uuid, "mig": g.parent_uuid is not None,
        "simulated": g.simulated, "name": g.name, "memory_used": g.memory_used,
        "memory_total": g.memory_total, "utilization": g.utilization, "utilization_note": g.utilization_note,
        "idle_kernel_memory": g.idle_kernel_memory, "host": g.host,
        "ledger": None if led is None else {
            "kernels": led.kernels, "terminals": led.terminals, "leftovers": led.leftovers,
            "other": led.other, "unattributed": led.unattributed, "unassigned": led.unassigned,
            "note": led.note,
            "others": [{"pid": o.pid, "user": o.user, "command": o.command, "memory_bytes": o.memory_bytes}
                       for o in led.others],
        },
        "holders": None if g.holders is None else [
            {"pid": h.pid, "user": h.user, "cmdline": h.cmdline, "state": h.state, "unkillable": h.unkillable,
             "nodes": list(h.nodes)} for h in g.holders],
        "holders_note": g.holders_note,
    }


def process_json(p: Process) -> dict[str, Any]:
    return {
        "pid": p.pid, "user": p.user, "cmdline": p.cmdline, "create_time": p.create_time,
        "notebook": p.notebook, "kernel_id": p.kernel_id, "server_pid": p.server_pid,
        "cpu_percent": p.cpu_percent, "memory_bytes": p.memory_bytes,
        "gpu_memory_bytes": p.gpu_memory_bytes, "gpus": [gpu_json(g) for g in p.gpus],
        "gpu_percent": p.gpu_percent, "gpu_idle_seconds": p.gpu_idle_seconds,
        "orphan_reasons": list(p.orphan_reasons),
        "hub_user": p.hub_user, "hub_server_name": p.hub_server_name, "hub_server": p.hub_server,
    }


def snapshot_json(snap: Snapshot, *, orphans_only: bool = False) -> dict[str, Any]:
    kernels = [k for k in snap.kernels if k.orphan_reasons or not orphans_only]
    terminals = [t for t in snap.terminals if t.orphan_reasons or not orphans_only]
    processes = [p for p in snap.processes if p.orphan_reasons or not orphans_only]
    now = model.clock()  # idle times as of when the document is written, one reading for all
    return {
        "generated_at": snap.generated_at,
        "servers": [server_json(s) for s in snap.servers],
        "kernels": [kernel_json(k, now) for k in kernels],
        "terminals": [terminal_json(t) for t in terminals],
        "processes": [process_json(p) for p in processes],
        "unattributed_gpu": [
            {"gpu_index": u.gpu_index, "gpu_id": u.gpu_id or str(u.gpu_index), "pid": u.pid,
             "memory_bytes": u.memory_bytes} for u in snap.unattributed_gpu
        ],
        "gpus": [gpu_device_json(g) for g in snap.gpus],
        "gpu_note": snap.gpu_note,
        "stale_files": list(snap.stale_files),
        "untrusted_files": list(snap.untrusted_files),
        "notebooks_checked": snap.notebooks_checked,
    }


# -- the human table ------------------------------------------------------------------------

def kernels_table(kernels: Iterable[Kernel], width: Optional[int] = None, *,
                  snapshot: Optional[Snapshot] = None, orphans_only: bool = False) -> list[str]:
    """The human table: one row per holder (the kernels given; with ``snapshot`` also its
    terminals and, below them, its leftover processes), with the columns the width rule of
    ``nbtui.display.columns`` keeps (the same rule as the fleet screen's)."""
    from nbtui.display import columns as cols
    from nbtui.display import table_rows as tr
    width = width or shutil.get_terminal_size((80, 24)).columns
    rows = [tr.kernel_row(k) for k in kernels]
    if snapshot is not None:
        by_pid = {s.pid: s.name for s in snapshot.servers if s.pid is not None}
        rows += [tr.terminal_row(t) for t in snapshot.terminals if t.orphan_reasons or not orphans_only]
        rows += [tr.process_row(p, by_pid.get(p.server_pid, "") if p.server_pid is not None else "") for p in snapshot.processes if p.orphan_reasons]
    natural = {c.key: max([len(c.title)] + [len(tr.text(r, c.key)) for r in rows]) for c in cols.COLUMNS}
    layout = cols.fit(width - 1, natural)  # the last cell of a line never touches the edge

    def line(cells_: list[str]) -> str:
        return " ".join(cells_).rstrip()

    head = [c.title.rjust(w) if c.key in tr.RIGHT else c.title.ljust(w) for c, w in layout]
    out = [line(head)]
    for r in rows:
        out.append(line([v.ljust(w) for v, (c, w) in zip(tr.cells(r, layout), layout)]))
    return out


def orphan_lines(snap: Snapshot, kernels: Iterable[Kernel], with_kernels: bool = True,
                 width: Optional[int] = None) -> list[str]:
    """Why each orphan is one (kernels, with ``with_kernels``), every leftover local process
    with where it came from, and the stale runtime files; wrapped to the terminal's width."""
    import textwrap

    width = width or shutil.get_terminal_size((80, 24)).columns
    return [w for line in _orphan_lines(snap, kernels, with_kernels)
            for w in textwrap.wrap(visible(line), width, subsequent_indent="    ", break_on_hyphens=False)]


def _orphan_lines(snap: Snapshot, kernels: Iterable[Kernel], with_kernels: bool) -> list[str]:
    from nbtui.core.orphans import explain_kernel, explain_process, explain_terminal
    out = []
    if with_kernels:
        out += [f"! {explain_kernel(k)}" for k in kernels if k.orphan_reasons]
        out += [f"! {explain_terminal(t)}; free it with `nbtui kill terminal:{visible(t.server)}/{visible(t.name)}`"
                for t in snap.terminals if t.orphan_reasons]
    left = [p for p in snap.processes if p.orphan_reasons]
    if left:
        out.append(f"leftover processes ({len(left)}); free one with `nbtui kill pid:N`:")
        for p in left:
            out.append(f"  pid {p.pid} ({p.hub_user or p.user or '?'}): {explain_process(p)} [{', '.join(p.orphan_reasons)}]")
    unsure = len(snap.processes) - len(left)
    if unsure:
        out.append(f"{unsure} other Jupyter process{'es' if unsure != 1 else ''} outside the listed kernels, "
                   f"of servers not read (see `nbtui ls --json`)")
    if snap.stale_files:
        names = ", ".join(f.replace("\\", "/").rsplit("/", 1)[-1] for f in snap.stale_files[:3])
        more = " …" if len(snap.stale_files) > 3 else ""
        out.append(f"{len(snap.stale_files)} stale runtime file{'s' if len(snap.stale_files) != 1 else ''} "
                   f"(their processes are gone; safe to delete): {names}{more}")
    return out


def holder_text(h: DeviceHolder, width: int = 80) -> str:
    """``pid 4242 (bob) Z [python] <defunct> — unkillable (GPU reset or reboot needed)``:
    a process holding a GPU's device node; its owner and command line through ``visible``."""
    text = f"pid {h.pid} ({visible(h.user) if h.user else 'owner unknown'}) {visible(h.state)} "
    tail = f" — {UNKILLABLE}" if h.unkillable else ""
    return text + middle_truncate(visible(h.cmdline), max(16, width - len(text) - len(tail))) + tail


def holder_lines(snap: Snapshot, most: int = 8, width: int = 80, *, found_only: bool = False) -> list[str]:
    """For the GPUs whose used memory NVML names no process for, the processes found holding
    their device node (nbtui.host.devholders), and why that list may be short. GPUs with the
    same holders share their lines (a daemon holding all eight GPUs is named once);
    ``found_only``: leave out GPUs where nobody was found."""
    groups: dict[tuple, list[GpuDevice]] = {}
    for g in snap.gpus:
        if g.holders or (g.holders is not None and g.holders_note and not found_only):
            groups.setdefault((g.holders, g.holders_note), []).append(g)
    out = []
    for (holders, note), gpus in groups.items():
        lefts = [g.memory_used if g.ledger is None else g.ledger.unattributed + g.ledger.unassigned for g in gpus]
        left = None if any(x is None for x in lefts) else sum(x for x in lefts if x is not None)
        which = f"GPU {gpus[0].index}" if len(gpus) == 1 else "GPUs " + ", ".join(str(g.index) for g in gpus)
        held = ("its device is held by" if len(gpus) == 1 else "their devices are held by") if holders else \
            "no holder of its device found" if len(gpus) == 1 else "no holder of their devices found"
        out.append(middle_truncate(f"{which}: {human_bytes(left)} used that NVML names no process for; {held}:", width))
        for h in holders[:most]:
            out.append("  " + holder_text(h, width - 2))
        more = len(holders) - most
        if more > 0:
            out.append(f"  … {more} more (`nbtui ls --json` lists them all)")
        if note:
            out.append("  " + middle_truncate(f"({visible(note)})", width - 2))
    return out


def summary_lines(snap: Snapshot, kernels: list[Kernel]) -> list[str]:
    c = summary.count(snap, kernels)  # as the TUI's summary bar counts
    line = (
        f"{c.kernels} kernel{'s' if c.kernels != 1 else ''}, {c.idle} idle over "
        f"{human_duration(snap.idle_threshold)}, "
        f"{c.orphaned} orphaned; {c.servers_read}/{c.servers} servers read"
    )
    out = [line]
    for s in snap.failed_servers:
        out.append(f"not read: {visible(s.error or s.name + ': ' + s.status)}")
    held = [k.usage for k in kernels if k.usage and k.usage.gpu_memory_bytes]
    if held and all(k.gpu_idle_seconds is None for k in kernels if k.usage and k.usage.gpu_memory_bytes):
        out.append("gpu-idle: unknown from one read (it needs history: the TUI and `nbtui exporter` keep it)")
    if not snap.notebooks_checked and any(k.session is not None and orphans.session_checkable(k) for k in kernels):
        out.append("notebook-missing: not checked (`nbtui ls --orphans` checks it)")
    out += holder_lines(snap, width=shutil.get_terminal_size((80, 24)).columns)
    for f in snap.untrusted_files:
        out.append(f"not trusted, not contacted: {visible(f)}")
    out += gpu_lines(snap)
    if not snap.servers:
        out.append("no servers: add one with `nbtui servers add NAME URL`, or run `nbtui demo`")
    return out


def gpu_lines(snap: Snapshot, width: Optional[int] = None) -> list[str]:
    """One line per GPU (a MIG instance is one): who holds its used memory (the ledger)."""
    return [gpu_line.line(d, width) for d in snap.gpus]
