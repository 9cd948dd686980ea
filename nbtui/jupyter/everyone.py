"""Discovery as root: every user's Jupyter runtime folder, trusted only when the host agrees.

Root reads its own runtime folder as any user does, and also: each home folder's
``.local/share/jupyter/runtime`` (from the password database and ``/home/*``),
``/run/user/*/jupyter``, and the ``JUPYTER_RUNTIME_DIR`` (or ``JUPYTER_DATA_DIR/runtime``)
of every running Jupyter server's environment.

Another user's runtime file is written by that user and says anything it likes: a PID, a
port, a URL, a token. It is trusted only when (1) it is a regular file (no symlink) owned
by the owner of the process its ``pid`` names, (2) that process is a Jupyter server, and
(3) it listens on the file's port, the URL naming this host. Anything else is reported
(``Discovery.untrusted``) and never contacted: a file planted by one user that claims
another user's (or root's) server is not believed.
"""

from __future__ import annotations

import glob
import os
import pwd
import stat
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

import psutil

from nbtui.jupyter.discovery import Discovery, discover, is_same_server_url, runtime_dir
from nbtui.sources.cmdline import is_jupyter_server as _is_server

_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0", "::")


def runtime_folders() -> list[Path]:
    """Every runtime folder root can find on this host (its own first), each once."""
    found: list[Path] = [runtime_dir()]
    homes = {p.pw_dir for p in pwd.getpwall() if p.pw_dir and p.pw_dir not in ("/", "/nonexistent")}
    homes.update(glob.glob("/home/*"))
    for home in sorted(homes):
        found.append(Path(home) / ".local/share/jupyter/runtime")
    found += [Path(p) for p in sorted(glob.glob("/run/user/*/jupyter"))]
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if not _is_server(proc.info.get("cmdline") or ()):
                continue
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        if env.get("JUPYTER_RUNTIME_DIR"):
            found.append(Path(env["JUPYTER_RUNTIME_DIR"]))
        elif env.get("JUPYTER_DATA_DIR"):
            found.append(Path(env["JUPYTER_DATA_DIR"]) / "runtime")
    out, seen = [], set()
    for f in found:
        try:
            key = f.resolve()
        except OSError:
            continue
        if key not in seen and f.is_dir():
            seen.add(key)
            out.append(f)
    return out


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def trust(path: Path, info: dict, pid: int, _mtime: float) -> Optional[str]:
    """Why another user's runtime file is not trusted (None: it is)."""
    try:
        st = os.lstat(path)
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    try:
        proc = psutil.Process(pid)
        uids = proc.uids()
        cmdline = proc.cmdline()
    except (psutil.Error, ValueError):
        return f"its process {pid} cannot be read"
    if uids.real != st.st_uid:
        return (f"owned by {_user_name(st.st_uid)}, but process {pid} runs as {_user_name(uids.real)}: "
                f"a file that claims another user's server")
    if not _is_server(cmdline):
        return f"process {pid} is not a Jupyter server"
    try:  # the port nbtui would connect to: the URL's (a "port" naming another is a lure)
        parts = urlsplit(str(info["url"]))
        port = parts.port or {"http": 80, "https": 443}[parts.scheme]
        named = int(info["port"]) if info.get("port") else port
    except (TypeError, ValueError, KeyError):
        return "names no port"
    if named != port:
        return f"its URL names port {port}, not the port {named} it claims: a file that points elsewhere"
    try:
        listening = [c for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    except (psutil.Error, OSError):
        return f"cannot tell which ports process {pid} listens on"
    if not any(c.laddr.port == port for c in listening):
        return f"process {pid} does not listen on port {port}"
    host = urlsplit(str(info["url"])).hostname or ""
    mine = {c.laddr.ip for c in listening if c.laddr.port == port}
    if host not in _LOCAL_HOSTS and host not in mine and host != os.uname().nodename:
        return f"its URL names another host ({host})"
    return None


def discover_everyone() -> Discovery:
    """Root's own runtime folder as usual, then every other one found, each file checked."""
    own = runtime_dir()
    parts = [discover(own)]
    for folder in runtime_folders():
        if folder == own:
            continue
        parts.append(discover(folder, check=trust))
    servers: list = []
    stale: list = []
    unreadable: list = []
    untrusted: list = []
    for d in parts:
        for s in d.servers:
            if not any(is_same_server_url(s.url, other.url) for other in servers):
                servers.append(s)
        stale += d.stale
        unreadable += d.unreadable
        untrusted += d.untrusted
    return Discovery(tuple(servers), tuple(stale), tuple(unreadable), tuple(untrusted))
