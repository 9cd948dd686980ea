"""A real second local user for tests that need one (as root): ``useradd`` a uniquely named
user, give it a Python it can run, run its own jupyter_server, and remove it all after.

root's home is private (0700) here and the project's venv Python lives under it, so the
user runs Debian's own ``/usr/bin/python3`` with the project venv's site-packages added
through a ``sitecustomize.py`` in a folder it can read (same Python minor version, so the
compiled modules load). Everything the user starts is ended at teardown by that user's uid
(the user is this fixture's own, so those are only processes it started), then the user
and its files are removed. Skips, with the reason, when not root or a tool is missing.
"""

from __future__ import annotations

import os
import pwd
import random
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Optional

import httpx
import psutil
import pytest

from tests.jupyter import free_port, wait_for

SYSTEM_PYTHON = "/usr/bin/python3"


def why_not() -> Optional[str]:
    """Why a second local user cannot be had here (None: it can)."""
    if os.geteuid() != 0:
        return "needs root (useradd, runuser)"
    for tool in ("useradd", "userdel", "runuser"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"no {SYSTEM_PYTHON} for the second user to run"
    try:
        minor = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
                               capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"{SYSTEM_PYTHON} does not run"
    if minor != str(sys.version_info[:2]):
        return f"{SYSTEM_PYTHON} is Python {minor}, the project's venv {tuple(sys.version_info[:2])}"
    return None


def account_tool(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run ``useradd``/``userdel``, again while another process holds the lock on the account
    files (parallel workers, or a second suite, adding or removing their own users at once:
    "cannot lock /etc/passwd; try again later"). Returns the last run; text output."""
    deadline = time.monotonic() + timeout
    while True:
        r = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
        if r.returncode == 0 or "lock" not in r.stderr.lower() or time.monotonic() > deadline:
            return r
        time.sleep(0.1 + random.random() * 0.4)


class LocalUser:
    def __init__(self):
        self.name = "nbt" + secrets.token_hex(4)
        self.base = Path(tempfile.mkdtemp(prefix=f"nbtui-{self.name}-"))
        os.chmod(self.base, 0o755)
        self.home = self.base / "home"
        self.pydir = self.base / "py"
        self.servers: list[subprocess.Popen] = []
        self.uid: Optional[int] = None

    # -- lifecycle -----------------------------------------------------------------------

    def create(self) -> "LocalUser":
        r = account_tool("useradd", "-m", "-d", str(self.home), "-s", "/bin/sh", self.name)
        if r.returncode != 0:
            raise subprocess.CalledProcessError(r.returncode, r.args, r.stdout, r.stderr)
        self.uid = pwd.getpwnam(self.name).pw_uid
        self.pydir.mkdir()
        site = sysconfig.get_paths()["purelib"]  # the project's venv (editable nbtui in it)
        (self.pydir / "sitecustomize.py").write_text(f"import site\nsite.addsitedir({site!r})\n")
        os.chmod(self.pydir, 0o755)
        os.chmod(self.pydir / "sitecustomize.py", 0o644)
        return self

    def remove(self) -> None:
        for p in self.servers:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.uid is not None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                mine = [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == self.uid]
                if not mine:
                    break
                for p in mine:
                    try:
                        p.kill()
                    except psutil.Error:
                        pass
                time.sleep(0.1)
            for p in self.servers:
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            account_tool("userdel", "-r", "-f", self.name)
        shutil.rmtree(self.base, ignore_errors=True)

    # -- running things as the user ---------------------------------------------------------

    def env(self) -> list[str]:
        return ["env", "-i", f"HOME={self.home}", f"USER={self.name}", "PATH=/usr/bin:/bin", "LANG=C.UTF-8",
                f"PYTHONPATH={self.pydir}", "PYTHONUNBUFFERED=1"]

    def popen(self, *args: str, log: Optional[Path] = None) -> subprocess.Popen:
        out = open(log, "ab") if log else subprocess.DEVNULL
        return subprocess.Popen(["runuser", "-u", self.name, "--", *self.env(), *args],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)

    def start_server(self, *extra_args: str, timeout: float = 90.0) -> "UserServer":
        port, token = free_port(), secrets.token_hex(24)
        log = self.base / f"server-{port}.log"
        proc = self.popen(SYSTEM_PYTHON, "-m", "jupyter_server", f"--ServerApp.port={port}",
                          "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
                          f"--ServerApp.root_dir={self.home}", f"--IdentityProvider.token={token}",
                          "--ServerApp.open_browser=False", *extra_args, log=log)
        self.servers.append(proc)
        server = UserServer(self, proc, port, token, log)

        def ready():
            if proc.poll() is not None:
                raise RuntimeError(f"the second user's server exited; log: {log.read_text(errors='replace')[-2000:]}")
            return httpx.get(server.url + "api/status", headers=server.headers, timeout=2).status_code == 200

        wait_for(ready, timeout, 0.2, f"{self.name}'s jupyter server (log: {log})")
        return server

    @property
    def runtime_dir(self) -> Path:
        return self.home / ".local/share/jupyter/runtime"


class UserServer:
    def __init__(self, user: LocalUser, proc: subprocess.Popen, port: int, token: str, log: Path):
        self.user, self.proc, self.port, self.token, self.log = user, proc, port, token, log
        self.url = f"http://127.0.0.1:{port}/"

    @property
    def headers(self) -> dict:
        return {"Authorization": f"token {self.token}"}

    @property
    def pid(self) -> int:
        """The jupyter_server process (a child of runuser)."""
        def find():
            for c in psutil.Process(self.proc.pid).children(recursive=True):
                if "jupyter_server" in " ".join(c.cmdline()):
                    return c.pid
            return None

        return wait_for(find, 20, 0.1, "the second user's server process")

    def start_kernel(self) -> str:
        r = httpx.post(self.url + "api/kernels", json={"name": "python3"}, headers=self.headers, timeout=30)
        r.raise_for_status()
        return r.json()["id"]


@pytest.fixture(scope="module")
def local_user():
    reason = why_not()
    if reason:
        pytest.skip(f"no second local user: {reason}")
    user = LocalUser()
    try:
        user.create()
    except subprocess.CalledProcessError as e:
        user.remove()
        pytest.skip(f"no second local user: useradd failed: {e.stderr.strip()}")
    try:
        yield user
    finally:
        user.remove()
