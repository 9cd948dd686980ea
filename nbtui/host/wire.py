"""The JSON of ``GET /api/nbtui/usage`` (the server extension), both ways.

The server writes it with ``dump``; nbtui reads it with ``load``, which trusts nothing:
a field of the wrong type is unknown (None), a body that is not this format is an
error with one line saying so, never a crash and never a made-up number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional

from nbtui.core import model

if TYPE_CHECKING:
    from nbtui.host.local import TreeUsage
FORMAT = 1
EXTENSION: model.UsageSource = "extension"
PATH = "api/nbtui/usage"


class WireError(ValueError):
    """The body is not a usage answer nbtui understands."""


# -- writing (server side) -------------------------------------------------------------------


def _gpu(g: model.GpuUse) -> dict:
    return {"index": g.index, "id": g.label, "uuid": g.uuid, "memory_bytes": g.memory_bytes, "sm_percent": g.sm_percent}


def _tree(t: TreeUsage) -> dict:
    return {
        "pid": t.pid, "pids": list(t.pids), "cpu_percent": t.cpu_percent, "memory_bytes": t.memory_bytes,
        "gpu_memory_bytes": t.gpu.memory_bytes, "gpu_percent": t.gpu.percent,
        "gpus": [_gpu(g) for g in t.gpu.gpus], "note": t.note, "user": getattr(t, "user", None),
    }


def _ledger(led: Optional[model.GpuLedger]) -> Optional[dict]:
    if led is None:
        return None
    return {"kernels": led.kernels, "terminals": led.terminals, "leftovers": led.leftovers, "other": led.other,
            "unattributed": led.unattributed, "unassigned": led.unassigned, "note": led.note,
            "others": [{"pid": o.pid, "user": o.user, "command": o.command, "memory_bytes": o.memory_bytes}
                       for o in led.others]}


def dump(hostname: str, version: str, kernels: Mapping[str, Any], devices: Iterable[model.GpuDevice],
         gpu_note: Optional[str], terminals: Optional[Mapping[str, Any]] = None) -> dict:
    """``kernels``: kernel id -> a TreeUsage (nbtui.host.local), or None when its process is not found;
    ``terminals``: terminal name -> (TreeUsage or None, open websockets or None)."""
    out_kernels: dict[str, dict[str, Any]] = {}
    for kid, t in kernels.items():
        if t is None:
            out_kernels[kid] = {"pid": None, "note": "kernel process not found on the server's host"}
            continue
        out_kernels[kid] = _tree(t)
    out_terms = {}
    for name, (t, clients) in (terminals or {}).items():
        out_terms[name] = ({"pid": None, "note": "its shell was not found on the server's host"} if t is None
                           else _tree(t)) | {"clients": clients}
    return {
        "nbtui_usage": FORMAT, "version": version, "hostname": hostname, "kernels": out_kernels,
        "terminals": out_terms,
        "gpus": [
            {"index": d.index, "id": d.label, "uuid": d.uuid, "parent_uuid": d.parent_uuid, "name": d.name,
             "memory_used": d.memory_used, "memory_total": d.memory_total, "utilization": d.utilization,
             "utilization_note": d.utilization_note,
             "idle_kernel_memory": d.idle_kernel_memory, "ledger": _ledger(d.ledger)}
            for d in devices
        ],
        "gpu_note": gpu_note,
    }


# -- reading (nbtui side) --------------------------------------------------------------------


def _int(v: object) -> Optional[int]:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        return None
    return v


def _num(v: object) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        return None
    return float(v)


def _str(v: object, limit: int = 300) -> Optional[str]:
    return v[:limit] if isinstance(v, str) else None


def _gpus(raw: object) -> tuple[model.GpuUse, ...]:
    if not isinstance(raw, list):
        return ()
    out = []
    for g in raw:
        if isinstance(g, dict) and _int(g.get("index")) is not None:
            out.append(model.GpuUse(index=g["index"], uuid=_str(g.get("uuid")) or "",
                                    memory_bytes=_int(g.get("memory_bytes")), sm_percent=_num(g.get("sm_percent")),
                                    id=_str(g.get("id"), 40) or ""))
    return tuple(out)


def _usage(k: dict, host: Optional[str]) -> Optional[model.Usage]:
    pid = _int(k.get("pid"))
    if pid is None:
        return None
    pids = tuple(p for p in k.get("pids", []) if _int(p) is not None) if isinstance(k.get("pids"), list) else ()
    return model.Usage(
        source=EXTENSION, pid=pid, host=host, cpu_percent=_num(k.get("cpu_percent")),
        memory_bytes=_int(k.get("memory_bytes")), gpu_memory_bytes=_int(k.get("gpu_memory_bytes")),
        gpu_percent=_num(k.get("gpu_percent")), gpus=_gpus(k.get("gpus")), pids=pids,
        note=_str(k.get("note")),
    )


@dataclass(frozen=True)
class ExtTerminal:
    pid: Optional[int]
    user: Optional[str]
    usage: Optional[model.Usage]
    clients: Optional[int]


@dataclass(frozen=True)
class Extra:
    """What an extension adds beyond kernels' usage (absent from older extensions: empty)."""

    terminals: dict[str, ExtTerminal]  # terminal name -> ExtTerminal
    users: dict[str, Optional[str]]  # kernel id -> owner of its process


def load_extra(server: str, data: Any) -> Extra:
    """Terminals and owners from an answer ``load`` accepted; fields of the wrong type are unknown."""
    host = _str(data.get("hostname"), 255) if isinstance(data, dict) else None
    terms: dict[str, ExtTerminal] = {}
    raw = data.get("terminals") if isinstance(data, dict) else None
    for name, t in (raw.items() if isinstance(raw, dict) else ()):
        if isinstance(name, str) and isinstance(t, dict):
            u = _usage(t, host)
            terms[name[:200]] = ExtTerminal(pid=u.pid if u else None, user=_str(t.get("user"), 100),
                                            usage=u, clients=_int(t.get("clients")))
    users: dict[str, Optional[str]] = {}
    kernels = data.get("kernels") if isinstance(data, dict) else None
    for kid, k in (kernels.items() if isinstance(kernels, dict) else ()):
        if isinstance(kid, str) and isinstance(k, dict) and _str(k.get("user"), 100):
            users[kid] = _str(k.get("user"), 100)
    return Extra(terms, users)


def _load_ledger(raw: object) -> Optional[model.GpuLedger]:
    if not isinstance(raw, dict):
        return None
    parts = {k: _int(raw.get(k)) for k in ("kernels", "terminals", "leftovers", "other", "unattributed", "unassigned")}
    if any(v is None for v in parts.values()):
        return None
    from nbtui.files.secrets import redact_cmdline  # here, not at import: the server extension loads this module

    others = []
    raw_others = raw.get("others")
    for o in raw_others if isinstance(raw_others, list) else []:
        if isinstance(o, dict) and _int(o.get("pid")) is not None:
            others.append(model.OtherGpuHolder(pid=o["pid"], user=_str(o.get("user"), 100),
                                               command=redact_cmdline(_str(o.get("command"), 300) or ""),  # scrubbed here too
                                               memory_bytes=_int(o.get("memory_bytes"))))
    return model.GpuLedger(**{k: v or 0 for k, v in parts.items()}, others=tuple(others[:50]),  # none is None here
                           note=_str(raw.get("note")))


def load(server: str, data: Any) -> tuple[dict[str, model.Usage], tuple[model.GpuDevice, ...], Optional[str]]:
    """(usage by kernel key, GPUs of the server's host, GPU note) from an answer body."""
    if not isinstance(data, dict) or not isinstance(data.get("kernels"), dict):
        raise WireError("the nbtui extension answered something that is not a usage report")
    fmt = data.get("nbtui_usage")
    if not isinstance(fmt, int) or isinstance(fmt, bool):
        raise WireError("the nbtui extension's answer has no format number")
    if fmt > FORMAT:
        raise WireError(f"the nbtui extension is newer (format {fmt}) than this nbtui (format {FORMAT}): upgrade nbtui")
    host = _str(data.get("hostname"), 255)
    usage: dict[str, model.Usage] = {}
    for kid, k in data["kernels"].items():
        if not isinstance(kid, str) or not isinstance(k, dict):
            continue
        u = _usage(k, host)
        if u is None:
            continue  # not found there: no numbers to give
        usage[f"{server}:{kid}"] = u
    devices = []
    raw_gpus = data.get("gpus")
    for d in raw_gpus if isinstance(raw_gpus, list) else []:
        if not isinstance(d, dict) or _int(d.get("index")) is None or not isinstance(d.get("uuid"), str):
            continue
        devices.append(model.GpuDevice(
            index=d["index"], uuid=d["uuid"][:100], name=_str(d.get("name"), 100) or "?",
            memory_used=_int(d.get("memory_used")), memory_total=_int(d.get("memory_total")),
            utilization=_num(d.get("utilization")), idle_kernel_memory=_int(d.get("idle_kernel_memory")),
            host=host, ledger=_load_ledger(d.get("ledger")), id=_str(d.get("id"), 40) or "",
            parent_uuid=_str(d.get("parent_uuid"), 100), utilization_note=_str(d.get("utilization_note"), 100),
        ))
    return usage, tuple(devices), _str(data.get("gpu_note"))
