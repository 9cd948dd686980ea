"""The seams new sources plug into, typed, importing neither the fleet nor any view.

A *server source* (a JupyterHub: its users' servers; next an SSH host or a Kubernetes
namespace) lists Jupyter servers the fleet then reads. It implements ``ServerSource``: its
own row and the servers it lists now (``read``), and how one of them is read (``read_listed``),
through the fleet's public ``ServerReader`` and nothing else of the fleet. One module per
source, and one line in ``nbtui.service.sources`` registers it for its kind of config entry.

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

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Protocol, Sequence

from nbtui.core.model import GpuDevice, Kernel, Process, ServerInfo, Terminal, UnattributedGpu, Usage
from nbtui.core.orphans import ProcessFacts

if TYPE_CHECKING:  # the server extension imports this module: nbtui's own files stay out of it
    from nbtui.files.config import ServerConfig

__all__ = ["HostSample", "HostView", "Listed", "ProcessFacts", "ServerReader", "ServerSource"]


class ServerReader(Protocol):
    """What the fleet offers a server source: all a source may call on it."""

    acting: bool  # reads for an action a person asked for (a TARGET, a test): read even when a source would wait
    proxy_reader: Optional[str]  # who the fleet's reads are recorded as (None: recorded nowhere)

    def server_info(self, name: str, **fields: Any) -> ServerInfo:
        """The row of a listed server as the fleet knows it, with ``fields`` set."""
        ...

    async def read_server(self, name: str, now: dt.datetime) -> tuple[ServerInfo, list[Kernel]]:
        """One read of a listed server through its own client (kernels, sessions, terminals)."""
        ...

    async def rebind(self, name: str, config: ServerConfig, extra: Mapping[str, Any]) -> None:
        """A listed server is now reached at ``config`` (its client closed, a new one made)."""
        ...


class Listed(Protocol):
    """One server a source lists."""

    config: ServerConfig  # its name (SOURCE/...), URL and token

    @property
    def pid(self) -> Optional[int]:
        """Its process on this host, where the source knows it (the same server discovered
        locally is kept once, under the source's name)."""
        ...

    def extra(self) -> dict[str, Any]:
        """What the source says of it, as ``ServerInfo`` fields."""
        ...


class ServerSource(Protocol):
    """A source of Jupyter servers (see the module's docstring)."""

    config: ServerConfig  # its own entry in servers.toml

    @property
    def name(self) -> str: ...

    async def read(self) -> tuple[dict[str, Any], Sequence[Listed]]:
        """Its own row (``ServerInfo`` fields) and the servers it lists now; bounded by its
        timeout as a whole."""
        ...

    def listed(self, name: str) -> Optional[Listed]:
        """A server of its last listing, by name."""
        ...

    async def read_listed(self, reader: ServerReader, name: str, now: dt.datetime) -> tuple[ServerInfo, list[Kernel]]:
        """Read one of its servers (its own pacing, limits and fallbacks) through ``reader``."""
        ...

    def transport(self) -> Any:
        """The connection pool its servers' clients share (an httpx transport), or None."""
        ...

    async def aclose(self) -> None: ...


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
        ``sample()`` for measured figures (0 when nothing needs waiting). A view may also
        have ``early_wait()``: where its baselines were taken as the process started, the
        seconds still to wait (asked first, on the fleet's loop; None: ``prime`` is asked)."""
        ...

    def sample(self, servers: Sequence[ServerInfo], kernels: Sequence[Kernel],
               terminals: Iterable[Terminal] = ()) -> HostSample: ...
