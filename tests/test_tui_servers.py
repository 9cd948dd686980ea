"""The servers screen (v): every server as a row, each hub user's under its hub; k stops
a hub user's server (readonly gate, refusals). The stop itself against a real hub is in
tests/test_hub.py."""

from __future__ import annotations

import dataclasses
import datetime as dt

from nbtui.core.model import ServerInfo
from nbtui.tui.screens.confirm import ConfirmScreen
from nbtui.tui.screens.servers import ServersScreen
from tests.jupyter import until
from tests.test_tui_snapshots import T0, _k, app_with, recorded, settle

H = dt.timedelta(hours=1)


def hub_snapshot():
    base = recorded(0)
    hub = ServerInfo("hub", "http://127.0.0.1:8000/", "hub", version="6.1.1", latency_ms=4.0, hub="hub")

    def user(name, server="", route="direct", pending=None, **kw):
        full = f"hub/{name}" + (f"/{server}" if server else "")
        return ServerInfo(full, f"http://127.0.0.1:{9000 + len(full)}/user/{name}/", "hub", version="2.17.0",
                          latency_ms=3.0, hub="hub", user=name, server_name=server, pending=pending,
                          started=T0 - 5 * H, hub_last_activity=T0 - 2 * H, route=route, **kw)

    users = (
        user("alice"), user("bob", "gpu-large"),
        user("carol", route="proxy", route_note="read through the hub's proxy: each read marks the server "
             "active (its hub last_activity), which keeps it from idle culling; read at most every 15m"),
        user("dave", pending="spawn", route=None),
        user("erin", status="timeout", error_kind="timeout", error="server hub/erin: timed out after 3 s"),
    )
    kernels = base.kernels + (_k("hub/alice", "9a9a9a9a-0000-4000-8000-00000000000a", "a.ipynb"),
                              _k("hub/bob/gpu-large", "9b9b9b9b-0000-4000-8000-00000000000b", "b.ipynb"),
                              _k("hub/bob/gpu-large", "9c9c9c9c-0000-4000-8000-00000000000c", None))
    return dataclasses.replace(base, servers=base.servers[:1] + (hub,) + users + base.servers[1:],
                               kernels=kernels)


async def open_servers(pilot):
    await settle(pilot)
    await pilot.press("v")
    return await until(pilot, lambda: isinstance(pilot.app.screen, ServersScreen) and pilot.app.screen,
                       what="the servers screen")


def test_servers_screen(snap_compare, still_clock):
    still_clock(T0)  # the hand-built kernels' idle times as named
    async def run(pilot):
        screen = await open_servers(pilot)
        screen.select("hub/carol")
        await pilot.pause()

    assert snap_compare(app_with([hub_snapshot()]), terminal_size=(100, 24), run_before=run)


async def test_k_on_rows_that_are_no_hub_user_server_says_so_and_readonly_refuses():
    app = app_with([hub_snapshot()])
    async with app.run_test(size=(100, 24)) as pilot:
        screen = await open_servers(pilot)
        assert screen._order[:3] == ["gpu1", "hub", "hub/alice"]  # user servers under their hub
        assert screen.select("hub")
        await pilot.press("k")
        await until(pilot, lambda: any("is a hub" in n.message for n in app._notifications), what="the refusal")
        assert screen.select("hub/dave")  # still starting: refused by the plan
        await pilot.press("k")
        await until(pilot, lambda: any("still starting" in n.message for n in app._notifications),
                    what="the plan's refusal")
        assert screen.select("hub/alice")
        await pilot.press("k")
        modal = await until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen, what="the plan")
        assert modal.title_text == "Stop hub/alice?"
        await pilot.press("n")
        await until(pilot, lambda: app.screen is screen, what="back on the servers screen")
        await pilot.press("enter")  # its kernels on the fleet screen
        fleet = app.fleet_screen
        await until(pilot, lambda: app.screen is fleet and fleet.table.order == [
            "hub/alice:9a9a9a9a-0000-4000-8000-00000000000a"], what="only hub/alice's kernel")

    app = app_with([hub_snapshot()], readonly=True)
    async with app.run_test(size=(100, 24)) as pilot:
        screen = await open_servers(pilot)
        assert screen.select("hub/alice")
        await pilot.press("k")
        await until(pilot, lambda: any(n.message == "readonly: stopping servers is off" for n in app._notifications),
                    what="the readonly refusal")
        assert app.screen is screen


async def test_end_goes_to_the_last_row_a_hub_row_says_what_k_does_and_an_error_shows_whole():
    snap = hub_snapshot()
    long = ("server lab: auth-failed: the token from environment variable NBTUI_LAB_TOKEN is not set; "
            "set it, or name another source with `nbtui servers add lab URL --token-env VAR`")
    snap = dataclasses.replace(snap, servers=tuple(
        dataclasses.replace(s, status="auth-failed", error_kind="auth-failed", error=long) if s.name == "lab" else s
        for s in snap.servers))
    app = app_with([snap])
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_servers(pilot)
        await until(pilot, lambda: app.focused is screen.table, what="the table focused")
        await pilot.press("end")
        assert screen.table.cursor_row == len(screen._order) - 1
        await pilot.press("home")
        assert screen.table.cursor_row == 0
        assert screen.select("hub")
        await pilot.pause()
        text = "\n".join(s.text for s in app.screen._compositor.render_strips())
        assert "A JupyterHub: its users' servers are the rows under it" in text, text
        await pilot.press("k")
        await until(pilot, lambda: any("nbtui does not stop a hub" in n.message for n in app._notifications),
                    what="what k does on a hub")
        assert screen.select("lab")
        await pilot.pause()
        note = " ".join(str(screen.query_one("#servers-note").render()).split())
        assert note == long, note  # whole, wrapped
