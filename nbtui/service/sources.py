"""Which server source reads an entry of servers.toml: one registration per kind of source.

A configured entry is a Jupyter server the fleet reads itself, or a source of servers (a
JupyterHub lists its users' servers). A new kind of source (an SSH host, a Kubernetes
namespace) is one module implementing ``nbtui.sources.ServerSource`` and one line here.
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional

from nbtui.files.config import ServerConfig
from nbtui.sources import ServerSource


def _hub(config: ServerConfig, default_timeout: float) -> ServerSource:
    from nbtui.jupyter.hub import HubSource  # (loaded only where a hub is configured)
    return HubSource(config, default_timeout)


SOURCES: Mapping[str, Callable[[ServerConfig, float], ServerSource]] = {
    "hub": _hub,
}


def kind_of(config: ServerConfig) -> Optional[str]:
    """The kind of source an entry is (None: a Jupyter server, read by the fleet itself)."""
    return "hub" if config.hub else None


def source_for(config: ServerConfig, default_timeout: float) -> Optional[ServerSource]:
    kind = kind_of(config)
    return None if kind is None else SOURCES[kind](config, default_timeout)
