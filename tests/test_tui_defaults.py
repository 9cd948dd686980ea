"""What the screen offers before anyone types: "Change theme" lists nbtui's themes first,
the filter box's hint names every field it filters, and the cull dialog starts from the
configured idle (saying where it comes from)."""

from __future__ import annotations

import pytest

from nbtui.files.config import Settings
from nbtui.tui.screens.fleet import FILTER_HINT
from nbtui.tui.screens.kill import CullScreen
from tests.jupyter import until
from tests.test_tui_snapshots import app_with, holders, settle


async def test_change_theme_lists_nbtuis_themes_first():
    app = app_with([holders()])
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.action_change_theme()
        options = await until(pilot, lambda: app.screen.query("CommandList") and
                              app.screen.query_one("CommandList").option_count > 4 and
                              app.screen.query_one("CommandList"), what="the theme list")
        names = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        own = sorted(app.own_themes)
        assert sorted(names[:len(own)]) == own and all(n.startswith("nbtui-") for n in own), names
        assert len(names) > len(own)  # Textual's own follow


async def test_the_filter_hint_names_every_field_it_filters():
    app = app_with([holders()])
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.fleet_screen
        assert screen.query_one("#filter").placeholder == FILTER_HINT
        assert FILTER_HINT == "filter: server, id, path, spec, state, kind, user, reason (escape clears)"
        assert len(FILTER_HINT) <= 78  # whole at 80 columns
        # The fields the old hint left out filter too: kind, user and reason.
        for word, keys in (("terminal", ["terminal:gpu1/1"]), ("alice", None), ("server-gone", ["pid:4711"])):
            await pilot.press("slash", *word, "enter")
            await pilot.pause()
            shown = screen.table.order
            if keys is not None:
                assert shown == keys, (word, shown)
            else:
                assert shown and all(screen._by_key[k].user == "alice" for k in shown), (word, shown)
            await pilot.press("slash", "escape")
            await pilot.pause()


@pytest.mark.parametrize("settings, idle, source", [
    (Settings(cull_idle=1800.0), "30m", "[cull] idle in config.toml"),
    (Settings(orphan_idle=7200.0), "2h", "the idle threshold ([orphans] idle)"),
], ids=["cull-idle", "orphans-idle"])
async def test_the_cull_dialog_starts_from_the_configured_idle(settings, idle, source):
    app = app_with([holders()], settings=settings)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.fleet_screen.action_cull()
        dialog = await until(pilot, lambda: isinstance(app.screen, CullScreen) and app.screen.query("#cull-idle")
                             and app.screen, what="the cull dialog")
        assert dialog.query_one("#cull-idle").value == idle
        label = str(dialog.query_one(".field").render())
        assert label.endswith(f"; default: {source}"), label
