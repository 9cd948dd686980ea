"""nbtui demo: a throwaway local Jupyter server with a few telling kernels, shown in the TUI.

The server runs on a free loopback port with a random token in a temporary folder; it and
its kernels are stopped when the TUI exits, on ctrl+c, on SIGTERM/SIGHUP, or on a crash
(and, on Linux, by the kernel itself if nbtui is killed outright).
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

from nbtui.errors import EXIT_OK, NbtuiError, UsageError
from nbtui.secrets import remember

NEEDS = "nbtui demo needs Jupyter Server and ipykernel: pip install 'nbtui[server]'"
BUSY_CODE = "import time\nwhile True:\n    sum(i * i for i in range(300000))\n    time.sleep(0.2)\n"
MEMORY_CODE = "data = b'x' * (96 * 2**20)  # 96 MiB that nobody uses any more\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    # For tests of the cleanup: set everything up, print one JSON line, wait for a signal.
    p.add_argument("--no-tui", action="store_true", help=argparse.SUPPRESS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child before exec (Linux): SIGTERM when nbtui dies
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class DemoServer:
    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="nbtui-demo-"))
        self.root = self.base / "root"
        self.runtime = self.base / "runtime"
        for d in (self.root, self.runtime, self.base / "config", self.base / "data"):
            d.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.token = remember(secrets.token_hex(24))
        self.url = f"http://127.0.0.1:{self.port}/"
        self.proc: Optional[subprocess.Popen] = None
        self.kernel_pids: dict[int, float] = {}
        self._lock = threading.Lock()
        self.stopped = False

    @property
    def env(self) -> dict:
        env = dict(os.environ)
        env.update({"JUPYTER_RUNTIME_DIR": str(self.runtime), "JUPYTER_CONFIG_DIR": str(self.base / "config"),
                    "JUPYTER_DATA_DIR": str(self.base / "data"), "JUPYTER_PLATFORM_DIRS": "1",
                    # In the environment, not the command line: `ps` shows every user a command line.
                    "JUPYTER_TOKEN": self.token})
        return env

    def start(self, timeout: float = 60.0) -> None:
        import httpx

        args = [sys.executable, "-m", "jupyter_server", f"--ServerApp.port={self.port}",
                "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.root_dir={self.root}", "--ServerApp.open_browser=False"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--allow-root")
        log = open(self.base / "server.log", "ab")
        self.proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NbtuiError(f"the demo server exited with {self.proc.returncode}: {self._last_log_line()}")
            try:
                if httpx.get(self.url + "api/status", headers=self.headers, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise NbtuiError(f"the demo server did not answer within {timeout:g} s: {self._last_log_line()}")

    def _last_log_line(self) -> str:
        try:
            lines = (self.base / "server.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1][:200] if lines else "no log"

    @property
    def headers(self) -> dict:
        return {"Authorization": f"token {self.token}"}

    # -- sample kernels ------------------------------------------------------------------

    def populate(self) -> None:
        """A notebook that holds memory, one busy, one with no session, one whose file is gone."""
        import httpx

        nb = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
        for path in ("demo/train.ipynb", "demo/busy-loop.ipynb"):
            (self.root / path).parent.mkdir(parents=True, exist_ok=True)
            (self.root / path).write_text(json.dumps(nb))
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=60) as c:
            def session(path: str) -> str:
                body = {"path": path, "type": "notebook", "name": path.rsplit("/", 1)[-1],
                        "kernel": {"name": "python3"}}
                return c.post("api/sessions", json=body).raise_for_status().json()["kernel"]["id"]

            train = session("demo/train.ipynb")
            busy = session("demo/busy-loop.ipynb")
            session("demo/deleted-last-week.ipynb")
            c.post("api/kernels", json={"name": "python3"}).raise_for_status()
        self._execute(train, MEMORY_CODE, wait=True)
        self._execute(busy, BUSY_CODE, wait=False)

    def _execute(self, kernel_id: str, code: str, wait: bool) -> None:
        from jupyter_client import BlockingKernelClient

        conn = self.runtime / f"kernel-{kernel_id}.json"
        deadline = time.monotonic() + 30
        while not conn.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        kc = BlockingKernelClient(connection_file=str(conn))
        kc.load_connection_file()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=60)
            if wait:
                kc.execute_interactive(code, timeout=60, output_hook=lambda msg: None)
            else:
                kc.execute(code)
                time.sleep(0.3)  # let the request leave before the channels close
        finally:
            kc.stop_channels()

    # -- stopping ------------------------------------------------------------------------

    def _remember_kernels(self) -> None:
        import psutil

        if self.proc is None:
            return
        try:
            for p in psutil.Process(self.proc.pid).children(recursive=True):
                try:
                    self.kernel_pids[p.pid] = p.create_time()
                except psutil.Error:
                    pass
        except (psutil.Error, AttributeError):
            pass

    def stop(self) -> None:
        """Stop the server and every kernel it started; remove the folder. Idempotent."""
        import psutil

        with self._lock:
            if self.stopped:
                return
            self.stopped = True
            if self.proc is not None and self.proc.poll() is None:
                self._remember_kernels()
                self.proc.terminate()  # the server shuts its kernels down
                try:
                    self.proc.wait(8)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
            for pid, created in self.kernel_pids.items():
                try:
                    p = psutil.Process(pid)
                    if abs(p.create_time() - created) < 0.01:
                        p.kill()
                except psutil.Error:
                    pass
            shutil.rmtree(self.base, ignore_errors=True)


def _check_extra() -> None:
    for module in ("jupyter_server", "ipykernel"):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # ValueError: blocked in sys.modules
            found = False
        if not found:
            raise UsageError(NEEDS)


def run(args: argparse.Namespace) -> int:
    _check_extra()
    from nbtui.commands import tui
    from nbtui.commands.common import load_config, open_fleet
    from nbtui.config import ServerConfig
    from nbtui.fleet import Fleet

    config = load_config(args)
    demo = DemoServer()
    atexit.register(demo.stop)
    previous = {}

    def on_signal(signum, frame):
        demo.stop()
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, on_signal)
    try:
        print(f"nbtui demo: starting a throwaway Jupyter server on {demo.url} …", file=sys.stderr, flush=True)
        demo.start()
        assert demo.proc is not None
        filler = threading.Thread(target=_populate_quietly, args=(demo,), daemon=True)
        filler.start()
        others = open_fleet(args, config)
        mine = ServerConfig(name="demo", url=demo.url, token_source="discovered", token=demo.token,
                            source="config", pid=demo.proc.pid, root_dir=str(demo.root))
        fleet = Fleet([mine] + [others.config_of(n) for n in others.names], config.settings,
                      stale_files=others.stale_files, host=others.host)
        if getattr(args, "no_tui", False):
            filler.join()
            print(json.dumps({"url": demo.url, "pid": demo.proc.pid, "base": str(demo.base)}), flush=True)
            while True:
                time.sleep(1)
        return tui.run(args, fleet=fleet, config=config)
    finally:
        demo.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("nbtui demo: server and kernels stopped", file=sys.stderr)
    return EXIT_OK


def _populate_quietly(demo: DemoServer) -> None:
    try:
        demo.populate()
    except Exception:  # the TUI shows whatever did start; the server log says why
        pass
