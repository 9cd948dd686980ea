"""The TUI's actions on a kernel whose id cannot be one URL path segment (issue 21): the row is
listed as text, and kill, interrupt and restart are refused with the line that says why; the
server receives no action at all."""

from __future__ import annotations

from nbtui.files.config import ServerConfig, Settings
from nbtui.service.fleet import Fleet
from nbtui.tui.app import NbtuiApp
from nbtui.tui.screens.confirm import ConfirmScreen
from tests.fakehttp import FakeHTTP
from tests.jupyter import until

EVIL = "../../../../hub/api/users/bob/server"
UNSAFE = "cannot be one URL path segment"


async def test_kill_interrupt_and_restart_are_refused_and_nothing_is_sent():
    with FakeHTTP("liar", kernels=[EVIL]) as bad:
        fleet = Fleet([ServerConfig(name="bad", url=bad.url, token_source="none", timeout=2.0)],
                      Settings(timeout=2.0))
        app = NbtuiApp(fleet, refresh=0.3)
        async with app.run_test(size=(120, 30)) as pilot:
            screen = app.fleet_screen
            await until(pilot, lambda: len(screen.table.order) == 1, what="the hostile row")
            assert screen.select(f"bad:{EVIL}")
            await pilot.press("k")
            modal = await until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen,
                                what="the kill dialog")
            assert UNSAFE in "\n".join(modal.lines)
            await pilot.press("y")
            await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), what="the dialog to close")
            for key in ("i", "r"):
                await pilot.press(key)
                if isinstance(app.screen, ConfirmScreen):  # restart asks first
                    await pilot.press("y")
                await until(pilot, lambda: any(UNSAFE in str(n.message) for n in app._notifications),
                            what=f"the refusal after {key}")
                app.clear_notifications()
        assert bad.deleted == []  # no DELETE, no POST: nothing reached the server but its reads
