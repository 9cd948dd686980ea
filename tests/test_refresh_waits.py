"""A refresh (the TUI's ``hold_back`` reads) never sits idle for the host's CPU baselines:
a CPU % sampled too soon after them is unknown in that snapshot, and measured in the next
one (a one-shot read still waits what is left of the interval and shows a number:
tests/test_host_usage.py)."""

from __future__ import annotations

import types
from typing import Optional

import pytest

from nbtui.core.model import Snapshot, Usage
from nbtui.files.config import ServerConfig
from nbtui.host import local
from nbtui.host.local import FIRST_SAMPLE_NOTE, LocalHost
from nbtui.service.fleet import Fleet
from tests.jupyter import JupyterServer


def _config(server: JupyterServer) -> ServerConfig:
    return ServerConfig(name="srv", url=server.url, token_source="discovered", source="discovered",
                        token=server.token, pid=server.pid, timeout=5.0)


def _usage_of(snap: Snapshot, kid: str) -> Optional[Usage]:
    return next(k for k in snap.kernels if k.kernel_id == kid).usage


async def test_a_refresh_sampled_right_after_the_baselines_says_cpu_unknown_then_measures_it(
        shared_jupyter: JupyterServer, monkeypatch: pytest.MonkeyPatch) -> None:
    kid = shared_jupyter.start_kernel()
    try:
        # The host's clock stands still: the sample comes "at once" after prime()'s baselines.
        monkeypatch.setattr(local, "time", types.SimpleNamespace(monotonic=lambda: 1000.0))
        async with Fleet([_config(shared_jupyter)], host=LocalHost()) as fleet:
            first = _usage_of(await fleet.snapshot(hold_back=5.0), kid)
            assert first is not None and first.source == "local"
            assert first.cpu_percent is None and FIRST_SAMPLE_NOTE in (first.note or "")
            assert first.memory_bytes  # what one sample measures is there
            second = _usage_of(await fleet.snapshot(hold_back=5.0), kid)
            assert second is not None and second.cpu_percent is not None
    finally:
        shared_jupyter.shutdown_kernel(kid)

