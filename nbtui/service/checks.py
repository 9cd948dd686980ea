"""What a command asks of servers beyond a fleet's read, through the service: discovery of
local servers, the transport check of `servers add`, JupyterHub detection and scopes, who a
server says we are, the control-channel probe of `ls --probe`, and the local host view.

Each imports what it needs when called: `nbtui ls` loads none of it unless asked.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Optional

from nbtui.core import model
from nbtui.files.config import Settings

if TYPE_CHECKING:
    from nbtui.jupyter.discovery import Discovery
    from nbtui.service.fleet import Fleet
    from nbtui.sources import HostView


def discover() -> "Discovery":
    """The Jupyter servers this host's runtime files name (root: every user's)."""
    from nbtui.jupyter.discovery import discover as discover_here
    return discover_here()


def check_transport(name: str, url: str, sends_token: bool, insecure_http: bool) -> None:
    """Refuse (UsageError) a token sent over plain http to another host, unless allowed."""
    from nbtui.jupyter.rest import check_transport as check
    check(name, url, sends_token, insecure_http)


def detect_hub(url: str, *, timeout: float, ca_bundle: Optional[str] = None) -> Optional[str]:
    """The JupyterHub version when ``URL/hub/api`` answers as JupyterHub, else None."""
    from nbtui.jupyter.hub import detect
    return asyncio.run(detect(url, timeout=timeout, ca_bundle=ca_bundle))


def missing_scopes(scopes: list[str]) -> list[tuple[str, str, str]]:
    """The scopes a hub token lacks for what nbtui does, each with what it costs."""
    from nbtui.jupyter.hub import missing_scopes as missing
    return missing(scopes)


async def me(fleet: "Fleet", name: str) -> tuple[Optional[Any], Optional[str]]:
    """(what ``/api/me`` answers, None), or (None, why the server could not say)."""
    from nbtui.jupyter.rest import TIMEOUT, ServerError
    try:
        return await fleet.client(name).me(), None
    except ServerError as e:
        if e.kind == TIMEOUT:
            timeout = fleet.config_of(name).timeout or fleet.settings.timeout
            return None, f"/api/me timed out after {timeout:g} s"
        return None, f"/api/me: {e.detail}"


async def probe_missing(fleet: "Fleet", snap: model.Snapshot, timeout: float) -> tuple[model.Snapshot, list[str]]:
    """Usage, through each kernel's control channel, for kernels no other source covered."""
    from nbtui.jupyter.probe import probe_missing as probe
    return await probe(fleet, snap, timeout=timeout)


def prime_host(drop: bool = False) -> None:
    """Take the local host's CPU baselines now, for the host view made later in this process
    (nbtui.host.local.prime_early): `nbtui ls` asks as it starts; ``drop``: forget them where
    no host view took them (a command that failed first)."""
    try:
        from nbtui.host.local import prime_early
    except ImportError:
        return
    prime_early(drop)


def host_view(settings: Settings, cpu: bool = True) -> Optional["HostView"]:
    """The local host's usage view (psutil + NVML), or None where it is not available;
    without ``cpu``, one that measures no CPU % (see LocalHost)."""
    try:
        from nbtui.host.local import LocalHost
    except ImportError:
        return None
    return LocalHost(settings, cpu=cpu)
