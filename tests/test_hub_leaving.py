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


@pytest.mark.parametrize("how", ["502", "hung"])
async def test_a_hub_that_cannot_list_its_users_has_none_of_their_servers_read(how):
    # The hub answers its users' list with a 502, or not in time (restarting, it may have
    # stopped their servers; any local user may then take a freed port): no user's server is
    # asked anything (her token would go to whoever holds that address now) until the hub
    # lists them again.
    with FakeHub(users=3, page=50) as hub:
        cfg = ServerConfig(name="h", url=hub.url, token_source="discovered", token="t" * 48, hub=True, timeout=1.0)
        try:
            async with Fleet([cfg], Settings(timeout=1.0)) as fleet:
                first = await fleet.snapshot(hold_back=5.0)
                users = {s.name for s in first.servers if s.user is not None}
                asked = sum(hub.asked.values())
                hub.failing, hub.failing_hangs = 2, how == "hung"
                for _ in range(2):
                    snap = await fleet.snapshot(hold_back=5.0)
                    row = next(s for s in snap.servers if s.name == "h")
                    assert not row.ok and row.error_kind == ("timeout" if how == "hung" else "server-error"), row
                    assert not [s for s in snap.servers if s.user is not None] and not snap.kernels
                assert sum(hub.asked.values()) == asked
                hub.release.set()
                snap = await fleet.snapshot(hold_back=5.0)
                assert next(s for s in snap.servers if s.name == "h").ok
                assert {k.server for k in snap.kernels} == users
        finally:
            hub.release.set()


async def test_a_server_that_leaves_is_asked_nothing_more():
    # Her notebook's check is under way (her server is slow to answer it) when she stops her
    # server: the check ends with it, nothing more is asked of it, nothing is kept of it.
    import asyncio

    with FakeHub(users=2, page=50) as hub:
        hub.notebooks = {"u000": "work/a.ipynb", "u001": "work/b.ipynb"}
        cfg = ServerConfig(name="h", url=hub.url, token_source="discovered", token="t" * 48, hub=True, timeout=10.0)
        try:
            async with Fleet([cfg], Settings(timeout=10.0)) as fleet:
                await fleet.snapshot(hold_back=5.0)
                for _ in range(100):  # both checks asked (each held by the server)
                    if hub.contents_asked >= 2:
                        break
                    await asyncio.sleep(0.05)
                assert hub.contents_asked == 2
                checking = [t for t in asyncio.all_tasks() if "NotebookChecks.refresh" in repr(t.get_coro())]
                assert len(checking) == 2
                hub.names.remove("u001")
                await fleet.snapshot(hold_back=5.0)
                await asyncio.sleep(0)  # (a cancelled task ends at its next turn)
                still = [t for t in checking if not t.done()]
                assert len(still) == 1 and list(fleet.notebooks._servers) == ["h/u000"]
        finally:
            hub.release.set()


async def test_a_server_whose_sessions_all_closed_keeps_no_checks():
    import asyncio

    with FakeHub(users=1, page=50) as hub:
        hub.release.set()  # its contents answer at once (404: the notebook is not there)
        hub.notebooks = {"u000": "work/a.ipynb"}
        cfg = ServerConfig(name="h", url=hub.url, token_source="discovered", token="t" * 48, hub=True, timeout=10.0)
        async with Fleet([cfg], Settings(timeout=10.0)) as fleet:
            await fleet.snapshot(hold_back=5.0)
            task = fleet._servers["h/u000"].nb_task
            assert task is not None
            await asyncio.wait_for(task, 10)
            assert fleet.notebooks.get("h/u000", "work/a.ipynb") is False
            hub.notebooks = {}  # she closed her notebook
            await fleet.snapshot(hold_back=5.0)
            assert "h/u000" not in fleet.notebooks._servers
