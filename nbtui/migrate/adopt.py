"""Adopt: reach a live local kernel that no server lists any more.

A kernel whose server died (or one started outside any server: ``jupyter kernel``, an
IDE) keeps running, and its connection file (``kernel-<id>.json``, named on its command
line) still holds its ports and signing key. nbtui can then

- talk to it over ZMQ with jupyter_client (``ZmqChannels``: the console, ``exec``,
  ``migrate pid:N``), after checking that it answers on its heartbeat;
- place a copy of that connection file in the ``external_connection_dir`` of a server on
  this host started with ``--ServerApp.allow_external_kernels=True``, so that server
  lists the kernel (under an id of its own) and JupyterLab can open it again. Only a
  server run by the kernel's own owner: the file holds the kernel's key, and whoever
  reads it runs code as that owner. The folder comes from the server's command line, so
  its owner chooses it: it is walked from ``/`` without following a link and must be
  theirs (or root's) all the way (:func:`nbtui.files.safefile.open_folder`).

A kernel that does not answer its heartbeat (stopped, hung, dying) is not adoptable.
The connection file holds a secret (the key): nbtui never prints it, and the copy it
places is the server owner's file, mode 0600, created ``O_EXCL | O_NOFOLLOW``.
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

from nbtui.core.errors import NbtuiError, NotFound
from nbtui.host import signals
from nbtui.host.procs import kernel_id_in
from nbtui.jupyter.rest import ServerClient
from nbtui.core.text import visible

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
        uid = p.uids().effective
    except psutil.Error as e:
        raise NotAdoptable(f"pid {pid}: cannot read the process ({type(e).__name__})") from None
    try:
        info = json.loads(_read_connection_file(pid, path, uid))
        if not isinstance(info, dict) or "key" not in info or "shell_port" not in info:
            raise ValueError("not a connection file")
    except FileNotFoundError:
        raise NotAdoptable(f"pid {pid}: its connection file {visible(path)} is gone; without its key nothing can "
                           "talk to the kernel") from None
    except (OSError, ValueError) as e:
        raise NotAdoptable(f"pid {pid}: cannot read its connection file {visible(path)}: {type(e).__name__}") from None
    server_pid: Optional[int] = None
    try:
        server_pid = int(env["JPY_PARENT_PID"]) if env.get("JPY_PARENT_PID") else None
    except ValueError:
        pass
    alive = None if server_pid is None else psutil.pid_exists(server_pid)
    return LocalKernel(ident, kernel_id_in([path]), path, info, env.get("JPY_SESSION_NAME") or None,
                       server_pid, alive)


MAX_CONNECTION_FILE = 64 * 1024  # a connection file is a few hundred bytes


def _read_connection_file(pid: int, path: str, uid: int) -> bytes:
    """The connection file a process names on its command line: that process's owner wrote
    the name, so as root it is read only as a regular file (no symlink, no FIFO that would
    hang the read) owned by the user who runs the process. A user's process naming root's
    ``kernel-ID.json`` is not root's kernel: its key is code execution as root."""
    import errno
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise NotAdoptable(f"pid {pid}: its connection file {visible(path)} is a symlink; nbtui does not "
                               "read through one") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotAdoptable(f"pid {pid}: its connection file {visible(path)} is not a regular file")
        if st.st_uid != uid:
            raise NotAdoptable(
                f"pid {pid}: its connection file {visible(path)} is {_user_name(st.st_uid)}'s, not "
                f"{_user_name(uid)}'s, who runs the process: nbtui reads no key from a file the process's "
                "own user does not own")
        data = os.read(fd, MAX_CONNECTION_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_CONNECTION_FILE:
        raise ValueError("too big for a connection file")
    return data


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


@dataclass(frozen=True)
class Placement:
    """Where, and as whom, ``adopt --to`` places a kernel's connection file: checked, not yet done."""

    server: str
    server_pid: int
    uid: int  # the server's owner: the file is theirs (the server must read it)
    gid: int
    user: str
    directory: Path
    name: str  # kernel-<id>.json
    missing: tuple[str, ...] = ()  # trailing folders that do not exist yet (created 0700, theirs)

    def describe(self) -> str:
        made = f" (creating {'/'.join(self.missing)}, 0700)" if self.missing else ""
        return visible(f"{self.name} (mode 0600, owned by {self.user}) into {self.directory}{made} "
                       f"for {self.server} (server pid {self.server_pid}, run by {self.user})")

    def json(self) -> dict:
        return {"server": self.server, "server_pid": self.server_pid, "owner": self.user,
                "connection_dir": str(self.directory), "file": self.name, "creates": list(self.missing)}


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _owner(pid: int) -> tuple[int, int]:
    p = psutil.Process(pid)
    return p.uids().effective, p.gids().effective


def plan_place(lk: LocalKernel, server: str, server_pid: Optional[int], url: str,
               connection_dir: Optional[str] = None) -> Placement:
    """Check that kernel ``lk`` may be placed for the local server ``server`` and where; writes
    nothing. Refused (NotAdoptable, one line): a server run by anyone but the kernel's own
    owner (the file holds the kernel's key: whoever reads it runs code as the kernel's
    owner), and a connection folder that is not the server owner's (or root's) all the way
    from ``/`` (nbtui.files.safefile.open_folder: no symlink, no folder others may write)."""
    from nbtui.files import safefile
    pid = server_pid or listening_pid(url)
    if pid is None:
        raise NotAdoptable(f"cannot find the process of the server at {url} on this host, so nbtui cannot tell "
                           "who runs it; adopt places a kernel only for a local server it can see")
    try:
        p = psutil.Process(pid)
        cmdline, env = p.cmdline(), p.environ()
        s_uid, s_gid = _owner(pid)
        k_uid, _ = _owner(lk.pid)
    except psutil.Error as e:
        raise NotAdoptable(f"cannot read the server process {pid} or the kernel's ({type(e).__name__})") from None
    if not signals.same_process(lk.ident, signals.identify(lk.pid)):
        raise NotAdoptable(f"pid {lk.pid} is another process now; nothing was placed")
    if k_uid != s_uid:
        kernel, owner = _user_name(k_uid), _user_name(s_uid)
        raise NotAdoptable(f"refused: kernel {(lk.kernel_id or '?')[:8]} (pid {lk.pid}) is {kernel}'s and server "
                           f"{server} runs as {owner}; its key would let {owner} run code as {kernel}: a kernel "
                           "is adopted only into a server its own owner runs")
    if connection_dir:
        directory = os.path.abspath(connection_dir)
    else:
        directory = _connection_dir(p, cmdline, env, url)
    name = f"kernel-{lk.kernel_id or lk.pid}.json"
    try:
        fd, missing = safefile.open_folder(directory, {s_uid})
    except safefile.UnsafeFile as e:
        raise NotAdoptable(f"refused: connection folder {visible(e.path)} {e.problem}") from None
    try:
        if not missing:
            try:
                os.stat(name, dir_fd=fd, follow_symlinks=False)
                raise NotAdoptable(f"{visible(os.path.join(directory, name))} exists: the kernel is already "
                                   "placed there (or something else is)")
            except FileNotFoundError:
                pass
    finally:
        os.close(fd)
    return Placement(server, pid, s_uid, s_gid, _user_name(s_uid), Path(directory), name, tuple(missing))


def _connection_dir(p: psutil.Process, cmdline: list[str], env: dict, url: str) -> str:
    """Where a local server looks for external kernels, read from its command line (a relative
    path against the server's own folder).

    jupyter_server (>= 2.7.3 with jupyter_client > 8.3) reads connection files in
    ``external_connection_dir`` (default ``<runtime_dir>/external_kernels``) when
    ``allow_external_kernels`` is true."""
    allow = (_flag(cmdline, "allow_external_kernels") or "").lower()
    if allow not in ("true", "1", "yes"):
        raise NbtuiError(f"the server at {url} does not say --ServerApp.allow_external_kernels=True on its "
                         "command line; start it so (jupyter_server >= 2.7.3), or pass --connection-dir DIR "
                         "if its config file sets it")
    folder = _flag(cmdline, "external_connection_dir")
    if not folder:
        runtime = _flag(cmdline, "runtime_dir") or env.get("JUPYTER_RUNTIME_DIR")
        if not runtime:  # jupyter_core's jupyter_runtime_dir(), in the server's environment (not nbtui's)
            data = env.get("JUPYTER_DATA_DIR") or (os.path.join(env["XDG_DATA_HOME"], "jupyter")
                                                   if env.get("XDG_DATA_HOME") else None)
            if not data and env.get("HOME"):
                data = os.path.join(env["HOME"], ".local", "share", "jupyter")
            if not data:
                raise NbtuiError(f"cannot tell the runtime folder of the server at {url}; pass --connection-dir DIR")
            runtime = os.path.join(data, "runtime")
        folder = os.path.join(runtime, "external_kernels")
    if not os.path.isabs(folder):
        try:
            folder = os.path.join(p.cwd(), folder)
        except psutil.Error:
            raise NbtuiError(f"the server's connection folder {visible(folder)} is relative and its working folder "
                             "cannot be read; pass --connection-dir DIR") from None
    return folder


def _write_connection_file(pl: Placement, info: dict) -> int:
    """Create the file in its folder (walked again, never through a link, missing folders made
    for the server's owner): ``O_EXCL | O_NOFOLLOW``, 0600, owned by the server's owner.
    Returns the folder's descriptor (the caller closes it) for removing the file again."""
    from nbtui.files import safefile
    try:
        dfd, _ = safefile.open_folder(pl.directory, {pl.uid}, create=(pl.uid, pl.gid))
    except safefile.UnsafeFile as e:
        raise NotAdoptable(f"refused: connection folder {visible(e.path)} {e.problem}") from None
    try:
        try:
            fd = os.open(pl.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=dfd)
        except FileExistsError:
            raise NotAdoptable(f"{visible(str(pl.directory / pl.name))} exists: the kernel is already placed there "
                               "(or something else is)") from None
        try:
            if os.geteuid() != pl.uid:
                os.fchown(fd, pl.uid, pl.gid)
            data = json.dumps(info, indent=1).encode()
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
    except BaseException:
        os.close(dfd)
        raise
    return dfd


async def place(client: ServerClient, lk: LocalKernel, pl: Placement, timeout: float = 15.0) -> str:
    """Write the kernel's connection file as ``pl`` planned and wait until the server lists
    it; return the id the server gave it. Removes the file again if it never does."""
    before = {k["id"] for k in await client.kernels()}
    info = dict(lk.info)
    if not info.get("kernel_name"):
        info["kernel_name"] = "python3"  # the server needs one; ipykernel's own spec name
    dfd = _write_connection_file(pl, info)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            new = [k for k in await client.kernels()
                   if k["id"] not in before and k.get("name") == info["kernel_name"]]
            if new:
                return new[0]["id"]
            await asyncio.sleep(0.25)
        try:
            os.unlink(pl.name, dir_fd=dfd)
        except OSError:
            pass
    finally:
        os.close(dfd)
    raise NbtuiError(f"{client.name} did not list the kernel within {timeout:g} s; is it running with "
                     f"--ServerApp.allow_external_kernels=True and external_connection_dir={pl.directory}?")


def local_connection_file(kernel_id: str, server_url: str) -> Optional[tuple[str, dict, signals.Ident]]:
    """(connection file, its content, process) of kernel ``kernel_id`` of the local server at
    ``server_url``, if its process runs on this host under that server's own process and its
    connection file is the process owner's regular file; else None (then the kernel is reached
    through its server). A server lists what it likes: its listing of another server's kernel
    id (root's) must not lead nbtui to that kernel's key."""
    server_pid = listening_pid(server_url)
    if server_pid is None:
        return None
    needle = f"kernel-{kernel_id}.json"
    for p in psutil.process_iter(["cmdline"]):
        cmdline = p.info.get("cmdline") or ()
        if not any(needle in arg for arg in cmdline) or "ipykernel" not in " ".join(cmdline):
            continue
        try:
            if server_pid not in {a.pid for a in p.parents()}:
                continue
            cwd = p.cwd()
            uid = p.uids().effective
        except psutil.Error:
            continue
        path = connection_file_in(cmdline, cwd)
        ident = signals.identify(p.pid)
        if not path or ident is None:
            continue
        try:
            info = json.loads(_read_connection_file(p.pid, path, uid))
        except (OSError, ValueError, NbtuiError):
            continue
        if isinstance(info, dict) and "key" in info and "shell_port" in info:
            return path, info, ident
    return None
