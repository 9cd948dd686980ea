"""The demo's world: a throwaway local Jupyter server with a few telling kernels, and a
simulated GPU where none is real (`nbtui demo`, nbtui.cli.commands.demo, shows it).

The server runs on a free loopback port with a random token in a temporary folder; it and
its kernels are stopped when the demo ends, on a signal, or on a crash (and, on Linux, by
the kernel itself if nbtui is killed outright).
"""

from __future__ import annotations

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
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional

from nbtui.core.errors import NbtuiError, UsageError
from nbtui.host.lifetime import die_with_parent
from nbtui.files.secrets import remember

NEEDS = "nbtui demo needs Jupyter Server and ipykernel: pip install 'nbtui-fleet[server]'"
BUSY_CODE = "import time\nwhile True:\n    sum(i * i for i in range(300000))\n    time.sleep(0.2)\n"
MEMORY_CODE = "data = b'x' * (96 * 2**20)  # 96 MiB that nobody uses any more\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DemoServer:
    """The throwaway server. Its port and token are chosen before it starts, so the TUI can
    open on it at once; ``launch`` only forks it, ``bring_up`` (on a thread) waits for it and
    makes the sample kernels.

    Quitting is safe against whatever arrives meanwhile: ``stop`` takes no lock, and a
    signal that comes during it calls only ``hurry`` (kill the tree, no locks, no waits).
    """

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
        self.up = False  # answered /api/status
        self.populated = False
        self.failure: Optional[str] = None  # why it did not come up
        self.stopping = False  # set first thing in stop(); signal handlers read it
        self.hurried = False
        self.done = False
        self.on_progress: Callable[[], None] = lambda: None  # the server or a kernel came up
        self.gpu_env: dict = {}  # the simulated GPU's (nvml_standin.demo): its kernels hold memory on it

    @property
    def env(self) -> dict:
        env = dict(os.environ)
        env.update({"JUPYTER_RUNTIME_DIR": str(self.runtime), "JUPYTER_CONFIG_DIR": str(self.base / "config"),
                    "JUPYTER_DATA_DIR": str(self.base / "data"), "JUPYTER_PLATFORM_DIRS": "1",
                    # In the environment, not the command line: `ps` shows every user a command line.
                    "JUPYTER_TOKEN": self.token})
        env.update(self.gpu_env)
        return env

    def launch(self) -> None:
        """Fork the server (milliseconds); it answers a second or two later."""
        args = [sys.executable, "-m", "jupyter_server", f"--ServerApp.port={self.port}",
                "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.root_dir={self.root}", "--ServerApp.open_browser=False"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--allow-root")
        log = open(self.base / "server.log", "ab")
        self.proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=die_with_parent if sys.platform == "linux" else None)
        log.close()

    def wait_up(self, timeout: float = 60.0) -> None:
        import httpx

        if self.proc is None:
            self.launch()
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=1) as c:
            while time.monotonic() < deadline and not self.stopping:
                assert self.proc is not None  # launched
                if self.proc.poll() is not None:
                    raise NbtuiError(f"the demo server exited with {self.proc.returncode}: {self._last_log_line()}")
                try:
                    if c.get("api/status").status_code == 200:
                        self.up = True
                        self.on_progress()
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        if self.stopping:
            raise NbtuiError("the demo is stopping")
        raise NbtuiError(f"the demo server did not answer within {timeout:g} s: {self._last_log_line()}")

    def start(self, timeout: float = 60.0) -> None:
        self.launch()
        self.wait_up(timeout)

    def bring_up(self) -> None:
        """On a thread: wait for the server, then make the sample kernels; never raises."""
        try:
            self.wait_up()
            self.populate()
        except Exception as e:  # the TUI shows whatever did start; the server log says why
            if not self.stopping:
                self.failure = str(e) if isinstance(e, NbtuiError) else f"{type(e).__name__}: {e}"
                self.on_progress()
        finally:
            _close_thread_loop()

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
        """A notebook that holds memory, one busy, one with no session, one whose file is gone.
        The first notebook's session comes first, alone (its row shows as soon as the server
        has it, not after four kernels' starts fought for the CPU), then the other three
        together; each is shown as it comes."""
        import httpx

        nb = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
        for path in ("demo/train.ipynb", "demo/busy-loop.ipynb"):
            (self.root / path).parent.mkdir(parents=True, exist_ok=True)
            (self.root / path).write_text(json.dumps(nb))
        ids: dict[str, str] = {}
        errors: list[BaseException] = []

        def make(path: Optional[str]) -> None:
            try:
                with httpx.Client(base_url=self.url, headers=self.headers, timeout=60) as c:
                    if path is None:
                        c.post("api/kernels", json={"name": "python3"}).raise_for_status()
                    else:
                        body = {"path": path, "type": "notebook", "name": path.rsplit("/", 1)[-1],
                                "kernel": {"name": "python3"}}
                        ids[path] = c.post("api/sessions", json=body).raise_for_status().json()["kernel"]["id"]
                self.on_progress()
            except BaseException as e:  # noqa: BLE001 - re-raised below on the calling thread
                errors.append(e)

        make("demo/train.ipynb")
        others = ["demo/busy-loop.ipynb", "demo/deleted-last-week.ipynb", None]
        if self.gpu_env:
            others.append(ORPHAN_NOTEBOOK)
        makers = [threading.Thread(target=make, args=(p,), daemon=True) for p in others] if not errors else []
        for t in makers:
            t.start()
        for t in makers:
            t.join(90)
        if errors:
            raise errors[0]
        # One after the other: jupyter_client's blocking clients do not share well across threads.
        runs = [("demo/train.ipynb", MEMORY_CODE, True), ("demo/busy-loop.ipynb", BUSY_CODE, False)]
        if self.gpu_env:  # the GPU story: train.ipynb holds 12 GiB idle, busy-loop 6 GiB in use, a worker 3 GiB
            from nbtui.host.nvml_standin import demo as sim
            runs = [("demo/train.ipynb", MEMORY_CODE + sim.hold_code(12 << 30, 0), True),
                    ("demo/busy-loop.ipynb", sim.hold_code(6 << 30, 65) + BUSY_CODE, False),
                    (ORPHAN_NOTEBOOK, sim.orphan_code(3 << 30, os.getpid()), True)]
        for path, code, wait in runs:
            try:
                self._execute(ids[path], code, wait)
            except Exception:  # that kernel shows as it is; a traceback would tear the screen
                pass
            self.on_progress()
        if self.gpu_env and ORPHAN_NOTEBOOK in ids:
            self._orphan_worker(ids[ORPHAN_NOTEBOOK])
        self.populated = True
        self.on_progress()

    def _orphan_worker(self, kernel_id: str) -> None:
        """Shut down the kernel whose worker holds GPU memory: the worker lives on, a leftover
        of demo/prep.ipynb (remembered here, so the demo's stop ends it too)."""
        import httpx
        import psutil

        kpid = next((p for p, _t in self._tree().items() if _cmdline_has(p, f"kernel-{kernel_id}.json")), None)
        workers: dict[int, float] = {}
        deadline = time.monotonic() + 20
        while kpid is not None and not workers and time.monotonic() < deadline and not self.stopping:
            try:
                workers = {c.pid: c.create_time() for c in psutil.Process(kpid).children()}
            except psutil.Error:
                break
            time.sleep(0.05)
        self.kernel_pids.update(workers)
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=60) as c:
            c.delete(f"api/kernels/{kernel_id}")

    def _execute(self, kernel_id: str, code: str, wait: bool) -> None:
        from jupyter_client import BlockingKernelClient

        conn = self.runtime / f"kernel-{kernel_id}.json"
        deadline = time.monotonic() + 30
        while not conn.exists() and time.monotonic() < deadline and not self.stopping:
            time.sleep(0.05)
        if self.stopping:
            return
        kc = BlockingKernelClient(connection_file=str(conn))
        kc.load_connection_file()
        kc.start_channels(hb=False)  # a heartbeat missed while the kernel starts would read "died"
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

    def _tree(self) -> dict[int, float]:
        """The server's descendants now (fresh psutil objects: no state shared with anyone)."""
        import psutil

        out: dict[int, float] = {}
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return out
        try:
            for p in psutil.Process(proc.pid).children(recursive=True):
                try:
                    out[p.pid] = p.create_time()
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        return out

    def hurry(self) -> None:
        """Kill the server's whole tree now. Safe in a signal handler: no lock, no wait,
        nothing the interrupted code may hold (only syscalls and fresh psutil objects)."""
        self.hurried = True
        proc = self.proc
        if proc is None or proc.returncode is not None:  # not started, or already reaped
            return
        tree = self._tree()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the group is the server's
        except OSError:
            pass
        _kill_verified(tree)

    def stop(self) -> None:
        """Stop the server and every kernel it started; remove the folder. Idempotent; a
        signal during it (see ``hurry``) only makes it quicker."""
        if self.done:
            return
        self.stopping = True
        proc = self.proc
        if proc is not None and proc.poll() is None:
            self.kernel_pids.update(self._tree())
            try:
                proc.terminate()  # the server shuts its kernels down
            except OSError:
                pass
            deadline = time.monotonic() + 8
            while proc.poll() is None and time.monotonic() < deadline and not self.hurried:
                time.sleep(0.05)
            if proc.poll() is None:
                try:
                    proc.kill()
                except OSError:
                    pass
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        _kill_verified(self.kernel_pids)
        shutil.rmtree(self.base, ignore_errors=True)
        self.done = True


ORPHAN_NOTEBOOK = "demo/prep.ipynb"


def _cmdline_has(pid: int, needle: str) -> bool:
    import psutil

    try:
        return any(needle in a for a in psutil.Process(pid).cmdline())
    except psutil.Error:
        return False


def _close_thread_loop() -> None:
    """Close the event loop jupyter_client's blocking client left on this thread: one left
    open is collected at exit after its sockets, and prints a traceback ("Exception ignored in
    BaseEventLoop.__del__") as the demo quits."""
    import asyncio

    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:  # none on this thread
        return
    if not loop.is_running() and not loop.is_closed():
        loop.close()
    asyncio.set_event_loop(None)


def _kill_verified(pids: dict[int, float]) -> None:
    """SIGKILL each PID that is still the process seen (same create time)."""
    import psutil

    for pid, created in tuple(pids.items()):
        try:
            p = psutil.Process(pid)
            if abs(p.create_time() - created) < 0.01:
                p.kill()
        except (psutil.Error, OSError):
            pass


def check_extra() -> None:
    for module in ("jupyter_server", "ipykernel"):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # ValueError: blocked in sys.modules
            found = False
        if not found:
            raise UsageError(NEEDS)


DEMO = "demo"


def demo_fleet(demo: DemoServer, servers: list[Any], settings: Any, **kw: Any) -> Any:
    """The fleet, with the demo server shown as coming up (a spawn in progress, not an
    error) until it answers, and the reason in one line if it never does (a public hook)."""
    from nbtui.core import model
    from nbtui.service.fleet import Fleet, FleetHooks

    class DemoHooks(FleetHooks):
        def failed(self, info: model.ServerInfo) -> model.ServerInfo:
            if info.name != DEMO or demo.up:
                return info
            if demo.failure:
                return replace(info, error=f"server {DEMO}: {demo.failure}")
            return replace(info, status=model.OK, error=None, error_kind=None, pending="spawn")

    return Fleet(servers, settings, hooks=DemoHooks(), **kw)




def simulated_gpu(base: Path) -> Any:
    """The GPU the demo shows: the stand-in NVML where no GPU is real (nbtui.host.nvml_standin)."""
    from nbtui.host.nvml_standin import demo as sim
    return sim.choose(base)
