"""Adopt: reach a live local kernel that no server lists any more.

A kernel whose server died (or one started outside any server: ``jupyter kernel``, an
IDE) keeps running, and its connection file (``kernel-<id>.json``, named on its command
line) still holds its ports and signing key. nbtui can then

- talk to it over ZMQ with jupyter_client (``ZmqChannels``: the console, ``exec``,
  ``migrate pid:N``), after checking that it answers on its heartbeat;
- place a copy of that connection file in the ``external_connection_dir`` of a server on
  this host started with ``--ServerApp.allow_external_kernels=True``, so that server
  lists the kernel (under an id of its own) and JupyterLab can open it again.

A kernel that does not answer its heartbeat (stopped, hung, dying) is not adoptable.
The connection file holds a secret (the key): nbtui never prints it, and the copy it
places is the user's own file, mode 0600, beside the server's.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

import psutil

from nbtui.errors import NbtuiError, NotFound
from nbtui.host import signals
from nbtui.host.procs import kernel_id_in
from nbtui.jupyter.rest import ServerClient

HEARTBEAT_TIMEOUT = 2.0


class NotAdoptable(NbtuiError):
    """The process is not a kernel nbtui can reach (exit 1); the message says why."""


@dataclass(frozen=True)
class LocalKernel:
    ident: signals.Ident
    kernel_id: Optional[str]
    connection_file: str
    info: dict  # the connection file's content (holds the key: never printed)
    notebook: Optional[str]  # JPY_SESSION_NAME: the notebook's absolute path, if launched for one
    server_pid: Optional[int]  # JPY_PARENT_PID
    server_alive: Optional[bool]

    @property
    def pid(self) -> int:
        return self.ident.pid

    @property
    def kernel_name(self) -> Optional[str]:
        return self.info.get("kernel_name") or None

    def describe(self) -> dict:
        return {"pid": self.pid, "kernel_id": self.kernel_id, "kernel_name": self.kernel_name,
                "connection_file": self.connection_file, "notebook": self.notebook,
                "server_pid": self.server_pid, "server_alive": self.server_alive}


def connection_file_in(cmdline: list[str] | tuple[str, ...], cwd: Optional[str] = None) -> Optional[str]:
    """The connection file named on a kernel's command line (``-f PATH``, ``--f=PATH``, a bare
    ``…/kernel-<id>.json``), made absolute against the process's folder."""
    found: Optional[str] = None
    for i, arg in enumerate(cmdline):
        if arg in ("-f", "--f", "--existing") and i + 1 < len(cmdline):
            found = cmdline[i + 1]
        elif arg.startswith(("-f=", "--f=", "--existing=")) or ".connection_file=" in arg:
            found = arg.split("=", 1)[1]
        elif arg.endswith(".json") and kernel_id_in([arg]):
            found = arg
        if found:
            break
    if found and not os.path.isabs(found) and cwd:
        found = os.path.join(cwd, found)
    return found


def find(pid: int) -> LocalKernel:
    """The kernel running as ``pid``; NotFound / NotAdoptable say why not."""
    ident = signals.identify(pid)
    if ident is None:
        raise NotFound(f"no process {pid} on this host")
    try:
        p = psutil.Process(pid)
        cmdline = p.cmdline()
        try:
            cwd = p.cwd()
        except psutil.Error:
            cwd = None
        try:
            env = p.environ()
        except psutil.Error:
            env = {}
    except psutil.NoSuchProcess:
        raise NotFound(f"no process {pid} on this host") from None
    except psutil.Error as e:
        raise NotAdoptable(f"pid {pid}: cannot read the process ({type(e).__name__})") from None
    path = connection_file_in(cmdline, cwd)
    if not path:
        raise NotAdoptable(f"pid {pid} is not a kernel: no connection file on its command line")
    try:
        info = json.loads(Path(path).read_text())
        if not isinstance(info, dict) or "key" not in info or "shell_port" not in info:
            raise ValueError("not a connection file")
    except FileNotFoundError:
        raise NotAdoptable(f"pid {pid}: its connection file {path} is gone; without its key nothing can "
                           "talk to the kernel") from None
    except (OSError, ValueError) as e:
        raise NotAdoptable(f"pid {pid}: cannot read its connection file {path}: {type(e).__name__}") from None
    server_pid: Optional[int] = None
    try:
        server_pid = int(env["JPY_PARENT_PID"]) if env.get("JPY_PARENT_PID") else None
    except ValueError:
        pass
    alive = None if server_pid is None else psutil.pid_exists(server_pid)
    return LocalKernel(ident, kernel_id_in([path]), path, info, env.get("JPY_SESSION_NAME") or None,
                       server_pid, alive)


def _endpoint(info: dict, port_key: str) -> str:
    transport, ip, port = info.get("transport", "tcp"), info.get("ip", "127.0.0.1"), info[port_key]
    return f"ipc://{ip}-{port}" if transport == "ipc" else f"tcp://{ip}:{port}"


async def heartbeat(info: dict, timeout: float = HEARTBEAT_TIMEOUT) -> bool:
    """Whether the kernel echoes a ping on its heartbeat socket within ``timeout``."""
    import zmq
    import zmq.asyncio

    ctx = zmq.asyncio.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.linger = 0
    try:
        sock.connect(_endpoint(info, "hb_port"))
        await sock.send(b"ping")
        return await sock.poll(int(timeout * 1000)) != 0 and await sock.recv() == b"ping"
    except (zmq.ZMQError, KeyError):
        return False
    finally:
        sock.close(0)


async def check(pid: int, timeout: float = HEARTBEAT_TIMEOUT) -> LocalKernel:
    """The kernel as ``pid`` if it answers its heartbeat; NotAdoptable otherwise."""
    lk = find(pid)
    if not await heartbeat(lk.info, timeout):
        raise NotAdoptable(f"pid {pid}: kernel {(lk.kernel_id or '?')[:8]} does not answer on its heartbeat "
                           f"within {timeout:g} s (stopped, hung or dying): it cannot be adopted")
    return lk


# -- handing it to a server ----------------------------------------------------------------


def _flag(cmdline: list[str], name: str) -> Optional[str]:
    """The value of ``--ServerApp.<name>=V`` (or ``--ServerApp.<name> V``) on a command line."""
    keys = (f"--ServerApp.{name}", f"--NotebookApp.{name}")
    for i, arg in enumerate(cmdline):
        for key in keys:
            if arg.startswith(key + "="):
                return arg.split("=", 1)[1]
            if arg == key and i + 1 < len(cmdline):
                return cmdline[i + 1]
    return None


def listening_pid(url: str) -> Optional[int]:
    """The local process listening on a loopback URL's port, where this host can tell."""
    port = urlsplit(url).port or (443 if url.startswith("https") else 80)
    try:
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                return c.pid
    except (psutil.Error, OSError):
        return None
    return None


def external_connection_dir(server_pid: Optional[int], url: str) -> Path:
    """Where a local server looks for external kernels, read from its command line.

    jupyter_server (>= 2.7.3 with jupyter_client > 8.3) reads connection files in
    ``external_connection_dir`` (default ``<runtime_dir>/external_kernels``) when
    ``allow_external_kernels`` is true."""
    pid = server_pid or listening_pid(url)
    if pid is None:
        raise NbtuiError(f"cannot find the process of the server at {url} on this host; "
                         "pass its external_connection_dir with --connection-dir DIR")
    try:
        p = psutil.Process(pid)
        cmdline, env = p.cmdline(), p.environ()
    except psutil.Error as e:
        raise NbtuiError(f"cannot read the server process {pid} ({type(e).__name__}); pass --connection-dir DIR") from None
    allow = (_flag(cmdline, "allow_external_kernels") or "").lower()
    if allow not in ("true", "1", "yes"):
        raise NbtuiError(f"the server at {url} does not say --ServerApp.allow_external_kernels=True on its "
                         "command line; start it so (jupyter_server >= 2.7.3), or pass --connection-dir DIR "
                         "if its config file sets it")
    explicit = _flag(cmdline, "external_connection_dir")
    if explicit:
        return Path(explicit)
    runtime = _flag(cmdline, "runtime_dir") or env.get("JUPYTER_RUNTIME_DIR")
    if not runtime:
        from jupyter_core.paths import jupyter_runtime_dir

        runtime = jupyter_runtime_dir()
    return Path(runtime) / "external_kernels"


async def place(client: ServerClient, lk: LocalKernel, directory: Path, timeout: float = 15.0) -> str:
    """Copy the kernel's connection file into ``directory`` and wait until the server lists
    it; return the id the server gave it. Removes the copy again if it never does."""
    before = {k["id"] for k in await client.kernels()}
    info = dict(lk.info)
    if not info.get("kernel_name"):
        info["kernel_name"] = "python3"  # the server needs one; ipykernel's own spec name
    directory.mkdir(parents=True, exist_ok=True)
    dest = directory / f"kernel-{lk.kernel_id or lk.pid}.json"
    if dest.exists():
        raise NbtuiError(f"{dest} exists: the kernel is already placed there")
    tmp = directory.parent / f".nbtui-adopt-{os.getpid()}-{dest.name}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, json.dumps(info, indent=1).encode())
    finally:
        os.close(fd)
    os.replace(tmp, dest)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        new = [k for k in await client.kernels() if k["id"] not in before and k.get("name") == info["kernel_name"]]
        if new:
            return new[0]["id"]
        await asyncio.sleep(0.25)
    dest.unlink(missing_ok=True)
    raise NbtuiError(f"{client.name} did not list the kernel within {timeout:g} s; is it running with "
                     f"--ServerApp.allow_external_kernels=True and external_connection_dir={directory}?")


def local_connection_file(kernel_id: str) -> Optional[tuple[str, signals.Ident]]:
    """(connection file, process) of kernel ``kernel_id`` if its process runs on this host and
    the file its command line names is readable, else None."""
    needle = f"kernel-{kernel_id}.json"
    for p in psutil.process_iter(["cmdline"]):
        cmdline = p.info.get("cmdline") or ()
        if not any(needle in arg for arg in cmdline) or "ipykernel" not in " ".join(cmdline):
            continue
        try:
            cwd = p.cwd()
        except psutil.Error:
            cwd = None
        path = connection_file_in(cmdline, cwd)
        ident = signals.identify(p.pid)
        if path and ident and os.access(path, os.R_OK):
            return path, ident
    return None
