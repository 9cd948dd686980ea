"""The GPU ledger: who holds each byte of a GPU's used memory. Pure code.

Per GPU, NVML's ``memory_used`` is split into what kernels, terminals and leftover Jupyter
processes hold, what other (named) local processes hold, what PIDs that are not processes
here hold (``unattributed``: another PID namespace, or a process that exited between NVML's
listing and ours), and the remainder NVML assigns to no process (``unassigned``: the
driver's own reservations, contexts it does not list, a process whose figure NVML did not
give). The parts sum to ``memory_used``.

The one exception is said, never hidden: when NVML's per-process figures add up to more
than its used total (the GPU changed between the two NVML calls), ``unassigned`` is 0 and
the ledger carries a note with the excess.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional

from nbtui.host.gpu import GpuReading
from nbtui.core.model import GpuDevice, GpuLedger, OtherGpuHolder
from nbtui.core.units import human_bytes

KERNELS = "kernels"
TERMINALS = "terminals"
LEFTOVERS = "leftovers"
OTHER = "other"
UNATTRIBUTED = "unattributed"
PARTS = (KERNELS, TERMINALS, LEFTOVERS, OTHER, UNATTRIBUTED)


def build(
    reading: GpuReading,
    kinds: Mapping[int, str],
    names: Mapping[int, tuple[Optional[str], str]] = {},
) -> dict[str, GpuLedger]:
    """GPU id -> its ledger, for every GPU whose used memory and per-process memory NVML
    gave. ``kinds``: local PID -> KERNELS | TERMINALS | LEFTOVERS | OTHER (a PID NVML lists
    that is not in ``kinds`` is unattributed); ``names``: PID -> (user, command) of the OTHER ones."""
    out: dict[str, GpuLedger] = {}
    for d in reading.devices:
        if d.memory_used is None or d.id in reading.memory_unknown:
            continue  # nothing to account for, or no way to say who holds it
        parts = dict.fromkeys(PARTS, 0)
        others: dict[int, int] = {}
        for m in reading.memory:
            if m.gpu_id != d.id or m.memory_bytes is None:
                continue  # a PID NVML gave no figure for: its bytes stay in unassigned
            kind = kinds.get(m.pid, UNATTRIBUTED)
            if kind not in parts:
                kind = UNATTRIBUTED
            parts[kind] += m.memory_bytes
            if kind == OTHER:
                others[m.pid] = others.get(m.pid, 0) + m.memory_bytes
        held = sum(parts.values())
        unassigned = d.memory_used - held
        note = None
        if unassigned < 0:
            note = (f"NVML's processes hold {human_bytes(-unassigned)} more than its used total "
                    f"(the GPU changed between two NVML calls)")
            unassigned = 0
        holders = tuple(
            OtherGpuHolder(pid=pid, user=names.get(pid, (None, ""))[0], command=names.get(pid, (None, ""))[1],
                           memory_bytes=mem)
            for pid, mem in sorted(others.items(), key=lambda kv: (-kv[1], kv[0]))
        )
        out[d.id] = GpuLedger(
            kernels=parts[KERNELS], terminals=parts[TERMINALS], leftovers=parts[LEFTOVERS],
            other=parts[OTHER], unattributed=parts[UNATTRIBUTED], unassigned=unassigned,
            others=holders, note=note,
        )
    return out


def total(led: GpuLedger) -> int:
    return led.kernels + led.terminals + led.leftovers + led.other + led.unattributed + led.unassigned


def with_ledgers(devices: Iterable[GpuDevice], ledgers: Mapping[str, GpuLedger]) -> tuple[GpuDevice, ...]:
    from dataclasses import replace

    return tuple(replace(d, ledger=ledgers.get(d.label, d.ledger)) for d in devices)
