"""200 users' servers behind one hub (a JupyterHub-shaped server: a real hub spawning 200
single-user servers is too heavy for this machine): every one listed, the pagination
followed, and never more sockets open at once than the hub's bound."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time

import httpx
import pytest

from nbtui.files.config import ServerConfig, Settings
from nbtui.service.fleet import Fleet
from nbtui.jupyter import hub as hub_mod
from tests.conftest import ROOT
from tests.fakehub import kernel_id

pytestmark = pytest.mark.timeout(120)
USERS = 200


@pytest.fixture
def fake_hub():
    """The fake hub in a process of its own (its threads must not slow the fleet measured)."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakehub", str(USERS), "50"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        proc.kill()
        proc.wait(10)


async def test_200_servers_need_not_200_sockets(fake_hub):
    cfg = ServerConfig(name="big", url=fake_hub, token_source="discovered", token="t" * 48, hub=True, timeout=30.0)
    async with Fleet([cfg], Settings(timeout=30.0)) as fleet:
        snap = await fleet.snapshot()
    users = [s for s in snap.servers if s.user is not None]
    assert len(users) == USERS and all(s.ok and s.route == "direct" for s in users), \
        [s.error for s in users if not s.ok][:3]
    assert {k.kernel_id for k in snap.kernels} == {kernel_id(i) for i in range(USERS)}
    stats = httpx.get(fake_hub + "_stats", timeout=10).json()
    # The hub's lists, page by page: offsets 0, 50, 100, 150 (the last page has no next).
    assert stats["offsets"] == {"users": [0, 50, 100, 150], "proxy": [0, 50, 100, 150]}
    # The users' servers share one pool of SOCKETS; the hub's own client keeps at most its
    # two lists' sockets (users and routes, asked at once); this check adds one.
    assert stats["max_open"] <= hub_mod.SOCKETS + 3, stats["max_open"]
    # Each user's server got a token minted for it alone (its server refuses any other, the
    # hub's included), and every one was revoked when the fleet closed.
    assert (stats["mints"], stats["refused"], stats["revoked"]) == (USERS, 0, USERS)


async def test_the_fleet_acts_with_the_token_its_listing_holds_now(fake_hub):
    """The TUI acts through the fleet that lists the hub (one fleet, on the service's loop): a
    user's server is acted on with the token minted for it, and with the new one once the
    listing mints it anew (an hour on)."""
    cfg = ServerConfig(name="big", url=fake_hub, token_source="discovered", token="t" * 48, hub=True, timeout=30.0)
    async with Fleet([cfg], Settings(timeout=30.0)) as fleet:
        await fleet.snapshot()
        first = fleet.client("big/u001").token
        assert first is not None and first != cfg.token
        assert await fleet.client("big/u001").kernels()  # its own server answers it
        mint = fleet.hub_of("big").mint
        held = mint._tokens[("u001", "")]
        mint._tokens[("u001", "")] = dataclasses.replace(held, expires=time.monotonic() + 1)  # an hour on
        await fleet.snapshot()  # minted anew
        again = fleet.client("big/u001")
        assert again.token not in (None, first)
        assert await again.kernels()


async def test_a_hub_s_servers_are_probed_once_per_server_process_not_once_per_run(tmp_path):
    """What does not change while a server runs (its version, its terminals, the nbtui
    extension's absence) is asked of each user's server once: a later run (a new fleet, as a
    new `nbtui ls`) asks only its kernels, sessions and terminals, until the hub says the
    server started again. The memory is a private file in the state folder."""
    import os

    from tests.fakehub import FakeHub
    import threading

    hub = FakeHub(users=20, page=50)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    cfg = ServerConfig(name="h", url=hub.url, token_source="discovered", token="t" * 48, hub=True, timeout=30.0)

    async def one_run() -> dict[str, int]:
        before = dict(hub.asked)
        async with Fleet([cfg], Settings(timeout=30.0)) as fleet:
            snap = await fleet.snapshot()
        assert sum(1 for s in snap.servers if s.user is not None and s.ok) == 20
        assert all(s.version == "2.17.0" for s in snap.servers if s.user is not None)  # known either way
        return {k: n - before.get(k, 0) for k, n in hub.asked.items() if n - before.get(k, 0)}

    try:
        first = await one_run()
        assert first["/api"] == 20 and first["/api/nbtui/usage"] == 20
        memory = tmp_path / "nbtui-state" / "probes.json"
        assert memory.exists() and oct(os.stat(memory).st_mode & 0o777) == "0o600"
        second = await one_run()
        assert "/api" not in second and "/api/nbtui/usage" not in second
        assert second["/api/kernels"] == second["/api/sessions"] == second["/api/terminals"] == 20
        hub.started = "2026-12-01T00:00:00.000000Z"  # every server started again: probed again
        third = await one_run()
        assert third["/api"] == 20 and third["/api/nbtui/usage"] == 20

        # Within one fleet (the TUI's) too: a server the hub says started again is probed again.
        async with Fleet([cfg], Settings(timeout=30.0)) as fleet:
            await fleet.snapshot()
            before = dict(hub.asked)
            await fleet.snapshot()
            assert hub.asked.get("/api", 0) == before.get("/api", 0)  # the same processes: not asked
            hub.started = "2026-12-02T00:00:00.000000Z"
            await fleet.snapshot()
            assert hub.asked["/api"] - before.get("/api", 0) == 20
    finally:
        hub.shutdown()
