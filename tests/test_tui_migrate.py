"""Migrate and rebind from the fleet screen (m, the palette) against real servers."""

from __future__ import annotations

import json
import os
from pathlib import Path

from nbtui.files.config import ServerConfig, Settings
from nbtui.service.fleet import Fleet
from nbtui.tui.app import NbtuiApp
from nbtui.tui.screens.confirm import ConfirmScreen
from nbtui.tui.screens.migrate import MigrateScreen, RebindScreen
from textual.widgets import Button, Input, ProgressBar, Static
from tests.jupyter import until


def _app(*servers) -> NbtuiApp:
    configs = [ServerConfig(name=s.name, url=s.url, token_source="discovered", token=s.token, timeout=10.0)
               for s in servers]
    return NbtuiApp(Fleet(configs, Settings(timeout=10.0)), refresh=0.3)


def _text(app, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def _planned(pilot, app, what: str) -> None:
    """Until Move is on (a plan came); a failure says what the dialog says."""
    try:
        await until(pilot, lambda: not app.screen.query_one("#mig-move", Button).disabled, 90, what=what)
    except AssertionError as e:
        raise AssertionError(f"{e}; the dialog says: {_text(app, '#mig-status')!r}") from None


async def _press(pilot, app, selector: str) -> None:
    """Press a dialog's button from the keyboard (focus it, enter), as a keyboard user does.
    After the dialog's status line has changed, a click can miss: ``pilot.click`` aims at the
    button's place before the dialog is laid out again around the new text (this test failed so,
    twice in a few dozen runs, ``pilot.click`` saying the click landed elsewhere)."""
    button = app.screen.query_one(selector, Button)
    button.focus()
    await until(pilot, lambda: app.focused is button, what=f"the focus on {selector}")
    await pilot.press("enter")


async def test_m_plans_then_moves_with_a_progress_bar(jupyter_factory):
    a, b = jupyter_factory("a"), jupyter_factory("b")
    kid = a.create_session("work/m.ipynb")["kernel"]["id"]
    a.run_code(kid, "import threading\nweights = bytearray(range(256)) * 40000\nlock = threading.Lock()")
    mine = a.write_notebook("work/m.ipynb")
    theirs = b.root_dir / "work" / "m.ipynb"  # a different file where the notebook goes
    theirs.parent.mkdir(parents=True)
    theirs.write_text(json.dumps({"cells": [{"cell_type": "markdown", "metadata": {}, "source": "b's own"}],
                                  "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    app = _app(a, b)
    async with app.run_test(size=(120, 34)) as pilot:
        screen = app.fleet_screen
        await until(pilot, lambda: screen.select(f"a:{kid}"), what="the kernel's row")
        await pilot.press("m")
        await until(pilot, lambda: isinstance(app.screen, MigrateScreen) and app.screen.query("#mig-notebook"),
                    what="the migrate dialog")  # composed, not only pushed (a loaded machine)
        assert app.screen.query_one("#mig-notebook", Input).value == "work/m.ipynb"
        assert await pilot.click("#mig-plan-button")  # (False: the click landed elsewhere)
        # The different file on b is refused, in the dialog's own words; the box (off by
        # default) overwrites it.
        await until(pilot, lambda: "different file" in _text(app, "#mig-status"), 90, what="the refusal")
        refusal = _text(app, "#mig-status")
        assert '"Overwrite a different notebook file on the target"' in refusal and "--" not in refusal, refusal
        assert app.screen.query_one("#mig-move", Button).disabled
        box = app.screen.query_one("#mig-overwrite")
        assert box.value is False
        box.value = True
        await _press(pilot, app, "#mig-plan-button")
        await _planned(pilot, app, "the plan")
        # The box's change event, had it come only now (a loaded machine), is already in the plan.
        app.screen.on_checkbox_changed(type(box).Changed(box, True))
        assert not app.screen.query_one("#mig-move", Button).disabled and app.screen.migration is not None
        box.value = False  # a real change drops the plan: planned again with the box on
        app.screen.on_checkbox_changed(type(box).Changed(box, False))
        assert app.screen.query_one("#mig-move", Button).disabled and app.screen.migration is None
        box.value = True
        await _press(pilot, app, "#mig-plan-button")
        await _planned(pilot, app, "the plan again")
        plan = _text(app, "#mig-plan-text")
        assert "weights" in plan and "lock" in plan and "skip" in plan and "-> b" in plan
        assert "over the different file" in plan and "--" not in plan, plan
        assert {k["id"] for k in b.kernels()} == set()  # nothing started before Move is confirmed

        await _press(pilot, app, "#mig-move")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, MigrateScreen) and app.screen.done, timeout=60,
                    what="the move to finish")
        status = _text(app, "#mig-status")
        assert "moved and verified 1 name" in status and "source kernel shut down" in status, status
        bar = app.screen.query_one("#mig-progress", ProgressBar)
        assert bar.percentage == 1.0
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen, what="the dialog to close")

    new = [k["id"] for k in b.kernels()]
    assert len(new) == 1 and kid not in {k["id"] for k in a.kernels()}
    assert json.loads(theirs.read_text())["cells"] == json.loads(mine.read_text())["cells"]  # overwritten
    reply = b.run_code(new[0], "assert len(weights) == 256 * 40000 and weights[300] == 44")
    assert reply["content"]["status"] == "ok"
    actions = [json.loads(x)["action"] for x in (Path(os.environ["NBTUI_STATE_DIR"]) / "audit.jsonl").read_text().splitlines()]
    # intent, outcome; then the source's shutdown: its intent (before the re-check), its outcome
    assert actions == ["migrate", "migrate", "migrate-shutdown", "migrate-shutdown"]


async def test_rebind_from_the_palette_and_readonly(jupyter_factory):
    a = jupyter_factory("a")
    kid = a.start_kernel()
    app = _app(a)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.fleet_screen
        await until(pilot, lambda: screen.select(f"a:{kid}"), what="the kernel's row")
        screen.action_rebind()
        await until(pilot, lambda: isinstance(app.screen, RebindScreen), what="the rebind dialog")
        await pilot.press(*"found.ipynb", "enter")
        await until(pilot, lambda: app.screen is screen, what="the dialog to close")
        sessions = a.api("GET", "api/sessions").json()
        assert [(s["path"], s["kernel"]["id"]) for s in sessions] == [("found.ipynb", kid)]

    app = NbtuiApp(app.fleet, refresh=0.3, readonly=True)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.fleet_screen
        await until(pilot, lambda: screen.select(f"a:{kid}"), what="the kernel's row")
        await pilot.press("m")
        await pilot.pause(0.2)
        assert app.screen is screen
        assert not any("Migrate" in title for title, _, _ in screen.palette_commands())


async def test_a_change_while_the_plan_is_made_leaves_move_off(monkeypatch):
    # The notebook field changed while the plan (for the old path) was being made: that plan
    # is not the one the inputs ask for, so Move stays off and the dialog says to plan again.
    import asyncio
    from types import SimpleNamespace

    from textual.app import App

    from nbtui.core.model import Kernel, Session
    from nbtui.tui.screens import migrate as screen_mod

    gate, waiting, cancelled = asyncio.Event(), asyncio.Event(), []

    class Planned:  # a migration whose plan comes when the test lets it
        def __init__(self, opts):
            self.opts = opts

        async def prepare(self):
            waiting.set()
            await gate.wait()
            self.report = SimpleNamespace(moved=[], target={"notebook": self.opts.notebook})
            return self.report

        async def cancel(self):
            cancelled.append(self.opts.notebook)

    class Host(App):
        async def act(self, work):
            return await work(None)

    monkeypatch.setattr(screen_mod.migrate_action, "migration_for", lambda fleet, k, opts, progress: Planned(opts))
    kernel = Kernel(server="a", kernel_id="k1", kernel_name="python3", state="idle", connections=0,
                    last_activity=None, session=Session(id="s", path="work/m.ipynb", name="m", type="notebook"))
    app = Host()
    async with app.run_test() as pilot:
        dialog = MigrateScreen(kernel, ["a", "b"])
        await app.push_screen(dialog)
        await until(pilot, lambda: dialog.query("#mig-notebook"), what="the dialog")
        dialog.query_one("#mig-to").value = "b"
        dialog.plan()
        await until(pilot, waiting.is_set, what="the plan under way")
        dialog.query_one("#mig-notebook", Input).value = "other/x.ipynb"
        gate.set()
        await until(pilot, lambda: "press Plan again" in _text(app, "#mig-status"), what="the dialog's word")
        assert dialog.query_one("#mig-move", Button).disabled and dialog.migration is None
        await until(pilot, lambda: cancelled == ["work/m.ipynb"], what="the stale plan cancelled")
