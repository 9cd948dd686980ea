"""The real `nbtui` in a real terminal (tmux), and `nbtui demo`'s cleanup."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import ROOT
from tests.jupyter import wait_for

TMUX = shutil.which("tmux")


class Tmux:
    """One tmux server of our own (its own socket), one window of a given size."""

    def __init__(self, tmp: Path, width: int = 80, height: int = 24):
        self.socket = str(tmp / "tmux.sock")
        self.size = (width, height)

    def tmux(self, *args: str) -> str:
        return subprocess.run([TMUX, "-S", self.socket, *args], capture_output=True, text=True,
                              timeout=10).stdout

    def start(self, command: str, env: dict) -> None:
        exports = " ".join(f"{k}={_quote(v)}" for k, v in env.items())
        w, h = self.size
        self.tmux("new-session", "-d", "-x", str(w), "-y", str(h), "-s", "t",
                  f"cd {_quote(str(ROOT))} && env {exports} {command}; echo EXIT=$?; sleep 30")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "t")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "t", *keys)

    def pane_pid(self) -> int:
        return int(self.tmux("display-message", "-p", "-t", "t", "#{pane_pid}").strip())

    def kill(self) -> None:
        self.tmux("kill-server")


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (.ci/run installs it where it can)")
def test_nbtui_demo_in_a_real_terminal(tmp_path, config_dir):
    term = Tmux(tmp_path)
    env = {"NBTUI_CONFIG": str(config_dir), "NBTUI_STATE_DIR": os.environ["NBTUI_STATE_DIR"],
           "JUPYTER_RUNTIME_DIR": os.environ["JUPYTER_RUNTIME_DIR"], "TERM": "xterm-256color"}
    term.start(f"{_quote(sys.executable)} -m nbtui demo", env)
    try:
        screen = wait_for(lambda: "busy-loop.ipynb" in term.screen() and "train.ipynb" in term.screen()
                          and term.screen(), 90, 0.2, "the demo's kernels on screen")
        assert len(screen.splitlines()) == 24 and max(len(line) for line in screen.splitlines()) <= 80
        assert "● demo" in screen and "servers 1/1" in screen
        term.keys("/")
        wait_for(lambda: "filter:" in term.screen(), 20, 0.1, "the filter box")
        term.keys("-l", "busy")
        wait_for(lambda: "train.ipynb" not in term.screen() and "busy-loop" in term.screen(), 20, 0.2,
                 "the filter to hide the other rows")
        term.keys("Escape")
        wait_for(lambda: "train.ipynb" in term.screen(), 20, 0.2, "the filter to clear")
        pids = _demo_pids(term.pane_pid())
        assert pids, "no demo server process found"
        term.keys("C-c")
        final = wait_for(lambda: "EXIT=" in term.screen() and term.screen(), 30, 0.2, "nbtui to exit")
        assert "EXIT=0" in final
        assert "server and kernels stopped" in final
        wait_for(lambda: not any(psutil.pid_exists(p) for p in pids), 15, 0.2, "the demo processes to end")
    finally:
        term.kill()


def _demo_pids(root: int) -> list[int]:
    """This test's demo server and kernels: processes under its own tmux pane (never another
    demo on the machine) whose command line names a demo folder (nbtui-demo-*)."""
    out = []
    try:
        tree = psutil.Process(root).children(recursive=True)
    except psutil.Error:
        return out
    for p in tree:
        try:
            if any("nbtui-demo-" in a for a in p.cmdline()):
                out.append(p.pid)
        except psutil.Error:
            pass
    return out


def test_demo_stops_server_and_kernels_on_sigterm(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "nbtui", "demo", "--no-tui", "--no-discover"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        info = json.loads(proc.stdout.readline())
        base = Path(info["base"])
        token = json.loads(next(base.glob("runtime/jpserver-*.json")).read_text())["token"]
        kernels = httpx.get(info["url"] + "api/kernels", headers={"Authorization": f"token {token}"}).json()
        assert len(kernels) == 4
        assert any(k["execution_state"] == "busy" for k in kernels)
        assert not any(token in a for a in psutil.Process(info["pid"]).cmdline())  # `ps` shows it to all
        tree = [info["pid"]] + [c.pid for c in psutil.Process(info["pid"]).children(recursive=True)]
        assert len(tree) >= 5
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        assert "server and kernels stopped" in proc.stderr.read()
        wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                                 for p in tree), 15, 0.2, "the server and kernels to end")
        assert not base.exists()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_demo_without_the_server_extra_says_what_to_install():
    code = ("import sys; sys.modules['jupyter_server'] = None; from nbtui.cli import main; "
            "sys.exit(main(['demo']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 2
    assert r.stderr.strip() == "nbtui: nbtui demo needs Jupyter Server and ipykernel: pip install 'nbtui-fleet[server]'"
