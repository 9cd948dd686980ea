"""The seams new sources plug into, typed, importing neither the fleet nor any view.

A *host view* (the local host through psutil and NVML, a server's nbtui extension, later
a remote host) answers ``sample()`` with a ``HostSample``: usage of the kernels it found,
the leftover Jupyter processes it sees with the *facts* about them (is their server alive,
is their kernel), unattributed GPU memory and the GPU summary. It judges nothing: the
orphan rules (``nbtui.core.orphans``) turn its facts into reasons, in one place.

Both sides import this module: the fleet (which calls a host view every refresh) and
``nbtui.host`` (which implements one, also inside the server extension), so it stays light:
the model and the orphan rules' fact types, nothing that talks to a network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Protocol, Sequence

from nbtui.core.model import GpuDevice, Kernel, Process, ServerInfo, Terminal, UnattributedGpu, Usage
from nbtui.core.orphans import ProcessFacts
__all__ = ["HostSample", "HostView", "ProcessFacts"]


@dataclass(frozen=True)
class HostSample:
    """What a host view adds to a snapshot."""

    usage: Mapping[str, Usage] = field(default_factory=dict)  # kernel key (server:kernel_id) -> usage
    processes: tuple[Process, ...] = ()  # leftover Jupyter processes, not yet judged
    facts: Mapping[int, ProcessFacts] = field(default_factory=dict)  # pid -> what the host knows of it
    unattributed_gpu: tuple[UnattributedGpu, ...] = ()
    gpus: tuple[GpuDevice, ...] = ()
    gpu_note: Optional[str] = None
    terminals: Mapping[str, Terminal] = field(default_factory=dict)  # terminal key -> its row, shell and usage filled
    users: Mapping[str, Optional[str]] = field(default_factory=dict)  # kernel key -> the owner of its process


class HostView(Protocol):
    """A source of usage and leftover processes for the kernels the servers list."""

    def prime(self) -> float:
        """Take baselines (CPU % needs two samples); returns the seconds to wait before
        ``sample()`` for measured figures (0 when nothing needs waiting)."""
        ...

    def sample(self, servers: Sequence[ServerInfo], kernels: Sequence[Kernel],
               terminals: Iterable[Terminal] = ()) -> HostSample: ...
