"""Local running Jupyter servers, from the runtime files they announce themselves in."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from nbtui.files.config import ServerConfig
from nbtui.files.secrets import remember


def runtime_dir() -> Path:
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir())


@dataclass(frozen=True)
class Discovery:
    servers: tuple[ServerConfig, ...]
    stale: tuple[str, ...]  # runtime files whose process is gone
    unreadable: tuple[str, ...] = ()
    # Other users' runtime files nbtui (as root) did not trust, each "path: why"; never contacted.
    untrusted: tuple[str, ...] = ()


def pid_alive(pid: int, not_after: float | None = None) -> bool:
    """True if ``pid`` runs and (given ``not_after``) started no later than that time.

    A process started after the file was written reuses the PID of the one that wrote it.
    """
    import psutil  # (on first use: no runtime file, no psutil; a configured server's first read needs none)

    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return not_after is None or p.create_time() <= not_after + 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


MAX_RUNTIME_FILE = 64 * 1024


def _read_no_follow(path: Path) -> str:
    """The file's text, opened without following a link and without blocking on a pipe
    swapped in after the check."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("not a regular file")
        return os.read(fd, MAX_RUNTIME_FILE + 1).decode("utf-8")
    finally:
        os.close(fd)


def _name_for(info: dict, pid: int) -> str:
    return f"local-{info.get('port') or pid}"


def discover(directory: Optional[Path] = None, *,
             check: Optional[Callable[[Path, dict, int, float], Optional[str]]] = None) -> Discovery:
    """The servers whose runtime files lie in ``directory`` (default: this user's runtime
    folder). ``check(path, info, pid, mtime)``, given, returns why a file is not trusted
    (None: trusted); an untrusted file is reported, never contacted."""
    directory = directory or runtime_dir()
    servers: list[ServerConfig] = []
    stale: list[str] = []
    unreadable: list[str] = []
    untrusted: list[str] = []
    try:
        files = sorted(list(directory.glob("jpserver-*.json")) + list(directory.glob("nbserver-*.json")))
    except OSError:
        return Discovery((), ())
    seen_urls: set[str] = set()
    for path in files:
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_RUNTIME_FILE:
                # A pipe would block the read, a link may point anywhere, a huge file is no
                # runtime file: none is read.
                unreadable.append(str(path))
                continue
            info = json.loads(_read_no_follow(path))
            mtime = st.st_mtime
            pid = int(info["pid"])
            url = str(info["url"])
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            unreadable.append(str(path))
            continue
        if not pid_alive(pid, mtime):
            stale.append(str(path))
            continue
        why = check(path, info, pid, mtime) if check is not None else None
        if why is not None:
            untrusted.append(f"{path}: {why}")
            continue
        if not url.endswith("/"):
            url += "/"
        base_url = info.get("base_url") if isinstance(info.get("base_url"), str) and info.get("base_url") else "/"
        if base_url != "/" and not url.endswith(base_url):
            url = url.rstrip("/") + base_url
        if url in seen_urls:
            continue
        seen_urls.add(url)
        servers.append(
            ServerConfig(
                name=_name_for(info, pid),
                url=url,
                token_source="discovered",
                source="discovered",
                token=remember(info.get("token") if isinstance(info.get("token"), str) else None),
                pid=pid,
                root_dir=next((d for d in (info.get("root_dir"), info.get("notebook_dir")) if isinstance(d, str) and d),
                              None),  # a runtime file of the wrong shapes is no crash
            )
        )
    return Discovery(tuple(servers), tuple(stale), tuple(unreadable), tuple(untrusted))


def discover_host() -> Discovery:
    """This user's servers; as root also every other user's (see nbtui.jupyter.everyone)."""
    import os

    if os.geteuid() != 0 or os.environ.get("NBTUI_ROOT_DISCOVERY", "1") == "0":
        return discover()
    from nbtui.jupyter.everyone import discover_everyone
    return discover_everyone()


def kernel_connection_files(directory: Optional[Path] = None) -> list[Path]:
    directory = directory or runtime_dir()
    try:
        return sorted(directory.glob("kernel-*.json"))
    except OSError:
        return []


def is_same_server_url(a_url: str, b_url: str) -> bool:
    """Whether two URLs name the same server (localhost and 127.0.0.1 are one)."""
    from urllib.parse import urlsplit

    def norm(u: str) -> tuple[str, str, int, str]:
        p = urlsplit(u)
        host = p.hostname or ""
        if host in ("localhost", "::1", "0.0.0.0") or host.startswith("127."):
            host = "loopback"
        return (p.scheme, host, p.port or (443 if p.scheme == "https" else 80), p.path.rstrip("/"))

    return norm(a_url) == norm(b_url)

