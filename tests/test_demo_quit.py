"""`nbtui demo` quits cleanly whatever arrives during the quit: closing the terminal right
after `q`, SIGTERM, SIGHUP or a second ctrl+c only hurry it; nothing is left behind.

Everything is found by this test's own markers (its TMPDIR in the demo's folder and command
lines, the PIDs under its own tmux pane), never by a name another run could share.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT
from tests.jupyter import wait_for
from tests.test_tui_terminal import TMUX, Tmux, _quote


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _marked(marker: str) -> list[int]:
    """Live processes whose command line carries this test's own folder."""
    out = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and any(marker in a for a in p.info["cmdline"] or ()):
                out.append(p.info["pid"])
        except (psutil.Error, TypeError):
            pass
    return out


def _left(tree: list[int], marker: str, tmp: Path) -> list[str]:
    """What is still there: live processes of the pane's tree or carrying the marker, the folder."""
    left = []
    for pid in sorted({p for p in tree if _alive(p)} | set(_marked(marker))):
        try:
            left.append(f"{pid} {' '.join(psutil.Process(pid).cmdline())[:120]}")
        except psutil.Error:
            pass
    return left + [str(f) for f in tmp.glob("nbtui-demo-*")]


def _gone(tree: list[int], marker: str, tmp: Path) -> bool:
    return not _left(tree, marker, tmp)


def _wait_gone(tree: list[int], marker: str, tmp: Path, timeout: float, what: str) -> None:
    try:
        wait_for(lambda: _gone(tree, marker, tmp), timeout, 0.2, what)
    except TimeoutError as e:
        raise AssertionError(f"{e}; still there: {_left(tree, marker, tmp)}") from None


def _kill_own(mine: Path, tree=()) -> None:
    """SIGKILL what is left of this test's own: its folder's processes, its pane's tree."""
    for pid in _marked(str(mine)) + [p for p in tree if _alive(p)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _env(tmp: Path) -> dict:
    return {"TMPDIR": str(tmp), "NBTUI_CONFIG": os.environ["NBTUI_CONFIG"],
            "NBTUI_STATE_DIR": os.environ["NBTUI_STATE_DIR"],
            "JUPYTER_RUNTIME_DIR": os.environ["JUPYTER_RUNTIME_DIR"], "TERM": "xterm-256color"}


def _demo_in_tmux(tmp_path: Path) -> tuple[Path, Tmux]:
    """`nbtui demo` started in a tmux of this test's own; its TMPDIR is the marker folder."""
    mine = tmp_path / "t"
    mine.mkdir()
    term = Tmux(tmp_path)
    term.start(f"{_quote(sys.executable)} -m nbtui demo --no-discover", _env(mine))
    return mine, term


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (.ci/run installs it where it can)")
def test_closing_the_terminal_right_after_q_leaves_nothing(tmp_path):
    mine, term = _demo_in_tmux(tmp_path)
    try:
        wait_for(lambda: "train.ipynb" in term.screen(), 90, 0.2, "the demo's first notebook on screen")
        pane = term.pane_pid()
        tree = [pane] + [c.pid for c in psutil.Process(pane).children(recursive=True)]
        assert len(_marked(str(mine))) >= 2, "the demo's server and kernels carry the test's folder"
        assert list(mine.glob("nbtui-demo-*"))
        term.keys("q")
        # The screen is left (the TUI is gone) while the server and kernels are being stopped:
        # then the terminal closes (SIGHUP), as when an SSH window is closed during the quit.
        wait_for(lambda: "train.ipynb" not in term.screen(), 20, 0.05, "the TUI to leave the screen")
        term.kill()
        # A hurried stop takes a second or two; the deadline is for a loaded CI machine.
        _wait_gone(tree, str(mine), mine, 30, "no nbtui, server, kernel or folder left after the terminal closed")
    finally:
        term.kill()
        _kill_own(mine, locals().get("tree", []))


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (.ci/run installs it where it can)")
def test_sigterm_while_the_tui_runs_leaves_it_as_q_does(tmp_path):
    """A SIGTERM is never raised into Textual (raised into its writer or its shutdown, such an
    exception once wedged the demo for good): the TUI leaves as after q, the terminal is given
    back, the server and kernels stop."""
    mine, term = _demo_in_tmux(tmp_path)
    try:
        wait_for(lambda: "train.ipynb" in term.screen(), 90, 0.2, "the demo's first notebook on screen")
        pane = term.pane_pid()
        nbtui = next(c for c in psutil.Process(pane).children(recursive=True)
                     if "nbtui" in c.cmdline() and "demo" in c.cmdline())
        tree = [nbtui.pid] + [c.pid for c in nbtui.children(recursive=True)]
        nbtui.send_signal(signal.SIGTERM)
        final = wait_for(lambda: "EXIT=" in term.screen() and term.screen(), 60, 0.2, "nbtui to exit")
        assert "EXIT=0" in final and "server and kernels stopped" in final, final
        assert "train.ipynb" not in final  # the TUI's screen is gone: the terminal is the shell's again
        term.kill()  # its shell's command line carries the marker too
        _wait_gone(tree, str(mine), mine, 30, "the server, kernels and folder gone")
    finally:
        term.kill()
        _kill_own(mine)


def test_signals_during_the_quit_only_hurry_it(tmp_path):
    mine = tmp_path / "t"
    mine.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "nbtui", "demo", "--no-tui", "--no-discover"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=dict(os.environ, **_env(mine)))
    try:
        info = json.loads(proc.stdout.readline())
        assert Path(info["base"]).parent == mine
        tree = [proc.pid, info["pid"]] + [c.pid for c in psutil.Process(info["pid"]).children(recursive=True)]
        proc.send_signal(signal.SIGTERM)  # the quit starts ...
        for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):  # ... and everything else arrives
            time.sleep(0.1)  # spaced out on purpose, not waiting for anything
            if proc.poll() is None:
                proc.send_signal(sig)
        proc.wait(15)
        err = proc.stderr.read()
        assert "server and kernels stopped" in err and "Traceback" not in err, err
        _wait_gone(tree, str(mine), mine, 30, "the server, kernels and folder gone")
    finally:
        if proc.poll() is None:
            proc.kill()
        _kill_own(mine)


def test_demo_server_shows_as_coming_up_not_as_an_error(tmp_path):
    """Before the demo's server answers, the fleet shows a spawn in progress."""
    import asyncio

    from nbtui.service.demo import DEMO, DemoServer, demo_fleet as _demo_fleet
    from nbtui.files.config import ServerConfig, Settings
    demo = DemoServer.__new__(DemoServer)  # only what the fleet wrapper reads
    demo.up, demo.failure = False, None
    port = __import__("tests.jupyter", fromlist=["free_port"]).free_port()
    cfg = ServerConfig(name=DEMO, url=f"http://127.0.0.1:{port}/", token_source="discovered", token="x")

    async def read():
        fleet = _demo_fleet(demo, [cfg], Settings())
        async with fleet:
            return (await fleet.snapshot()).servers[0]

    s = asyncio.run(read())
    assert s.ok and s.pending == "spawn" and s.error is None
    demo.failure = "the demo server exited with 1: address in use"
    s = asyncio.run(read())
    assert not s.ok and "exited with 1" in s.error
