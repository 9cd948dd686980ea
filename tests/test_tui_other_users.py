"""Root's discovery finds every user's servers: the fleet screen's strip shows them as one
entry per user, and `x` opens them into one entry each, with its owner (and closes them again)."""

from __future__ import annotations

from nbtui.core.model import ServerInfo, Snapshot
from tests.test_tui_snapshots import T0, _k, app_with, settle


def _snapshot() -> Snapshot:
    servers = (
        ServerInfo("gpu1", "http://127.0.0.1:8888/", "config", version="2.21.1", latency_ms=3.0, local=True),
        ServerInfo("local-4101", "http://127.0.0.1:8901/", "discovered", version="2.21.1", local=True, owner="alice"),
        ServerInfo("local-4102", "http://127.0.0.1:8902/", "discovered", version="2.21.1", local=True, owner="alice"),
        ServerInfo("local-4203", "http://127.0.0.1:8903/", "discovered", version="2.21.1", local=True,
                   owner="bob\x1b[31m"),
    )
    kernels = (_k("gpu1", "80442938-1a2b-4c3d-9e8f-000000000001", "a.ipynb"),)
    return Snapshot(generated_at=T0, servers=servers, kernels=kernels, idle_threshold=3600.0)


async def test_x_opens_other_users_servers_one_entry_each_and_closes_them():
    app = app_with([_snapshot()])
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        strip = lambda: " ".join(str(app.fleet_screen.query_one("#servers").render()).split())  # noqa: E731
        assert "user alice 2 servers" in strip() and "user bob\\x1b[31m 1 server" in strip()
        assert "local-4101" not in strip()
        await pilot.press("x")
        await pilot.pause()
        assert "local-4101 v2.21.1 (user alice)" in strip() and "local-4203 v2.21.1 (user bob\\x1b[31m)" in strip()
        assert "user alice 2 servers" not in strip()
        await pilot.press("x")
        await pilot.pause()
        assert "user alice 2 servers" in strip() and "local-4101" not in strip()
