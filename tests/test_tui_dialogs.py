"""The migrate and cull dialogs read without colour: checkboxes are `[x]` / `[ ]` in
every shipped theme (nbtui-ansi: the terminal's 16 colours) and under NO_COLOR; the progress bar is
hidden until a transfer starts; errors name the dialog's own fields.

SVGs in snapshots/test_tui_dialogs/ (update with --snapshot-update after an intended change).
"""

from __future__ import annotations

import pytest

from nbtui.service.actions import migrate as migrate_action
from nbtui.service.actions.cull import CullPolicy
from nbtui.tui.widgets.checkbox import OFF, ON
from nbtui.tui.screens.kill import CullScreen
from nbtui.tui.screens.migrate import MigrateScreen, field_words
from tests.jupyter import until
from tests.test_tui_snapshots import T0, app_with, holders, settle

# Every shipped theme (nbtui-ansi draws in the terminal's own 16 colours, nbtui-high-contrast
# in pure colours a 16-colour terminal shows exactly); the glyphs are text, so NO_COLOR shows
# the same [x] / [ ].
THEMES = ["nbtui-dark", "nbtui-light", "nbtui-high-contrast", "nbtui-ansi"]


@pytest.fixture(autouse=True)
def _clock(still_clock):
    still_clock(T0)  # the recorded holders' idle times, as test_tui_snapshots shows them


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
    await app.push_screen(CullScreen(CullPolicy(idle=3600.0, orphans=True, gpu_only=False)))
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


class PlannedMigration:
    """Stands in for nbtui.migrate.move.Migration: a fixed plan (the real one is in
    tests/test_tui_migrate.py, against real servers), so the picture is the same each time."""

    def __init__(self, opts):
        from nbtui.migrate.move import Entry, Report
        self.opts = opts
        self.report = Report(
            source={"server": "gpu1", "kernel_id": "80442938-1a2b", "notebook": "ana/train-resnet.ipynb"},
            target={"server": opts.to, "kernel_name": "python3", "notebook": opts.notebook},
            entries=[Entry("weights", "torch.Tensor", 4 << 30, serializer="torch", gpu=["cuda:0"],
                           note="cuda:0 -> cpu (1 tensor)"),
                     Entry("df", "pandas.DataFrame", 120 << 20, serializer="pickle"),
                     Entry("cfg", "dict", 2048, serializer="pickle"),
                     Entry("np", "module", status="import", module="numpy"),
                     Entry("lock", "_thread.lock", status="skip", reason="not picklable", process_bound=True),
                     Entry("log", "_io.TextIOWrapper", status="skip", reason="an open file", process_bound=True)])

    async def prepare(self):
        return self.report

    async def cancel(self):
        pass


@pytest.fixture
def planned(monkeypatch):
    monkeypatch.setattr(migrate_action, "migration_for", lambda fleet, k, opts, progress=None: PlannedMigration(opts))


async def _planned_by_keys(pilot):
    """m on the first row, then the keyboard alone: the first field has the focus, tab to
    the notebook, enter plans; Move has the focus then."""
    await settle(pilot)
    app = pilot.app
    await pilot.press("m")
    await until(pilot, lambda: isinstance(app.screen, MigrateScreen) and app.screen.query("#mig-move"),
                what="the migrate dialog")
    await until(pilot, lambda: app.focused is not None and app.focused.id == "mig-to", what="the first field focused")
    for box in app.screen.query("Input"):
        box.cursor_blink = False
    await pilot.press("tab", "enter")
    await until(pilot, lambda: app.focused is not None and app.focused.id == "mig-move", what="Move focused")
    await pilot.pause()


@pytest.mark.parametrize("theme", THEMES)
def test_migrate_dialog_after_plan_at_80x24(snap_compare, colour, planned, theme):
    assert snap_compare(app_with([holders()], theme=theme), terminal_size=(80, 24), run_before=_planned_by_keys)


async def test_migrate_dialog_at_80x24_keeps_its_buttons_in_view_and_tab_reaches_each(planned):
    app = app_with([holders()])
    async with app.run_test(size=(80, 24)) as pilot:
        await _planned_by_keys(pilot)
        dialog = app.screen.query_one("#mig-dialog")
        assert dialog.max_scroll_y > 0  # the plan does not fit: the dialog scrolls …
        text = "\n".join(s.text for s in app.screen._compositor.render_strips())
        assert "3 names to move" in text and "Close" in text and "Plan" in text and "Move" in text, text
        seen = []
        for _ in range(8):  # … and tab goes round every field and button, none of them a dead stop
            await pilot.press("tab")
            seen.append(app.focused.id if app.focused is not None else None)
            region = app.focused.region
            if app.focused.id in ("mig-to", "mig-notebook"):  # its label reversed: focus seen without colour
                assert app.focused.parent.has_class("-has-focus")
            assert region.height and app.screen.region.contains_region(region), (app.focused, region)
        assert seen[:7] == ["mig-to", "mig-notebook", "mig-keep", "mig-overwrite", "mig-close", "mig-plan-button",
                            "mig-move"], seen
        await pilot.press("pagedown")
        await pilot.pause()
        assert dialog.scroll_y > 0
