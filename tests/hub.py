"""A real JupyterHub for tests and benchmarks: DummyAuthenticator, SimpleLocalProcessSpawner,
the real configurable-http-proxy from npm, loopback ports, service tokens with roles.

The proxy is installed once per machine into a folder of its own (``.cache/`` of the
project, keyed by version); ``.ci/run`` makes sure ``node`` and ``npm`` exist.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import httpx
import psutil

from tests.jupyter import PORT_ATTEMPTS, free_port, port_taken, ready_client, server_env, wait_for

CHP_VERSION = "4.6.3"
REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("NBTUI_TEST_CACHE", REPO / ".cache"))

# nbtui's service: the role README.md gives (no access:servers: each user's server is read with a
# token minted for it alone, scope tokens). The tests' own requests to users' servers use the
# harness's service (HARNESS_SCOPES), never nbtui's token.
ADMIN_SCOPES = ["list:users", "read:users", "read:servers", "admin:server_state",
                "servers", "tokens", "proxy"]
HARNESS_SCOPES = ADMIN_SCOPES + ["access:servers"]

CONFIG = '''
import os, json
c = get_config()  # noqa: F821
here = os.environ["HUB_DIR"]
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.spawner_class = "simple"
c.Authenticator.allowed_users = set(json.loads(os.environ["HUB_USERS"]))
c.JupyterHub.allow_named_servers = True
c.JupyterHub.bind_url = f"http://127.0.0.1:{os.environ['HUB_PORT']}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{os.environ['HUB_API_PORT']}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{os.environ['CHP_API_PORT']}"
c.ConfigurableHTTPProxy.command = [os.environ["CHP"]]
c.ConfigurableHTTPProxy.pid_file = os.path.join(here, "chp.pid")
c.JupyterHub.db_url = f"sqlite:///{here}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = os.path.join(here, "cookie_secret")
c.JupyterHub.last_activity_interval = int(os.environ.get("HUB_ACTIVITY_INTERVAL", "3"))
c.JupyterHub.api_page_max_limit = int(os.environ.get("HUB_PAGE_LIMIT", "200"))
c.JupyterHub.api_page_default_limit = int(os.environ.get("HUB_PAGE_LIMIT", "200"))
c.SimpleLocalProcessSpawner.home_dir_template = os.path.join(here, "home", "{username}")
c.Spawner.cmd = [os.environ["HUB_SINGLEUSER"]]
c.Spawner.http_timeout = 60
c.Spawner.start_timeout = 90
c.Spawner.env_keep = ["PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LC_ALL"]
if os.geteuid() == 0:
    c.Spawner.args = ["--allow-root"]
hostile = json.loads(os.environ.get("HUB_HOSTILE") or "{}")  # user -> the command her "server" runs
if hostile:
    def _hostile_cmd(spawner):
        if spawner.user.name in hostile:
            spawner.cmd = hostile[spawner.user.name]
    c.Spawner.pre_spawn_hook = _hostile_cmd
tokens = json.loads(os.environ["HUB_SERVICES"])
c.JupyterHub.services = [{"name": n, "api_token": t["token"]} for n, t in tokens.items()]
c.JupyterHub.load_roles = [{"name": f"{n}-role", "services": [n], "scopes": t["scopes"]}
                           for n, t in tokens.items()]
'''


def chp_path() -> str:
    """configurable-http-proxy from npm, installed once into the cache folder."""
    folder = CACHE / f"configurable-http-proxy-{CHP_VERSION}"
    binary = folder / "node_modules" / ".bin" / "configurable-http-proxy"
    if binary.exists():
        return str(binary)
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise RuntimeError("node and npm are needed for the JupyterHub tests (apt-get install nodejs npm)")
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".chp.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one install at a time across test processes
        if not binary.exists():
            tmp = Path(tempfile.mkdtemp(prefix=".chp-", dir=CACHE))
            subprocess.run([npm, "install", "--no-audit", "--no-fund", "--silent", "--prefix", str(tmp),
                            f"configurable-http-proxy@{CHP_VERSION}"], check=True, timeout=300)
            tmp.rename(folder)
    return str(binary)


class Hub:
    """One real JupyterHub (and its proxy) in its own process group."""

    def __init__(self, base: Path, users=("alice", "bob"), *, page_limit: int = 200,
                 activity_interval: int = 3, services: Optional[dict] = None,
                 hostile: Optional[dict[str, list[str]]] = None):
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.users = list(users)
        self.port, self.api_port, self.chp_api_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.token = secrets.token_hex(24)  # nbtui's
        self.harness_token = secrets.token_hex(24)  # the tests' own
        self.services = {"nbtui": {"token": self.token, "scopes": ADMIN_SCOPES},
                         "harness": {"token": self.harness_token, "scopes": HARNESS_SCOPES}}
        self.services.update(services or {})
        (base / "jupyterhub_config.py").write_text(CONFIG)
        bindir = Path(sys.executable).parent
        import json

        self.env = dict(os.environ)
        self.env.update({
            "HUB_DIR": str(base), "HUB_PORT": str(self.port), "HUB_API_PORT": str(self.api_port),
            "CHP_API_PORT": str(self.chp_api_port), "CHP": chp_path(),
            "HUB_USERS": json.dumps(self.users), "HUB_SERVICES": json.dumps(self.services),
            "HUB_PAGE_LIMIT": str(page_limit), "HUB_ACTIVITY_INTERVAL": str(activity_interval),
            "HUB_SINGLEUSER": str(bindir / "jupyterhub-singleuser"),
            "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1", "HUB_HOSTILE": json.dumps(hostile or {}),
        })
        server_env(self.env)  # the hub's and (env_keep) its users' servers'
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = base / "hub.log"
        self._known: dict[int, float] = {}

    @property
    def headers(self) -> dict:
        """The tests' own requests (the hub's API, users' servers): the harness's token."""
        return {"Authorization": f"token {self.harness_token}"}

    def _new_ports(self) -> None:
        self.port, self.api_port, self.chp_api_port = free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.env.update({"HUB_PORT": str(self.port), "HUB_API_PORT": str(self.api_port),
                         "CHP_API_PORT": str(self.chp_api_port)})

    def start(self, timeout: float = 90.0) -> "Hub":
        """Start the hub and wait until it answers; a port lost to another process (parallel
        tests) means three new ports and a fresh start, as in ``JupyterServer.start``."""
        for attempt in range(PORT_ATTEMPTS):
            self._log = open(self.log_path, "ab")
            offset = self._log.tell()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(self.base / "jupyterhub_config.py")],
                cwd=self.base, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)

            def said() -> str:
                with open(self.log_path, "rb") as f:
                    f.seek(offset)
                    return f.read().decode(errors="replace")

            # The hub lives on for its proxy's whole retry time when the proxy lost a port:
            # its log says so at once.
            try:
                wait_for(lambda: self.proc.poll() is not None or port_taken(said()) or self._ready(), timeout, 0.2,
                         f"jupyterhub on port {self.port} (log: {self.log_path})")
            except TimeoutError:  # never answered: nothing of it (its proxy included) is left behind
                self.stop()
                raise
            if self.proc.poll() is None and not port_taken(said()):
                return self
            self._kill_group()  # the hub and the proxy it started
            self.proc.wait(10)
            self._log.close()
            if attempt + 1 < PORT_ATTEMPTS and port_taken(said()):
                self._new_ports()
                continue
            code, self.proc = self.proc.returncode, None
            raise RuntimeError(f"jupyterhub exited with {code}; log: {self.log_path}")
        raise AssertionError("unreachable")

    def _kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _ready(self) -> bool:
        return httpx.get(self.url + "hub/api", timeout=2).status_code == 200

    def api(self, method: str, path: str, token: Optional[str] = None, headers: Optional[dict] = None,
            **kw) -> httpx.Response:
        headers = {"Authorization": f"token {token or self.harness_token}", **(headers or {})}
        return httpx.request(method, self.url + "hub/api/" + path.lstrip("/"), headers=headers, timeout=30, **kw)

    def user(self, name: str) -> dict:
        r = self.api("GET", f"users/{name}")
        r.raise_for_status()
        return r.json()

    def spawn(self, user: str, server: str = "") -> None:
        """Ask for a server (returns at once); ``wait_ready`` waits for it."""
        path = f"users/{user}/servers/{server}" if server else f"users/{user}/server"
        r = self.api("POST", path)
        assert r.status_code in (201, 202, 400), (r.status_code, r.text)

    def wait_ready(self, user: str, server: str = "", timeout: float = 90.0) -> dict:
        def ready():
            s = self.user(user)["servers"].get(server)
            return s if s and s["ready"] else None

        s = wait_for(ready, timeout, 0.3, f"server {user}/{server} ready (log: {self.log_path})")
        self.remember_tree()
        return s

    def server_pid(self, user: str, server: str = "") -> int:
        return self.user(user)["servers"][server]["state"]["pid"]

    def user_url(self, user: str, server: str = "") -> str:
        return self.url + f"user/{user}/" + (f"{server}/" if server else "")

    def user_api(self, method: str, user: str, path: str, server: str = "", **kw) -> httpx.Response:
        r = httpx.request(method, self.user_url(user, server) + path.lstrip("/"), headers=self.headers,
                          timeout=30, **kw)
        r.raise_for_status()
        return r

    def start_kernel(self, user: str, server: str = "") -> str:
        return self.user_api("POST", user, "api/kernels", server, json={"name": "python3"}).json()["id"]

    def wait_kernel(self, user: str, kernel_id: str, timeout: float = 60.0) -> None:
        """Until the kernel answers over ZMQ. A kernel whose port another test's process took
        meanwhile dies at its start and its server starts it again, on new ports (its
        connection file rewritten): a test must not catch it in between."""
        runtime = self.base / "home" / user / ".local" / "share" / "jupyter" / "runtime"
        path = wait_for(lambda: next(iter(runtime.glob(f"kernel-{kernel_id}.json")), None), 30, 0.1,
                        f"connection file of {user}'s kernel {kernel_id}")
        ready_client(path, timeout, f"{user}'s kernel {kernel_id} to answer").stop_channels()

    def remember_tree(self) -> None:
        try:
            for p in psutil.Process(self.proc.pid).children(recursive=True):
                try:
                    self._known[p.pid] = p.create_time()
                except psutil.Error:
                    pass
        except psutil.Error:
            pass

    def stop(self) -> None:
        if self.proc is None:
            return
        self.remember_tree()
        for pid in list(self._known):  # a paused single-user server cannot stop: wake it
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 10
        for pid, created in self._known.items():
            try:
                p = psutil.Process(pid)
                if abs(p.create_time() - created) < 0.01:
                    p.kill()
                    p.wait(max(0.1, deadline - time.monotonic()))
            except psutil.Error:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()
        self.proc = None
