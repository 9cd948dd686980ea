"""The TUI with hostile names (issue 10): rendered literally, never as markup or control codes.

An SVG snapshot of the fleet screen fed a recorded snapshot full of hostile strings, and the
real `nbtui` in tmux on a real server whose sessions carry them: it keeps running and the
pane title stays as it was.
"""

from __future__ import annotations

import os
import shutil
import sys

import pytest

from nbtui.core.model import ServerInfo, Snapshot
from tests.conftest import add_server
from tests.jupyter import JupyterServer, wait_for
from tests.test_tui_snapshots import T0, _k, _u, app_with, settle
from tests.test_tui_terminal import Tmux, _quote

TMUX = shutil.which("tmux")
TITLE_BOMB = "x/\x1b]0;pwned\x07\x1b[2J.ipynb"


def hostile_snapshot() -> Snapshot:
    servers = (
        ServerInfo("gpu1", "http://127.0.0.1:8888/", "config", version="2.21.1", latency_ms=3.0, local=True,
                   usage_source="local"),
        ServerInfo("liar", "http://127.0.0.1:9999/", "config", status="error", error_kind="not-jupyter",
                   error="server liar: HTTP 400 on /api/kernels: [bold red]boom[/] \x1b]0;t\x07"),
    )
    kernels = (
        _k("gpu1", "80442938-1a2b-4c3d-9e8f-000000000001", "dir[/]x.ipynb", "busy", 2, 1, _u(4531, 5.0, 2**30)),
        _k("gpu1", "1f00dd11-aaaa-4bbb-8ccc-000000000002", "report [red].ipynb", "idle", 120, 0,
           _u(4600, 0.0, 2**29)),
        _k("gpu1", "2c2c2c2c-bbbb-4ccc-8ddd-000000000003", TITLE_BOMB, "idle", 60, 0, _u(4700, 0.0, 2**28)),
        _k("gpu1", "3d3d3d3d-cccc-4ddd-8eee-000000000004", "two\nlines [link=x]y[/link].ipynb", "idle", 30, 0,
           name="py[bold]3"),
        _k("gpu1", "4e4e4e4e-dddd-4eee-8fff-000000000005", "flip\u202egnp.ipynb", "idle", 30, 0),
    )
    return Snapshot(generated_at=T0, servers=servers, kernels=kernels, idle_threshold=3600.0)


@pytest.fixture
def colour(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)


def test_fleet_with_hostile_names_renders_them_literally(snap_compare, colour, still_clock):
    still_clock(T0)  # the hand-built kernels' idle times as named
    assert snap_compare(app_with([hostile_snapshot()]), terminal_size=(140, 32), run_before=settle)


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (.ci/run installs it where it can)")
def test_real_tui_keeps_running_and_its_pane_title_is_untouched(tmp_path, tmp_path_factory, config_dir):
    server = JupyterServer(tmp_path_factory.mktemp("jupyter-bomb"), name="bomb").start()
    term = Tmux(tmp_path, 140, 30)
    try:
        for path in ("dir[/]x.ipynb", TITLE_BOMB):
            server.write_notebook(path)
            server.create_session(path)
        add_server("bomb", server)
        env = {"NBTUI_CONFIG": str(config_dir), "NBTUI_STATE_DIR": os.environ["NBTUI_STATE_DIR"],
               "JUPYTER_RUNTIME_DIR": os.environ["JUPYTER_RUNTIME_DIR"], "TERM": "xterm-256color",
               "NBTUI_TEST_TOKEN_BOMB": server.token}
        term.start(f"{_quote(sys.executable)} -m nbtui --no-discover", env)
        term.tmux("select-pane", "-t", "t", "-T", "keep-this-title")
        screen = wait_for(lambda: "dir[/]x.ipynb" in term.screen() and term.screen(), 90, 0.2,
                          "the hostile rows on screen")
        assert "\\x1b]0;pw" in screen  # shown as text (the column cuts the rest)
        wait_for(lambda: term.screen().count("bomb") >= 2 and term.screen(), 30, 0.2, "a refresh")
        assert term.tmux("display-message", "-p", "-t", "t", "#{pane_title}").strip() == "keep-this-title"
        assert "EXIT=" not in term.screen()  # still running
        term.keys("q")
        final = wait_for(lambda: "EXIT=" in term.screen() and term.screen(), 30, 0.2, "nbtui to exit")
        assert "EXIT=0" in final
    finally:
        term.kill()
        server.stop()
