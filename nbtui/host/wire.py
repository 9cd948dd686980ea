"""The JSON of ``GET /api/nbtui/usage`` (the server extension), both ways.

The server writes it with ``dump``; nbtui reads it with ``load``, which trusts nothing:
a field of the wrong type is unknown (None), a body that is not this format is an
error with one line saying so, never a crash and never a made-up number.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Optional

from nbtui import model

FORMAT = 1
EXTENSION = "extension"
PATH = "api/nbtui/usage"


class WireError(ValueError):
    """The body is not a usage answer nbtui understands."""


# -- writing (server side) -------------------------------------------------------------------


def _gpu(g: model.GpuUse) -> dict:
    return {"index": g.index, "uuid": g.uuid, "memory_bytes": g.memory_bytes, "sm_percent": g.sm_percent}


def dump(hostname: str, version: str, kernels: Mapping[str, Any], devices: Iterable[model.GpuDevice],
         gpu_note: Optional[str]) -> dict:
    """``kernels``: kernel id -> a TreeUsage (nbtui.host.view), or None when its process is not found."""
    out_kernels: dict[str, dict[str, Any]] = {}
    for kid, t in kernels.items():
        if t is None:
            out_kernels[kid] = {"pid": None, "note": "kernel process not found on the server's host"}
            continue
        out_kernels[kid] = {
            "pid": t.pid, "pids": list(t.pids), "cpu_percent": t.cpu_percent, "memory_bytes": t.memory_bytes,
            "gpu_memory_bytes": t.gpu.memory_bytes, "gpu_percent": t.gpu.percent,
            "gpus": [_gpu(g) for g in t.gpu.gpus], "note": t.note,
        }
    return {
        "nbtui_usage": FORMAT, "version": version, "hostname": hostname, "kernels": out_kernels,
        "gpus": [
            {"index": d.index, "uuid": d.uuid, "name": d.name, "memory_used": d.memory_used,
             "memory_total": d.memory_total, "utilization": d.utilization,
             "idle_kernel_memory": d.idle_kernel_memory}
            for d in devices
        ],
        "gpu_note": gpu_note,
    }


# -- reading (nbtui side) --------------------------------------------------------------------


def _int(v) -> Optional[int]:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        return None
    return v


def _num(v) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        return None
    return float(v)


def _str(v, limit: int = 300) -> Optional[str]:
    return v[:limit] if isinstance(v, str) else None


def _gpus(raw) -> tuple[model.GpuUse, ...]:
    if not isinstance(raw, list):
        return ()
    out = []
    for g in raw:
        if isinstance(g, dict) and _int(g.get("index")) is not None:
            out.append(model.GpuUse(index=g["index"], uuid=_str(g.get("uuid")) or "",
                                    memory_bytes=_int(g.get("memory_bytes")), sm_percent=_num(g.get("sm_percent"))))
    return tuple(out)


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
        pid = _int(k.get("pid"))
        if pid is None:
            continue  # not found there: no numbers to give
        pids = tuple(p for p in k.get("pids", []) if _int(p) is not None) if isinstance(k.get("pids"), list) else ()
        usage[f"{server}:{kid}"] = model.Usage(
            source=EXTENSION, pid=pid, host=host, cpu_percent=_num(k.get("cpu_percent")),
            memory_bytes=_int(k.get("memory_bytes")), gpu_memory_bytes=_int(k.get("gpu_memory_bytes")),
            gpu_percent=_num(k.get("gpu_percent")), gpus=_gpus(k.get("gpus")), pids=pids,
            note=_str(k.get("note")),
        )
    devices = []
    raw_gpus = data.get("gpus")
    for d in raw_gpus if isinstance(raw_gpus, list) else []:
        if not isinstance(d, dict) or _int(d.get("index")) is None or not isinstance(d.get("uuid"), str):
            continue
        devices.append(model.GpuDevice(
            index=d["index"], uuid=d["uuid"][:100], name=_str(d.get("name"), 100) or "?",
            memory_used=_int(d.get("memory_used")), memory_total=_int(d.get("memory_total")),
            utilization=_num(d.get("utilization")), idle_kernel_memory=_int(d.get("idle_kernel_memory")),
            host=host,
        ))
    return usage, tuple(devices), _str(data.get("gpu_note"))
