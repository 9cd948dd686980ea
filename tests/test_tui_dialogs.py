"""The migrate and cull dialogs read without colour: checkboxes are `[x]` / `[ ]` in
every shipped theme (nbtui-ansi: the terminal's 16 colours) and under NO_COLOR; the progress bar is
hidden until a transfer starts; errors name the dialog's own fields.

SVGs in snapshots/test_tui_dialogs/ (update with --snapshot-update after an intended change).
"""

from __future__ import annotations

import pytest

from nbtui import actions
from nbtui.tui.checkbox import OFF, ON
from nbtui.tui.kill import CullScreen
from nbtui.tui.migrate import MigrateScreen, field_words
from tests.jupyter import until
from tests.test_tui_snapshots import app_with, holders, settle

# Every shipped theme (nbtui-ansi draws in the terminal's own 16 colours, nbtui-high-contrast
# in pure colours a 16-colour terminal shows exactly); the glyphs are text, so NO_COLOR shows
# the same [x] / [ ].
THEMES = ["nbtui-dark", "nbtui-light", "nbtui-high-contrast", "nbtui-ansi"]


@pytest.fixture
def colour(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)


def _migrate(on: bool):
    """The migrate dialog with both its boxes (keep the source, overwrite the notebook) on or off."""
    async def run(pilot):
        await settle(pilot)
        app = pilot.app
        k = app.fleet_screen.snapshot.kernels[0]
        await app.push_screen(MigrateScreen(k, ["gpu1", "hub/alice/gpu-large", "lab"]))
        await _focused(pilot, "mig-plan-button")
        app.screen.query_one("#mig-keep").value = on
        app.screen.query_one("#mig-overwrite").value = on
        await pilot.pause()
    return run


async def _cull(pilot):
    await settle(pilot)
    app = pilot.app
    await app.push_screen(CullScreen(actions.CullPolicy(idle=3600.0, orphans=True, gpu_only=False)))
    await _focused(pilot, "cull-idle")


async def _focused(pilot, widget_id: str) -> None:
    """The dialog composed and its first field focused (a loaded machine takes a while; the
    focus is set again here so no auto-focus race changes the picture)."""
    app = pilot.app
    await until(pilot, lambda: app.screen.query(f"#{widget_id}"), what=f"#{widget_id} composed")
    for box in app.screen.query("Input"):
        box.cursor_blink = False  # a blinking cursor made the picture depend on when it was taken
    app.screen.set_focus(app.screen.query_one(f"#{widget_id}"))
    await until(pilot, lambda: app.focused is not None and app.focused.id == widget_id, what=f"#{widget_id} focused")
    assert not pilot.app._notifications, [n.message for n in pilot.app._notifications]  # no stray toast
    await pilot.pause()


@pytest.mark.parametrize("keep", [True, False], ids=["on", "off"])
@pytest.mark.parametrize("theme", THEMES)
def test_migrate_dialog(snap_compare, colour, theme, keep):
    assert snap_compare(app_with([holders()], theme=theme), terminal_size=(100, 30), run_before=_migrate(keep))


@pytest.mark.parametrize("theme", THEMES)
def test_cull_dialog_one_box_on_one_off(snap_compare, colour, theme):
    assert snap_compare(app_with([holders()], theme=theme), terminal_size=(80, 24), run_before=_cull)


@pytest.mark.parametrize("keep", [True, False], ids=["on", "off"])
def test_migrate_dialog_no_color(snap_compare, keep):
    assert snap_compare(app_with([holders()]), terminal_size=(100, 30), run_before=_migrate(keep))


def test_cull_dialog_no_color(snap_compare):
    assert snap_compare(app_with([holders()]), terminal_size=(80, 24), run_before=_cull)


async def test_boxes_say_on_and_off_in_text_and_the_bar_waits_for_the_transfer():
    app = app_with([holders()])
    async with app.run_test(size=(80, 24)) as pilot:
        await _cull(pilot)
        text = "\n".join(s.text for s in app.screen._compositor.render_strips())
        assert f"{ON} Every orphan" in text and f"{OFF} Only what holds GPU memory" in text
        assert "empty: idle time is no rule)" in text  # the label wraps, never cut at 80
        app.screen.query_one("#cull-idle").value = "2hrs"
        app.screen._submit()
        await pilot.pause()
        error = str(app.screen.query_one("#cull-error").render())
        assert '"Idle longer than" value' in error and "90s, 30m, 2h, 1d" in error
        app.pop_screen()
        await pilot.pause()
        await _migrate(False)(pilot)
        bar = app.screen.query_one("#mig-progress")
        assert not bar.display  # nothing until the transfer starts
        text = "\n".join(s.text for s in app.screen._compositor.render_strips())
        assert f"{OFF} Keep the source kernel running" in text
        assert f"{OFF} Overwrite a different notebook file on the target" in text  # off by default


def test_errors_name_the_dialog_fields():
    assert field_words("name the notebook's path on the target with --notebook PATH") == \
        "name the notebook's path on the target with the Notebook field"
    assert "Keep the source" in field_words("--keep-source")
    assert field_words("keep it and name another path with --notebook PATH, or replace it with "
                       "--overwrite-notebook") == ("keep it and name another path with the Notebook field, "
                                                   "or replace it: tick \"Overwrite a different notebook file "
                                                   "on the target\"")
