"""One GPU as one line of text: who holds its used memory (the ledger the host built). Pure code."""

from __future__ import annotations

from typing import Optional

from nbtui.core.model import GpuDevice, GpuLedger
from nbtui.core.text import visible
from nbtui.core.units import human_bytes, middle_truncate


def _other_names(led: GpuLedger, most: int = 2) -> str:
    named = [f"{middle_truncate(visible(o.command) or f'pid {o.pid}', 30)}"
             f"{' (' + visible(o.user) + ')' if o.user else ''}" for o in led.others[:most]]
    more = len(led.others) - most
    if more > 0:
        named.append(f"+{more} more")
    return ", ".join(named)


def line(device: GpuDevice, width: Optional[int] = None) -> str:
    """One line for a header or ``ls``: ``GPU 0 38.2G used: kernels 20.0G, terminals 4.0G,
    other 8.0G [python train.py (bob)], unassigned 512M`` (zero parts left out); outside
    strings through ``visible``; cut to ``width`` when given."""
    tags = [t for t in ("MIG" if device.parent_uuid else "", "simulated" if device.simulated else "") if t]
    head = f"GPU {device.label}{' (' + ', '.join(tags) + ')' if tags else ''} {human_bytes(device.memory_used)} used"
    if device.utilization_note:
        head += f", SM {device.utilization_note}"
    led = device.ledger
    if led is None:
        text = head + ": who holds it is unknown" if device.memory_used else head
        return middle_truncate(text, width) if width else text
    parts = []
    for name, value in (("kernels", led.kernels), ("terminals", led.terminals), ("leftovers", led.leftovers),
                        ("other", led.other), ("unattributed", led.unattributed), ("unassigned", led.unassigned)):
        if value:
            part = f"{name} {human_bytes(value)}"
            if name == "other" and led.others:
                part += f" [{_other_names(led)}]"
            parts.append(part)
    text = head + ": " + (", ".join(parts) if parts else "nothing held")
    if led.note:  # a server's extension may say anything here
        text += f" ({visible(led.note)})"
    return middle_truncate(text, width) if width else text
