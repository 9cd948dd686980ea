"""The screen an admin lives in, in a real terminal (tmux, 80x24, real servers and kernels):
the cursor stays on its kernel through a refresh that reorders the rows and through a resize;
the migrate dialog is planned and moved with the keyboard alone; the details show an
orphan's reasons; a sort by a column the width hides is named on screen."""

from __future__ import annotations

import sys

import pytest

from tests.jupyter import wait_for
from tests.test_tui_fleet_terminal import _env
from tests.test_tui_terminal import TMUX, Tmux, _quote

pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed")


def _start(tmp_path, config_dir, runtime_dir, **extra: str) -> Tmux:
    term = Tmux(tmp_path)
    # Without COLUMNS and LINES (the test run may export them): they would fix the size the
    # app reads (shutil.get_terminal_size), whatever the window's.
    term.start(f"env -u COLUMNS -u LINES {_quote(sys.executable)} -m nbtui", {**_env(config_dir, runtime_dir), **extra})
    return term


def _resize(term: Tmux, width: int, height: int) -> None:
    term.tmux("set-option", "-t", "t", "window-size", "manual")  # a detached session's size is ours to set
    term.tmux("resize-window", "-t", "t", "-x", str(width), "-y", str(height))


def _see(term: Tmux, predicate, what: str, timeout: float = 60):
    """Poll the screen until ``predicate(screen)``; fail with the screen as it was."""
    try:
        return wait_for(lambda: predicate(term.screen()) and term.screen(), timeout, 0.1, what)
    except TimeoutError:
        raise AssertionError(f"{what}:\n{term.screen()}") from None


def _row_index(screen: str, kid: str) -> int:
    return next(i for i, line in enumerate(screen.splitlines()) if f" {kid[:8]} " in line)


def _detail_kernel(screen: str, kid: str) -> bool:
    return any(line.split()[:2] == ["kernel", kid] for line in screen.splitlines() if line.strip())


def test_the_cursor_stays_on_its_kernel_through_a_reordering_refresh_and_a_resize(tmp_path, config_dir, jupyter):
    first, second = [jupyter.create_session(f"nb{i}.ipynb")["kernel"]["id"] for i in range(2)]
    # A new kernel's start-up messages move its last activity a moment after it was made: the
    # order of two fresh kernels is settled only once both have started. Code run in each, the
    # first one first, settles it: the first is the longest idle, the top row.
    for kid in (first, second):
        jupyter.run_code(kid, "pass")
    term = _start(tmp_path, config_dir, jupyter.runtime_dir)
    try:
        _see(term, lambda s: all(k[:8] in s for k in (first, second))
             and _row_index(s, first) < _row_index(s, second), "both kernel rows, the longest idle on top")
        term.keys("d")  # the details (below the table at 80x24) name the kernel under the cursor
        _see(term, lambda s: _detail_kernel(s, first), "the details of the first row")
        term.keys("Down", "Up")  # chosen by the user
        # Work in the first row's kernel: it is no longer the longest idle, so a refresh moves it down.
        jupyter.run_code(first, "x = 1")
        screen = _see(term, lambda s: _row_index(s, first) > _row_index(s, second), "the refresh to reorder the rows")
        assert _detail_kernel(screen, first), screen
        # Each resize crosses a column breakpoint (the table is rebuilt): the details still
        # name the chosen kernel once the new layout is drawn (a screen caught mid-draw waits).
        _resize(term, 120, 35)
        screen = _see(term, lambda s: " PID " in s and _detail_kernel(s, first), "the chosen kernel at 120x35")
        assert not _detail_kernel(screen, second)
        _resize(term, 80, 24)
        screen = _see(term, lambda s: " PID " not in s and " SERVER " in s and _detail_kernel(s, first),
                      "the chosen kernel at 80x24 again")
        assert len(screen.splitlines()) <= 24
        term.keys("q")
    finally:
        term.kill()


def test_an_orphans_reasons_in_the_details_and_a_hidden_sort_named(tmp_path, config_dir, jupyter):
    kid = jupyter.start_kernel()  # no session: an orphan ("no-session") at once
    term = _start(tmp_path, config_dir, jupyter.runtime_dir)
    try:
        _see(term, lambda s: kid[:8] in s, "the kernel row")
        term.keys("d")
        screen = _see(term, lambda s: _detail_kernel(s, kid) and any(
            line.split()[:2] == ["orphan", "no-session"] for line in s.splitlines()), "the orphan's reasons")
        lines = screen.splitlines()
        assert any(line.split()[:1] == ["why"] for line in lines), screen
        assert len(lines) <= 24 and max(len(line) for line in lines) <= 80
        term.keys("s", "s", "s", "s")  # idle, gpu, mem, cpu: no CPU column at 80 columns
        screen = _see(term, lambda s: "sorted by CPU▼" in s.splitlines()[0], "the sort named in the summary")
        header = next(line for line in screen.splitlines() if " SERVER " in line)
        assert "CPU" not in header, header
        term.keys("q")
    finally:
        term.kill()


def test_migrate_by_keyboard_80x24(tmp_path, config_dir, jupyter_factory):  # short: tmux's socket path is bounded
    a, b = jupyter_factory("a"), jupyter_factory("b")
    a.write_notebook("m.ipynb")
    kid = a.create_session("m.ipynb")["kernel"]["id"]
    a.run_code(kid, "answer = 41 + 1")
    (config_dir / "servers.toml").write_text(
        "".join(f'[servers.{s.name}]\nurl = "{s.url}"\ntoken = "env"\ntoken_env = "MIG_{s.name.upper()}"\n'
                for s in (a, b)))
    runtime = tmp_path / "no-runtime"
    runtime.mkdir()
    term = _start(tmp_path, config_dir, runtime, MIG_A=a.token, MIG_B=b.token)
    try:
        _see(term, lambda s: kid[:8] in s and "● b" in s, "the kernel row and both servers")
        term.keys("m")
        screen = _see(term, lambda s: "Migrate a:" in s and "Move" in s, "the migrate dialog")
        assert "To server" in screen and "Notebook" in screen
        term.keys("Tab", "Enter")  # the first field (To server: b) has the focus; tab, enter plans
        screen = _see(term, lambda s: "1 name to move" in s, "the plan", timeout=90)
        lines = screen.splitlines()
        assert len(lines) <= 24 and "answer" in screen, screen
        assert any("Close" in line and "Plan" in line and "Move" in line for line in lines), screen
        term.keys("Enter")  # Move has the focus after Plan
        _see(term, lambda s: "Move to b?" in s, "the confirmation")
        term.keys("y")
        _see(term, lambda s: "moved and verified 1 name" in s, "the move", timeout=120)
        term.keys("Escape")
        new = wait_for(lambda: [k["id"] for k in b.kernels()], 30, 0.2, "the new kernel on b")
        assert b.run_code(new[0], "assert answer == 42")["content"]["status"] == "ok"
        term.keys("q")
    finally:
        term.kill()
