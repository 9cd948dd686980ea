"""A snapshot as the CLI contract's JSON, and as a table that fits the terminal."""

from __future__ import annotations

import datetime as dt
import shutil
from typing import Any, Iterable, Optional

from nbtui.orphans import kernel_is_idle
from nbtui.model import GpuDevice, GpuUse, Kernel, Process, ServerInfo, Snapshot, Terminal
from nbtui.states import never_used, state_text
from nbtui.text import visible
from nbtui.units import human_bytes, human_duration, human_percent, middle_truncate


def iso(t: Optional[dt.datetime]) -> Optional[str]:
    if t is None:
        return None
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def gpu_json(g: GpuUse) -> dict[str, Any]:
    return {"index": g.index, "uuid": g.uuid, "memory_bytes": g.memory_bytes, "sm_percent": g.sm_percent}


def server_json(s: ServerInfo) -> dict[str, Any]:
    return {
        "name": s.name, "url": s.url, "source": s.source, "status": s.status, "error": s.error,
        "error_kind": s.error_kind, "version": s.version, "latency_ms": s.latency_ms,
        "pid": s.pid, "local": s.local, "usage_source": s.usage_source, "usage_note": s.usage_note,
        "hub": s.hub, "user": s.user, "server_name": s.server_name, "pending": s.pending,
        "started": iso(s.started), "hub_last_activity": iso(s.hub_last_activity),
        "route": s.route, "route_note": s.route_note,
    }


def kernel_json(k: Kernel) -> dict[str, Any]:
    u = k.usage
    return {
        "server": k.server,
        "kernel_id": k.kernel_id,
        "kernel_name": k.kernel_name,
        "state": k.state,
        "never_used": never_used(k),
        "connections": k.connections,
        "last_activity": iso(k.last_activity),
        "idle_seconds": None if k.idle_seconds is None else round(k.idle_seconds, 1),
        "session": None if k.session is None else {
            "id": k.session.id, "path": k.session.path, "type": k.session.type, "name": k.session.name,
        },
        "pid": u.pid if u else None,
        "host": u.host if u else None,
        "cpu_percent": u.cpu_percent if u else None,
        "memory_bytes": u.memory_bytes if u else None,
        "gpu_memory_bytes": u.gpu_memory_bytes if u else None,
        "gpu_percent": u.gpu_percent if u else None,
        "gpus": [gpu_json(g) for g in u.gpus] if u else [],
        "usage_source": u.source if u else None,
        "user": k.user,
        "gpu_idle_seconds": k.gpu_idle_seconds,
        "orphan_reasons": list(k.orphan_reasons),
    }


def terminal_json(t: Terminal) -> dict[str, Any]:
    u = t.usage
    return {
        "server": t.server, "name": t.name, "last_activity": iso(t.last_activity),
        "idle_seconds": None if t.idle_seconds is None else round(t.idle_seconds, 1),
        "pid": t.pid, "user": t.user,
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
        "index": g.index, "uuid": g.uuid, "name": g.name, "memory_used": g.memory_used,
        "memory_total": g.memory_total, "utilization": g.utilization,
        "idle_kernel_memory": g.idle_kernel_memory, "host": g.host,
        "ledger": None if led is None else {
            "kernels": led.kernels, "terminals": led.terminals, "leftovers": led.leftovers,
            "other": led.other, "unattributed": led.unattributed, "unassigned": led.unassigned,
            "note": led.note,
            "others": [{"pid": o.pid, "user": o.user, "command": o.command, "memory_bytes": o.memory_bytes}
                       for o in led.others],
        },
    }


def process_json(p: Process) -> dict[str, Any]:
    return {
        "pid": p.pid, "user": p.user, "cmdline": p.cmdline, "create_time": p.create_time,
        "notebook": p.notebook, "kernel_id": p.kernel_id, "server_pid": p.server_pid,
        "cpu_percent": p.cpu_percent, "memory_bytes": p.memory_bytes,
        "gpu_memory_bytes": p.gpu_memory_bytes, "gpus": [gpu_json(g) for g in p.gpus],
        "gpu_percent": p.gpu_percent, "gpu_idle_seconds": p.gpu_idle_seconds,
        "orphan_reasons": list(p.orphan_reasons),
    }


def snapshot_json(snap: Snapshot, *, orphans_only: bool = False) -> dict[str, Any]:
    kernels = [k for k in snap.kernels if k.orphan_reasons or not orphans_only]
    terminals = [t for t in snap.terminals if t.orphan_reasons or not orphans_only]
    processes = [p for p in snap.processes if p.orphan_reasons or not orphans_only]
    return {
        "generated_at": iso(snap.generated_at),
        "servers": [server_json(s) for s in snap.servers],
        "kernels": [kernel_json(k) for k in kernels],
        "terminals": [terminal_json(t) for t in terminals],
        "processes": [process_json(p) for p in processes],
        "unattributed_gpu": [
            {"gpu_index": u.gpu_index, "pid": u.pid, "memory_bytes": u.memory_bytes} for u in snap.unattributed_gpu
        ],
        "gpus": [gpu_device_json(g) for g in snap.gpus],
        "gpu_note": snap.gpu_note,
        "stale_files": list(snap.stale_files),
        "untrusted_files": list(snap.untrusted_files),
    }


# -- the human table ------------------------------------------------------------------------

ORPHAN_MARK = "!"


def kernel_row(k: Kernel, short_state: bool = False) -> dict[str, str]:
    u = k.usage
    return {
        "server": visible(k.server),
        "kernel": visible(k.kernel_id[:8]),
        "notebook": visible(k.session.path) if k.session else "(no session)",
        "state": state_text(k, short_state),
        "conn": "—" if k.connections is None else str(k.connections),
        "idle": human_duration(k.idle_seconds),
        "cpu": human_percent(u.cpu_percent if u else None),
        "mem": human_bytes(u.memory_bytes if u else None),
        "gpu": human_bytes(u.gpu_memory_bytes if u else None),
        "gpu%": human_percent(u.gpu_percent if u else None),
        "!": ORPHAN_MARK if k.orphan_reasons else "",
    }


# (key, title, width, right-aligned); the notebook column takes what is left.
COLUMNS = [
    ("server", "SERVER", 0, False),  # sized to the names
    ("kernel", "KERNEL", 8, False),
    ("notebook", "NOTEBOOK", 0, False),
    ("state", "STATE", 8, False),
    ("conn", "C", 1, True),
    ("idle", "IDLE", 6, True),
    ("cpu", "CPU", 4, True),
    ("mem", "MEM", 6, True),
    ("gpu", "GPU", 6, True),
    ("gpu%", "GPU%", 4, True),
    ("!", "!", 1, False),
]


def kernels_table(kernels: Iterable[Kernel], width: Optional[int] = None) -> list[str]:
    kernels = list(kernels)
    width = width or shutil.get_terminal_size((80, 24)).columns
    server_w = min(14, max([6] + [len(k.server) for k in kernels]))
    widths = {key: (server_w if key == "server" else w) for key, _, w, _ in COLUMNS}
    short = width < 100  # at 80 columns the notebook's file name keeps the room
    widths["state"] = max([widths["state"]] + [len(state_text(k, short)) for k in kernels])
    fixed = sum(widths.values()) + len(COLUMNS) - 1
    nb = max(12, width - fixed)

    def fmt(values: dict[str, str]) -> str:
        cells = []
        for key, _title, _w, right in COLUMNS:
            w = widths[key] or nb
            text = middle_truncate(values[key], w)
            cells.append(text.rjust(w) if right else text.ljust(w))
        return " ".join(cells).rstrip()

    lines = [fmt({key: title for key, title, _, _ in COLUMNS})]
    lines += [fmt(kernel_row(k, short)) for k in kernels]
    return lines


def orphan_lines(snap: Snapshot, kernels: Iterable[Kernel], with_kernels: bool = True,
                 width: Optional[int] = None) -> list[str]:
    """Why each orphan is one (kernels, with ``with_kernels``), every leftover local process
    with where it came from, and the stale runtime files; wrapped to the terminal's width."""
    import textwrap

    width = width or shutil.get_terminal_size((80, 24)).columns
    return [w for line in _orphan_lines(snap, kernels, with_kernels)
            for w in textwrap.wrap(visible(line), width, subsequent_indent="    ", break_on_hyphens=False)]


def _orphan_lines(snap: Snapshot, kernels: Iterable[Kernel], with_kernels: bool) -> list[str]:
    from nbtui.orphans import explain_kernel, explain_process, explain_terminal

    out = []
    if with_kernels:
        out += [f"! {explain_kernel(k)}" for k in kernels if k.orphan_reasons]
        out += [f"! {explain_terminal(t)}; free it with `nbtui kill terminal:{visible(t.server)}/{visible(t.name)}`"
                for t in snap.terminals if t.orphan_reasons]
    left = [p for p in snap.processes if p.orphan_reasons]
    if left:
        out.append(f"leftover processes ({len(left)}); free one with `nbtui kill pid:N`:")
        for p in left:
            out.append(f"  pid {p.pid} ({p.user or '?'}): {explain_process(p)} [{', '.join(p.orphan_reasons)}]")
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


def summary_lines(snap: Snapshot, kernels: list[Kernel]) -> list[str]:
    idle_over = sum(1 for k in kernels if kernel_is_idle(k, snap.idle_threshold))
    orphaned = sum(1 for k in kernels if k.orphan_reasons)
    ok = sum(1 for s in snap.servers if s.ok)
    line = (
        f"{len(kernels)} kernel{'s' if len(kernels) != 1 else ''}, {idle_over} idle over "
        f"{human_duration(snap.idle_threshold)}, "
        f"{orphaned} orphaned; {ok}/{len(snap.servers)} servers read"
    )
    out = [line]
    for s in snap.failed_servers:
        out.append(f"not read: {visible(s.error or s.name + ': ' + s.status)}")
    held = [k.usage for k in kernels if k.usage and k.usage.gpu_memory_bytes]
    if held and all(k.gpu_idle_seconds is None for k in kernels if k.usage and k.usage.gpu_memory_bytes):
        out.append("gpu-idle: unknown from one read (it needs history: the TUI and `nbtui exporter` keep it)")
    for f in snap.untrusted_files:
        out.append(f"not trusted, not contacted: {visible(f)}")
    if not snap.servers:
        out.append("no servers: add one with `nbtui servers add NAME URL`, or run `nbtui demo`")
    return out
