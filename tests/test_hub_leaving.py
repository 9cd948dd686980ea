"""A hub's user stops her server: a screen left open on the hub (a fleet that reads again
at its own pace, as the TUI's) shows her server no more and keeps nothing of it, neither
its last answer nor a read of it, however many users come and go over the weeks."""

from __future__ import annotations

import pytest

from nbtui.files.config import ServerConfig, Settings
from nbtui.service.fleet import Fleet
from tests.fakehub import FakeHub

pytestmark = pytest.mark.timeout(120)


async def test_a_server_that_leaves_the_hub_leaves_nothing_behind():
    with FakeHub(users=3, page=50) as hub:
        cfg = ServerConfig(name="h", url=hub.url, token_source="discovered", token="t" * 48, hub=True, timeout=10.0)
        async with Fleet([cfg], Settings(timeout=10.0)) as fleet:
            snap = await fleet.snapshot(hold_back=5.0)
            assert {s.name for s in snap.servers if s.user is not None} == {"h/u000", "h/u001", "h/u002"}
            for gone in ("u001", "u002"):  # she stops her server; later so does he
                hub.names.remove(gone)
                snap = await fleet.snapshot(hold_back=5.0)
                assert f"h/{gone}" not in {s.name for s in snap.servers}
                assert f"h/{gone}" not in {k.server for k in snap.kernels}
            snap = await fleet.snapshot(hold_back=5.0)
            assert {s.name for s in snap.servers if s.user is not None} == {"h/u000"}
            held = set(fleet._last_read) | set(fleet._reading)
            assert held <= {"h/u000"}, held
