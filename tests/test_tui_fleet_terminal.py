"""The fleet screen in a real terminal (tmux, 80x24): the acting keys are on the first
screen, and a leftover process of a SIGKILLed server is a row that `o` keeps and `k`
frees after the confirmation."""

from __future__ import annotations

import os
import sys

import pytest

from tests.jupyter import wait_for
from tests.test_kill import gone, spawn_child
from tests.test_tui_terminal import TMUX, Tmux, _quote

pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed")


def _env(config_dir, runtime_dir) -> dict:
    return {"NBTUI_CONFIG": str(config_dir), "NBTUI_STATE_DIR": os.environ["NBTUI_STATE_DIR"],
            "JUPYTER_RUNTIME_DIR": str(runtime_dir), "TERM": "xterm-256color"}


def test_the_acting_keys_are_on_the_first_screen_at_80x24(tmp_path, config_dir, jupyter):
    jupyter.write_notebook("work/vision/resnet-finetune.ipynb")
    kid = jupyter.create_session("work/vision/resnet-finetune.ipynb")["kernel"]["id"]
    term = Tmux(tmp_path)
    term.start(f"{_quote(sys.executable)} -m nbtui", _env(config_dir, jupyter.runtime_dir))
    try:
        wait_for(lambda: kid[:8] in term.screen(), 60, 0.1, "the kernel row")
        try:
            screen = wait_for(lambda: "k Kill" in term.screen() and term.screen(), 10, 0.1, "the keys")
        except Exception:
            raise AssertionError(term.screen()) from None
        lines = screen.splitlines()
        assert len(lines) <= 24 and max(len(line) for line in lines) <= 80
        footer = "\n".join(lines[-3:])
        for key in ("k Kill", "m Migrate", "Console", "? Help"):
            assert key in footer, footer
        row = next(line for line in lines if kid[:8] in line)
        assert "resnet-finetune.ipynb" in row and "idle" in row or "starting" in row, row
        term.keys("q")
        wait_for(lambda: "EXIT=0" in term.screen(), 30, 0.2, "nbtui to quit")
    finally:
        term.kill()


def test_a_leftover_of_a_killed_server_is_a_row_kept_by_o_and_freed_by_k(tmp_path, config_dir, jupyter_factory):
    crashed = jupyter_factory("crashed")
    kid = crashed.create_session("gpu.ipynb")["kernel"]["id"]
    child = spawn_child(crashed, kid)
    kernel_pid = crashed.kernel_pid(kid)
    crashed.kill_hard()
    wait_for(lambda: gone(kernel_pid), 30, what="the kernel to follow its server")
    term = Tmux(tmp_path)
    term.start(f"{_quote(sys.executable)} -m nbtui", _env(config_dir, crashed.runtime_dir))
    try:
        mine = lambda line: f" {child} " in line and "leftover" in line  # noqa: E731
        wait_for(lambda: any(mine(line) for line in term.screen().splitlines()), 60, 0.1, "the leftover's row")
        # Other leftovers of this shared machine may be rows too: filter to ours (its PID).
        term.keys("/")
        wait_for(lambda: "filter:" in term.screen(), 20, 0.1, "the filter box")
        term.keys("-l", str(child))
        try:
            wait_for(lambda: all(mine(x) for x in term.screen().splitlines() if " leftover " in x)
                     and any(x.strip() == str(child) for x in term.screen().splitlines()[:4]), 20, 0.1,
                     "the filter applied")
        except TimeoutError:
            raise AssertionError(term.screen()) from None
        term.keys("Enter")
        row = wait_for(lambda: next((line for line in term.screen().splitlines() if mine(line)), None),
                       20, 0.1, "the filtered row")
        # The table has the focus again (its footer names k): a key sent before that lands in
        # the filter box on a loaded machine (the row shows as soon as the filter is typed).
        wait_for(lambda: "Kill" in term.screen().rstrip().splitlines()[-1], 20, 0.1, "the table's keys")
        assert "leftover" in row and "gpu.ipynb" in row and row.lstrip().startswith("!"), row
        term.keys("o")
        wait_for(lambda: "(orphans)" in term.screen() and any(mine(x) for x in term.screen().splitlines()),
                 20, 0.1, "o to keep the leftover")
        term.keys("k")
        modal = wait_for(lambda: "Kill 1 leftover process?" in term.screen() and term.screen(), 30, 0.1,
                         "the confirmation")
        assert f"pid {child}" in modal
        assert not gone(child)
        term.keys("y")
        wait_for(lambda: gone(child), 30, 0.1, "the leftover to be freed")
        wait_for(lambda: not any(mine(x) for x in term.screen().splitlines()), 30, 0.2, "its row to go")
        term.keys("q")
    finally:
        term.kill()


def test_the_first_read_s_child_is_ended_once_the_read_is_whole(tmp_path, jupyter):
    # A server that drips its answer (a byte a second, under a 120 s timeout) keeps the
    # child that reads the first rows busy for minutes: nbtui ends it (and reaps it) once
    # its own read is whole, which a hung server never holds back.
    from tests.fakehttp import FakeHTTP

    kid = jupyter.start_kernel()
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    with FakeHTTP("drip") as drip:
        (cfg / "servers.toml").write_text(f'[servers.drip]\nurl = "{drip.url}"\ntoken = "none"\ntimeout = 120\n')
        term = Tmux(tmp_path, 120, 30)
        term.start(f"{_quote(sys.executable)} -m nbtui", _env(cfg, jupyter.runtime_dir))
        try:
            import psutil

            shell = psutil.Process(term.pane_pid())
            seen: set[int] = set()

            def nbtui_children() -> list:
                procs = [p for p in shell.children() if "nbtui" in " ".join(p.cmdline())]
                kids = [c for p in procs for c in p.children()]
                seen.update(c.pid for c in kids)
                return kids

            wait_for(lambda: nbtui_children() is not None and kid[:8] in term.screen(), 60, 0.05, "the kernel row")
            assert seen, "no child read the first rows"
            try:
                wait_for(lambda: not nbtui_children(), 60, 0.1, "the child to be ended and reaped")
            except TimeoutError:
                raise AssertionError(term.screen()) from None
            assert "drip" in term.screen()  # still read (at its own pace) by nbtui itself
            term.keys("q")
            wait_for(lambda: "EXIT=0" in term.screen(), 30, 0.2, "nbtui to quit")
        finally:
            term.kill()
