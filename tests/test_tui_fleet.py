"""The fleet screen against real Jupyter servers, through App.run_test()."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nbtui.files.config import ServerConfig, Settings
from nbtui.service.fleet import Fleet
from nbtui.tui.app import NbtuiApp
from nbtui.tui.screens.confirm import ConfirmScreen
from tests.jupyter import JupyterServer, until


def server_config(name: str, server: JupyterServer) -> ServerConfig:
    return ServerConfig(name=name, url=server.url, token_source="discovered", token=server.token, timeout=2.0)


def make_app(*servers: tuple[str, JupyterServer], **kw) -> NbtuiApp:
    fleet = Fleet([server_config(n, s) for n, s in servers], Settings(timeout=2.0))
    return NbtuiApp(fleet, refresh=kw.pop("refresh", 0.3), **kw)



def rows(app: NbtuiApp) -> list[str]:
    return app.fleet_screen.table.order


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory):
    a = JupyterServer(tmp_path_factory.mktemp("tui-a"), name="a").start()
    b = JupyterServer(tmp_path_factory.mktemp("tui-b"), name="b").start()
    a.write_notebook("work/train.ipynb")
    ids = {
        "train": a.create_session("work/train.ipynb")["kernel"]["id"],
        "bare": a.start_kernel(),
        "b1": b.create_session("b/analysis.ipynb")["kernel"]["id"],
    }
    yield a, b, ids
    a.stop()
    b.stop()


async def test_rows_appear_then_follow_the_servers(two_servers):
    a, b, ids = two_servers
    app = make_app(("a", a), ("b", b))
    async with app.run_test(size=(120, 30)) as pilot:
        want = {f"a:{ids['train']}", f"a:{ids['bare']}", f"b:{ids['b1']}"}
        await until(pilot, lambda: set(rows(app)) == want, what="the three kernels")
        screen = app.fleet_screen
        assert screen.table.get_cell(f"b:{ids['b1']}", "server").plain.startswith("b")  # cells are plain Text

        new = a.start_kernel()
        try:
            await until(pilot, lambda: f"a:{new}" in rows(app), what="a new kernel to appear")
        finally:
            a.shutdown_kernel(new)
        await until(pilot, lambda: f"a:{new}" not in rows(app), what="a shut-down kernel to go")
        assert set(rows(app)) == want


async def test_cursor_stays_on_its_kernel_when_rows_move(two_servers):
    a, b, ids = two_servers
    app = make_app(("a", a), ("b", b))
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: len(rows(app)) == 3, what="rows")
        screen = app.fleet_screen
        screen.sort_by("idle")  # longest idle first
        await pilot.pause()
        top = rows(app)[0]
        screen.table.move_cursor(row=0)
        await pilot.pause()
        assert screen.selected_kernel.key == top
        server = a if top.startswith("a:") else b
        server.run_code(top.split(":", 1)[1], "x = 1")  # now the least idle: it moves down
        await until(pilot, lambda: rows(app)[0] != top, what="the rows to reorder")
        assert screen.selected_kernel.key == top
        assert screen.table.cursor_row == rows(app).index(top) != 0


async def test_filter_and_sort(two_servers):
    a, b, ids = two_servers
    app = make_app(("a", a), ("b", b))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: len(rows(app)) == 3, what="rows")
        await pilot.press("slash", *"train")
        await until(pilot, lambda: rows(app) == [f"a:{ids['train']}"], what="the filter")
        await pilot.press("enter")  # keep the filter, back to the table
        await pilot.pause(0.5)  # refreshes keep it
        assert rows(app) == [f"a:{ids['train']}"]
        await pilot.press("escape")
        await until(pilot, lambda: len(rows(app)) == 3, what="the filter to clear")

        await pilot.press("slash", *"python3 analysis")  # every word must match (spec, path)
        await until(pilot, lambda: rows(app) == [f"b:{ids['b1']}"], what="server filter")
        await pilot.press("escape")
        await until(pilot, lambda: len(rows(app)) == 3, what="the filter to clear")

        screen = app.fleet_screen
        screen.sort_by("server", reverse=True)
        await pilot.pause()
        assert rows(app)[0].startswith("b:")
        await pilot.press("S")  # reverse again: A-Z
        await until(pilot, lambda: rows(app)[-1].startswith("b:"), what="reversed sort")
        assert "SERVER▲" in str(screen.table.columns["server"].label) or "SERVER▼" in str(
            screen.table.columns["server"].label)

        await pilot.press("o")  # only orphans: no session (bare), notebook missing (b1)
        await until(pilot, lambda: set(rows(app)) == {f"a:{ids['bare']}", f"b:{ids['b1']}"}, what="orphans only")
        await pilot.press("o")
        await until(pilot, lambda: len(rows(app)) == 3, what="every kernel again")


async def test_marks_details_and_console(two_servers):
    a, b, ids = two_servers
    app = make_app(("a", a), ("b", b))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: len(rows(app)) == 3, what="rows")
        screen = app.fleet_screen
        first, second = rows(app)[:2]
        # Keys go to the table once it holds the focus and its cursor (under load the first
        # rows can be drawn a moment before the empty note hands the focus over).
        await until(pilot, lambda: screen.table.has_focus and screen.table.key_at_cursor() == first,
                    what="the table's focus and cursor on the first row")
        await pilot.press("space", "space")
        await until(pilot, lambda: [k.key for k in screen.marked_kernels] == [first, second], what="two marks")
        assert [k.key for k in screen.targets()] == [first, second]
        await pilot.pause(0.8)  # marks survive refreshes
        assert screen.marked_keys == {first, second}
        screen.clear_marks()
        assert screen.targets() == [screen.selected_kernel]

        assert not screen.has_class("details")  # 80 columns: details start hidden
        await pilot.press("d")
        assert screen.has_class("details") and screen.has_class("narrow")
        text = str(screen.query_one("#detail-text").render())
        assert screen.selected_kernel.kernel_id in text

        await pilot.press("question_mark")
        await until(pilot, lambda: app.screen.__class__.__name__ == "HelpScreen", what="help")
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen, what="back from help")

        await pilot.press("enter")
        await until(pilot, lambda: app.screen is not screen, what="the console screen")


async def test_restart_asks_first_and_readonly_turns_it_off(two_servers, tmp_path):
    a, b, ids = two_servers
    app = make_app(("a", a), ("b", b))
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: len(rows(app)) == 3, what="rows")
        screen = app.fleet_screen
        assert screen.select(f"b:{ids['b1']}")
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("enter")  # the default answer is no
        await until(pilot, lambda: app.screen is screen, what="the confirmation to close")
        audit = Path(os.environ["NBTUI_STATE_DIR"]) / "audit.jsonl"
        assert not audit.exists()
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("y")
        # the intent line comes first (written before acting), then the outcome
        await until(pilot, lambda: audit.exists() and len(audit.read_text().splitlines()) >= 2,
                    what="the audit lines")
        line = json.loads(audit.read_text().splitlines()[-1])
        assert line["action"] == "restart" and line["target"]["kernel_id"] == ids["b1"]
        assert line["result"] == "ok"

    app = make_app(("a", a), ("b", b), readonly=True)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: len(rows(app)) == 3, what="rows")
        screen = app.fleet_screen
        await pilot.press("r")  # the key answers (it used to be a disabled binding that said nothing)
        await until(pilot, lambda: any(n.message == "readonly: restart is off" for n in app._notifications),
                    what="the readonly refusal")
        assert app.screen is screen
        assert "READONLY" in str(screen.query_one("#summary").render())


async def test_a_server_that_dies_and_comes_back(jupyter_factory):
    a = jupyter_factory("a")
    b = jupyter_factory("b")
    ka, kb = a.start_kernel(), b.start_kernel()
    app = make_app(("a", a), ("b", b))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: set(rows(app)) == {f"a:{ka}", f"b:{kb}"}, what="rows")
        b.stop()
        await until(pilot, lambda: app.snapshot and not app.snapshot.servers[1].ok, what="b marked down")
        assert app.snapshot.servers[1].status in ("unreachable", "timeout")
        assert rows(app) == [f"a:{ka}"]
        strip = str(app.fleet_screen.query_one("#servers").render())
        assert "✗ b" in strip and "● a" in strip
        b.start()
        kb2 = b.start_kernel()
        await until(pilot, lambda: f"b:{kb2}" in rows(app), timeout=30, what="b to come back")
        # Its rows show as soon as b answers; the whole snapshot (usage, orphan rules) follows.
        await until(pilot, lambda: app.snapshot.servers[1].ok, timeout=30, what="the whole read")


async def test_no_servers_says_what_to_do():
    app = NbtuiApp(Fleet([]), refresh=0.3)
    async with app.run_test(size=(60, 20)) as pilot:
        await until(pilot, lambda: app.snapshot is not None, what="a snapshot")
        await pilot.pause()
        text = str(app.fleet_screen.query_one("#empty").render())
        assert "nbtui servers add" in text and "nbtui demo" in text


async def test_bad_theme_file_is_reported_and_default_used(config_dir):
    themes = config_dir / "themes"
    themes.mkdir()
    (themes / "broken.toml").write_text('name = "broken"\nprimary = "not-a-colour"\n')
    (themes / "mine.toml").write_text('name = "mine"\nprimary = "#336699"\ndark = true\n')
    app = NbtuiApp(Fleet([]), theme="broken", config_folder=config_dir)
    async with app.run_test() as pilot:
        await pilot.pause()
        assert app.theme == "nbtui-dark"
        assert any("broken.toml" in e and "primary" in e for e in app.theme_errors)
        assert "mine" in app.available_themes
        assert len(app.theme_errors) == 2  # the bad file, and the unknown name asked for


async def test_keys_typed_before_the_console_appears_go_into_its_input(two_servers):
    from textual import events

    from nbtui.tui.screens.console import ConsoleScreen
    a, b, ids = two_servers
    app = make_app(("a", a), ("b", b))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: len(rows(app)) == 3, what="rows")
        assert app.fleet_screen.select(f"a:{ids['bare']}")
        await pilot.pause()
        # Typed at once, as a fast typist does: enter, then code, before any screen changed
        # (k, m and s are the fleet screen's kill, migrate and sort keys).
        for key, ch in [("enter", "\r"), ("k", "k"), ("space", " "), ("equals_sign", "="), ("space", " "),
                        ("m", "m"), ("plus", "+"), ("s", "s")]:
            app.post_message(events.Key(key, ch))
        await until(pilot, lambda: isinstance(app.screen, ConsoleScreen) and app.screen.query("CodeInput"),
                    what="the console")
        console = app.screen
        await until(pilot, lambda: console.code_input.text == "k = m+s", what="the typed-ahead code in the input")
        assert console.kernel_id == ids["bare"] and app._typeahead is None
        await pilot.press("x")  # typing goes on where it left off
        assert console.code_input.text == "k = m+sx"
