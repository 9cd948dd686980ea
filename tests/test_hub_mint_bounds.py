"""Tokens minted for users' servers stay few, whatever a user's server or the hub says.

A hub user runs her server: it may refuse every token nbtui brings. Each refusal must not
buy her another token minted in the hub (an hour-long row in its database) at every refresh,
nor grow nbtui's memory: the refused token is revoked at once and the next one is asked for
only after a pause. A hub that caps token lifetimes below nbtui's renewal margin must not
get a new token per server at every refresh either.
"""

from __future__ import annotations

import pytest

from nbtui.files.config import ServerConfig, Settings
from nbtui.service.fleet import Fleet
from nbtui.jupyter import hubtokens
from tests.fakehub import FakeHub

pytestmark = pytest.mark.timeout(120)
READS = 5


def _config(hub: FakeHub) -> ServerConfig:
    return ServerConfig(name="h", url=hub.url, token_source="discovered", token="t" * 48, hub=True, timeout=10.0)


def _live(hub: FakeHub, user: str) -> int:
    return sum(1 for name, _ in hub.ids.values() if name == user)


async def test_a_server_refusing_its_token_gets_no_new_one_at_each_refresh():
    with FakeHub(users=3, page=50) as hub:
        hub.refuse_all = {"u001"}
        async with Fleet([_config(hub)], Settings(timeout=10.0)) as fleet:
            for _ in range(READS):
                snap = await fleet.snapshot()
            rows = {s.name: s for s in snap.servers}
            assert rows["h/u000"].ok and rows["h/u002"].ok
            assert not rows["h/u001"].ok and "refused" in (rows["h/u001"].error or "")
            # One token asked for her server, and it is no longer valid in the hub.
            assert hub.mints_by["u001"] == 1 and _live(hub, "u001") == 0, (hub.mints_by, hub.ids)
            # The honest users' servers kept theirs: one each, read five times.
            assert hub.mints_by["u000"] == hub.mints_by["u002"] == 1


async def test_a_hub_capping_lifetimes_below_the_renewal_margin_is_not_asked_at_each_refresh(monkeypatch):
    with FakeHub(users=2, page=50) as hub:
        async with Fleet([_config(hub)], Settings(timeout=10.0)) as fleet:
            fleet.hub_of("h").mint._max_lifetime = hubtokens.RENEW_BEFORE // 2  # as learnt from the hub's refusal
            for _ in range(READS):
                snap = await fleet.snapshot()
            assert all(s.ok for s in snap.servers if s.user is not None)
            assert hub.mints_by == {"u000": 1, "u001": 1}, hub.mints_by


async def test_every_minted_token_is_known_to_redaction_from_the_moment_it_is_minted():
    """A minted token is a secret like the hub's: any text that carries it (an error a server
    echoes, a log line) is scrubbed, whether or not its server has been read yet."""
    from nbtui.jupyter.hub import HubSource
    from nbtui.files.secrets import redact
    with FakeHub(users=2, page=50) as hub:
        source = HubSource(_config(hub), 10.0)
        try:
            await source.read()  # lists and mints; no server read (that is the fleet's)
            tokens = [t for ts in hub.minted.values() for t in ts]
            assert len(tokens) == 2 and all(redact(f"echo {t}") == "echo ***" for t in tokens)
        finally:
            await source.aclose()
