"""Real Jupyter servers for tests: loopback, random port and token, own folders.

Every server runs in its own process group and is killed with everything it started
(kernels and their children included) at teardown.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import httpx
import psutil

from tests.server_site.lowports import below_ephemeral


def free_port() -> int:
    """A loopback port free right now, for a server a test starts: drawn at random below the
    kernel's ephemeral range (tests/server_site/lowports.py says why). A server that still loses
    the race is started again on another port (``PORT_ATTEMPTS``, ``port_taken``).
    """
    port = below_ephemeral("127.0.0.1")
    if port is not None:
        return port
    with socket.socket() as s:  # the range is crowded: let the kernel choose
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT_ATTEMPTS = 5
_PORT_TAKEN = ("already in use", "is not available", "EADDRINUSE", "address in use")


def port_taken(log_text: str) -> bool:
    """Whether a server's log says it lost its port to another process (then: a new port)."""
    return any(marker.lower() in log_text.lower() for marker in _PORT_TAKEN)


def default_sigint() -> None:
    """``preexec_fn`` for a child a test sends SIGINT: a suite started as a background job
    (``cmd &`` in a script) hands its children SIGINT ignored, and Python then installs no
    KeyboardInterrupt handler, so the child would never see the ctrl+c."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: Optional[BaseException] = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # keep polling; report the last error on timeout
            last_exc = e
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))


def ready_client(connection_file: Path, timeout: float = 60.0, what: str = "the kernel to answer"):
    """A started ``BlockingKernelClient`` (no heartbeat channel: a slow first heartbeat reads as
    'kernel died' under load) of a kernel that has answered kernel_info. A kernel whose port
    another test's process took meanwhile dies at its start and its server starts it again, on
    new ports, its connection file rewritten: each try loads the file again, so a client that
    read it in between is not left waiting on the dead ports."""
    from jupyter_client import BlockingKernelClient

    def answering():
        kc = BlockingKernelClient(connection_file=str(connection_file))
        kc.load_connection_file()
        kc.start_channels(hb=False)
        try:
            kc.wait_for_ready(timeout=10)
        except RuntimeError:
            kc.stop_channels()
            return None
        return kc

    return wait_for(answering, timeout, 0.1, what)


async def until(pilot, predicate: Callable[[], object], timeout: float = 30.0, what: str = "condition"):
    """Let a Textual app under ``run_test()`` run until ``predicate()`` is true, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await pilot.pause(0.05)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


SERVER_SITE = Path(__file__).resolve().parent / "server_site"


def server_env(env: dict) -> dict:
    """``env`` for a test's Jupyter server or hub: tests/server_site first on its PYTHONPATH
    (its start without an optional import that costs a second; see the sitecustomize there)."""
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SERVER_SITE), env.get("PYTHONPATH")) if p)
    return env


class JupyterServer:
    """One real jupyter_server process."""

    def __init__(self, base: Path, *, token: Optional[str] = None, extra_args: tuple[str, ...] = (),
                 env: Optional[dict] = None, name: str = "srv"):
        self.name = name
        self.base = base
        self.root_dir = base / "root"
        self.runtime_dir = base / "runtime"
        for d in (self.root_dir, self.runtime_dir, base / "config", base / "data"):
            d.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.token = token if token is not None else secrets.token_hex(24)
        self.url = f"http://127.0.0.1:{self.port}/"
        self.extra_args = extra_args
        self.env = dict(os.environ)
        self.env.update({
            "JUPYTER_RUNTIME_DIR": str(self.runtime_dir),
            "JUPYTER_CONFIG_DIR": str(base / "config"),
            "JUPYTER_DATA_DIR": str(base / "data"),
            "JUPYTER_PLATFORM_DIRS": "1",
            "PYTHONUNBUFFERED": "1",
        })
        self.env.update(env or {})
        server_env(self.env)
        self.proc: Optional[subprocess.Popen] = None
        self._known: dict[int, float] = {}  # pid -> create_time of everything it started
        self.log_path = base / "server.log"

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> "JupyterServer":
        """Start the server and wait until it answers; a port lost to another process between
        ``free_port()`` and the server's bind (parallel tests) means a new port, up to
        ``PORT_ATTEMPTS`` times (a server whose log does not say so fails at once)."""
        for attempt in range(PORT_ATTEMPTS):
            args = [
                sys.executable, "-m", "jupyter_server",
                f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
                "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={self.root_dir}",
                f"--IdentityProvider.token={self.token}", "--ServerApp.open_browser=False",
                "--allow-root", *self.extra_args,
            ]
            self._log = open(self.log_path, "ab")
            offset = self._log.tell()
            self.proc = subprocess.Popen(args, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                wait_for(lambda: self.proc.poll() is not None or self._ready(), timeout, 0.1,
                         f"jupyter server on port {self.port} (log: {self.log_path})")
            except TimeoutError:  # never answered: nothing of it is left behind
                self.stop()
                raise
            if self.proc.poll() is None:
                return self
            self._log.close()
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                said = f.read().decode(errors="replace")
            if attempt + 1 < PORT_ATTEMPTS and port_taken(said):
                self.port = free_port()
                self.url = f"http://127.0.0.1:{self.port}/"
                continue
            code, self.proc = self.proc.returncode, None
            raise RuntimeError(f"jupyter server exited with {code}; log: {self.log_path}")
        raise AssertionError("unreachable")

    def _ready(self) -> bool:
        r = httpx.get(self.url + "api/status", headers=self.headers, timeout=2)
        return r.status_code == 200

    @property
    def pid(self) -> int:
        assert self.proc
        return self.proc.pid

    @property
    def headers(self) -> dict:
        return {"Authorization": f"token {self.token}"}

    def remember_tree(self) -> None:
        """Note every process the server started, so teardown can reach them after a hard kill."""
        try:
            for p in psutil.Process(self.pid).children(recursive=True):
                try:
                    self._known[p.pid] = p.create_time()
                except psutil.Error:
                    pass
        except psutil.Error:
            pass

    def kill_hard(self) -> None:
        """SIGKILL the server alone (kernels and their children live on, as in a crash)."""
        self.remember_tree()
        os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(10)

    def pause(self) -> None:
        os.killpg(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.remember_tree()
        try:
            os.killpg(self.pid, signal.SIGCONT)
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid, created in self._known.items():
            try:
                p = psutil.Process(pid)
                if abs(p.create_time() - created) < 0.01:
                    p.kill()
            except psutil.Error:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()
        self.proc = None

    # -- REST helpers ------------------------------------------------------------------

    def api(self, method: str, path: str, **kw) -> httpx.Response:
        r = httpx.request(method, self.url + path.lstrip("/"), headers=self.headers, timeout=30, **kw)
        r.raise_for_status()
        return r

    def start_kernel(self, name: str = "python3") -> str:
        return self.api("POST", "api/kernels", json={"name": name}).json()["id"]

    def create_session(self, path: str, kernel_id: Optional[str] = None) -> dict:
        kernel = {"id": kernel_id} if kernel_id else {"name": "python3"}
        body = {"path": path, "type": "notebook", "name": Path(path).name, "kernel": kernel}
        return self.api("POST", "api/sessions", json=body).json()

    def kernels(self) -> list[dict]:
        return self.api("GET", "api/kernels").json()

    def shutdown_kernel(self, kernel_id: str) -> None:
        self.api("DELETE", f"api/kernels/{kernel_id}")

    def write_notebook(self, path: str) -> Path:
        p = self.root_dir / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
        return p

    def connection_file(self, kernel_id: str) -> Path:
        return wait_for(lambda: next(iter(self.runtime_dir.glob(f"kernel-{kernel_id}.json")), None),
                        30, 0.1, f"connection file of {kernel_id}")

    def kernel_pid(self, kernel_id: str) -> int:
        """The PID of a kernel's process, found from its command line."""
        needle = f"kernel-{kernel_id}.json"

        def find():
            for p in psutil.Process(self.pid).children(recursive=True):
                try:
                    if any(needle in a for a in p.cmdline()):
                        return p.pid
                except psutil.Error:
                    pass
            return None

        return wait_for(find, 30, 0.1, f"process of kernel {kernel_id}")

    def run_code(self, kernel_id: str, code: str, timeout: float = 60.0) -> dict:
        """Execute ``code`` in the kernel over ZMQ (not through the server) and wait for the reply,
        then until the server too says the kernel is idle (it learns that from the kernel's
        status message, which comes after the reply: a loaded server lags behind it)."""
        kc = ready_client(self.connection_file(kernel_id), timeout, f"kernel {kernel_id} to answer")
        try:
            reply = kc.execute_interactive(code, timeout=timeout, output_hook=lambda msg: None)
        finally:
            kc.stop_channels()
        wait_for(lambda: self._not_busy(kernel_id), timeout, 0.05, "the server to see the kernel idle after its reply")
        return reply

    def _not_busy(self, kernel_id: str) -> bool:
        r = httpx.get(self.url + f"api/kernels/{kernel_id}", headers=self.headers, timeout=30)
        return r.status_code == 404 or (r.status_code == 200 and r.json().get("execution_state") != "busy")

    def start_code(self, kernel_id: str, code: str) -> None:
        """Send ``code`` for execution over ZMQ without waiting for it to finish."""
        from jupyter_client import BlockingKernelClient

        kc = BlockingKernelClient(connection_file=str(self.connection_file(kernel_id)))
        kc.load_connection_file()
        kc.start_channels(hb=False)  # a slow first heartbeat reads as 'kernel died' under load
        try:
            kc.wait_for_ready(timeout=60)
            msg_id = kc.execute(code)

            def started():
                msg = kc.get_iopub_msg(timeout=5)
                return msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "execute_input"

            wait_for(started, 30, 0, "the kernel to start executing")
        finally:
            kc.stop_channels()
