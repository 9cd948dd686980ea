"""config.toml (the user's, read only) and servers.toml (nbtui's, written atomically)."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, NoReturn, Optional
from urllib.parse import urlsplit

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from nbtui.core.errors import ConfigError, UsageError
from nbtui.core.kinds import ServerSource
from nbtui.core.units import parse_duration

TOKEN_SOURCES = ("keyring", "env", "cmd", "none")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
# TARGET prefixes (`pid:N`, `terminal:S/N`, `server:NAME`): a server of that name would be ambiguous.
RESERVED_NAMES = frozenset({"pid", "terminal", "server"})


def name_problem(name: str) -> Optional[str]:
    """Why ``name`` cannot name a server, or None."""
    if not NAME_RE.match(name):
        return "letters, digits, '.', '_' or '-', up to 40"
    if name.lower() in RESERVED_NAMES:
        return f"'{name}' is reserved (pid, terminal and server begin a TARGET)"
    return None


def config_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The folder holding config.toml and servers.toml.

    ``--config PATH`` (or ``NBTUI_CONFIG``) names config.toml itself or its folder.
    """
    explicit = explicit or os.environ.get("NBTUI_CONFIG")
    if explicit:
        p = Path(explicit).expanduser()
        if p.suffix == ".toml" or (p.exists() and p.is_file()):
            return p.parent
        return p
    import platformdirs

    return Path(platformdirs.user_config_dir("nbtui"))


def state_dir() -> Path:
    """Where nbtui keeps history and the audit log (``NBTUI_STATE_DIR`` overrides)."""
    env = os.environ.get("NBTUI_STATE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_state_dir("nbtui"))


@dataclass(frozen=True)
class ServerConfig:
    name: str
    url: str
    token_source: str = "keyring"  # keyring | env | cmd | none | discovered
    token_env: Optional[str] = None
    token_cmd: Optional[str] = None
    ca_bundle: Optional[str] = None
    insecure_http: bool = False
    timeout: Optional[float] = None
    source: ServerSource = "config"
    # Only for discovered servers: the token their runtime file carries. Never written.
    token: Optional[str] = field(default=None, repr=False, compare=False)
    pid: Optional[int] = None
    root_dir: Optional[str] = None
    # A discovered server's process: its OS owner and start time (psutil), where readable;
    # never written. The start time tells the server from a later process with its PID.
    owner: Optional[str] = field(default=None, compare=False)
    started_at: Optional[float] = field(default=None, repr=False, compare=False)
    # A JupyterHub (servers add --hub): its users' servers are read, not the URL itself.
    hub: bool = False
    route: str = "auto"  # hub only: auto | direct | proxy (how users' servers are reached)
    proxy_interval: Optional[float] = None  # hub only: seconds between reads through the proxy

    def to_toml(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url, "token": self.token_source}
        for key in ("token_env", "token_cmd", "ca_bundle", "timeout"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.insecure_http:
            out["insecure_http"] = True
        if self.hub:
            out["hub"] = True
            if self.route != "auto":
                out["route"] = self.route
            if self.proxy_interval is not None:
                out["proxy_interval"] = f"{self.proxy_interval:g}s"
        return out


@dataclass(frozen=True)
class Settings:
    """config.toml, validated, with defaults."""

    refresh: float = 2.0
    timeout: float = 5.0
    theme: str = "nbtui-dark"
    discover: bool = True
    orphan_idle: float = 3600.0
    orphan_gpu_idle: float = 1800.0  # [orphans] gpu_idle: 0 % SM while holding GPU memory this long
    cull_idle: Optional[float] = None
    cull_gpu_only: bool = False
    cull_orphans: bool = False
    path: Optional[Path] = None
    max_body: int = 64 << 20  # a server's answer above this is that server's error (`max_body = "64M"`)


@dataclass
class Config:
    folder: Path
    settings: Settings
    servers: dict[str, ServerConfig]

    @property
    def servers_path(self) -> Path:
        return self.folder / "servers.toml"


def _line_of(text: str, table: str | None, key: str) -> Optional[int]:
    """Best-effort line number of ``key`` inside ``[table]`` (TOML gives none for values)."""
    in_table = table is None
    header = re.compile(r"^\s*\[+\s*([^\]]+?)\s*\]+")
    for i, line in enumerate(text.splitlines(), 1):
        m = header.match(line)
        if m:
            in_table = table is not None and m.group(1).replace('"', "") == table
            continue
        if in_table and re.match(rf"^\s*\"?{re.escape(key)}\"?\s*=", line):
            return i
    return None


def _load_toml(path: Path) -> tuple[dict[str, Any], str]:
    from nbtui.files.safefile import UnsafeFile, read_text
    try:
        text = read_text(path)  # a regular file of ours (or root's), not a FIFO, at most 1 MiB
    except UnsafeFile as e:
        raise ConfigError(str(e)) from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    if text is None:
        return {}, ""
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None


_SECRET_KEY = re.compile(r"(?i)token|passw|secret|key|auth|cred")


def _shown(key: str, value: Any) -> str:
    """A bad value as an error message shows it: never the value of a key naming a secret
    (`token = "abc…"` pasted where a token source belongs)."""
    if _SECRET_KEY.search(key):
        return f"a {type(value).__name__} (not shown: the key names a secret)"
    return repr(value)


def check_ca_bundle(path: Optional[str]) -> Optional[str]:
    """Why ``path`` cannot serve as a CA bundle (one line), or None."""
    if path is None:
        return None
    import ssl

    if not os.path.isfile(path):
        return f"no such file: {path}"
    try:
        ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError, ValueError) as e:
        return f"not a readable PEM CA bundle: {path} ({type(e).__name__})"
    return None


class _Checker:
    def __init__(self, path: Path, text: str):
        self.path, self.text = path, text

    def fail(self, table: str | None, key: str, problem: str) -> NoReturn:
        line = _line_of(self.text, table, key)
        where = f"{self.path}" + (f", line {line}" if line else "")
        dotted = f"{table}.{key}" if table else key
        raise ConfigError(f"{where}: {dotted}: {problem}")

    def number(self, data: dict, table: str | None, key: str, default: float, lo: float = 0.0) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > lo:  # nan too
            self.fail(table, key, f"expected a number above {lo:g}, got {_shown(key, value)}")
        return float(value)

    def boolean(self, data: dict, table: str | None, key: str, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.fail(table, key, f"expected true or false, got {_shown(key, value)}")
        return value

    def string(self, data: dict, table: str | None, key: str, default: Optional[str]) -> Optional[str]:
        value = data.get(key, default)
        if value is not None and not isinstance(value, str):
            self.fail(table, key, f"expected a string, got {_shown(key, value)}")
        return value

    def duration(self, data: dict, table: str | None, key: str, default: Optional[float]) -> Optional[float]:
        if key not in data:
            return default
        try:
            return parse_duration(data[key])
        except UsageError as e:
            self.fail(table, key, str(e))
        return None  # pragma: no cover

    def size(self, data: dict, table: str | None, key: str, default: int) -> int:
        from nbtui.core.units import parse_bytes
        if key not in data:
            return default
        try:
            value = parse_bytes(data[key], key)
        except (UsageError, ValueError, OverflowError) as e:
            self.fail(table, key, str(e) if isinstance(e, UsageError) else "expected a size like 64M")
        if value < 1024:
            self.fail(table, key, f"expected at least 1K, got {value}")
        return value

    def unknown(self, data: dict, table: str | None, allowed: set[str]) -> None:
        for key in data:
            if key not in allowed:
                self.fail(table, key, f"unknown key (known: {', '.join(sorted(allowed))})")


def settings_path(explicit: str | os.PathLike | None = None) -> Path:
    """config.toml: the file ``--config``/``NBTUI_CONFIG`` names (any *.toml name), else
    config.toml in the config folder."""
    explicit = explicit or os.environ.get("NBTUI_CONFIG")
    if explicit:
        p = Path(explicit).expanduser()
        if p.suffix == ".toml" or p.is_file():
            return p
    return config_dir(explicit) / "config.toml"


def _named_file_exists(explicit: str | os.PathLike | None) -> None:
    """A config file named by ``--config``/``NBTUI_CONFIG`` that is not there is a usage
    error (a typo must not run on defaults); a folder without config.toml is a fresh one."""
    named = explicit or os.environ.get("NBTUI_CONFIG")
    if not named:
        return
    p = Path(named).expanduser()
    if p.suffix == ".toml" and not p.is_file():
        how = "--config" if explicit else "NBTUI_CONFIG"
        if p.is_dir():
            raise ConfigError(f"config file {p} ({how}) is a folder, not a file")
        hint = "; create it, or name its folder to run on defaults" if p.parent.is_dir() else ""
        raise ConfigError(f"config file {p} ({how}) does not exist{hint}")


def load_settings(path: Path) -> Settings:
    data, text = _load_toml(path)
    c = _Checker(path, text)
    c.unknown(data, None, {"refresh", "timeout", "theme", "discover", "orphans", "cull", "max_body"})
    orphans = data.get("orphans", {})
    cull = data.get("cull", {})
    for table, value in (("orphans", orphans), ("cull", cull)):
        if not isinstance(value, dict):
            c.fail(None, table, "expected a table")
    c.unknown(orphans, "orphans", {"idle", "gpu_idle"})
    c.unknown(cull, "cull", {"idle", "gpu_only", "orphans"})
    return Settings(
        refresh=c.number(data, None, "refresh", 2.0),
        timeout=c.number(data, None, "timeout", 5.0),
        theme=c.string(data, None, "theme", "nbtui-dark") or "nbtui-dark",
        discover=c.boolean(data, None, "discover", True),
        orphan_idle=c.duration(orphans, "orphans", "idle", 3600.0) or 0.0,
        orphan_gpu_idle=c.duration(orphans, "orphans", "gpu_idle", 1800.0) or 0.0,
        cull_idle=c.duration(cull, "cull", "idle", None),
        max_body=c.size(data, None, "max_body", 64 << 20),
        cull_gpu_only=c.boolean(cull, "cull", "gpu_only", False),
        cull_orphans=c.boolean(cull, "cull", "orphans", False),
        path=path,
    )


def validate_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # raises for a port out of range
    except ValueError:  # `http://[::1` (an unclosed IPv6 bracket), port 99999
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        # Echo it without query, fragment or user:password (a pasted `?token=…` stays out).
        shown = re.sub(r"(//)[^/@]*@", r"\1", re.split(r"[?#]", url, maxsplit=1)[0])
        raise UsageError(f"bad server URL {shown!r}: expected http(s)://HOST[:PORT][/PATH]")
    if parts.query or parts.fragment:
        raise UsageError("server URL must not carry a query or fragment (tokens never go in URLs)")
    if "@" in parts.netloc:
        # The password is never echoed: not even the host part is, it sits beside it.
        raise UsageError("server URL must not carry user:password@ (credentials never go in URLs; "
                         "give a token with --token-stdin, --token-env or --token-cmd)")
    return url if url.endswith("/") else url + "/"


def load_servers(folder: Path) -> dict[str, ServerConfig]:
    path = folder / "servers.toml"
    data, text = _load_toml(path)
    c = _Checker(path, text)
    c.unknown(data, None, {"servers"})
    table = data.get("servers", {})
    if not isinstance(table, dict):
        c.fail(None, "servers", "expected a table of servers")
    allowed = {"url", "token", "token_env", "token_cmd", "ca_bundle", "insecure_http", "timeout",
               "hub", "route", "proxy_interval"}
    out: dict[str, ServerConfig] = {}
    for name, entry in table.items():
        tname = f"servers.{name}"
        problem = name_problem(name)
        if problem:
            c.fail("servers", name, f"a server name: {problem}")
        if not isinstance(entry, dict):
            c.fail("servers", name, "expected a table")
        c.unknown(entry, tname, allowed)
        url = c.string(entry, tname, "url", None)
        if not url:
            c.fail(tname, "url", "missing")
        try:
            url = validate_url(url)
        except UsageError as e:
            c.fail(tname, "url", str(e))
        source = c.string(entry, tname, "token", "keyring")
        if source not in TOKEN_SOURCES:
            c.fail(tname, "token", f"expected one of {', '.join(TOKEN_SOURCES)}, got {_shown('token', source)}")
        cfg = ServerConfig(
            name=name,
            url=url,
            token_source=source,
            token_env=c.string(entry, tname, "token_env", None),
            token_cmd=c.string(entry, tname, "token_cmd", None),
            ca_bundle=c.string(entry, tname, "ca_bundle", None),
            insecure_http=c.boolean(entry, tname, "insecure_http", False),
            timeout=c.number(entry, tname, "timeout", 5.0) if "timeout" in entry else None,
            hub=c.boolean(entry, tname, "hub", False),
            route=c.string(entry, tname, "route", "auto") or "auto",
            proxy_interval=c.duration(entry, tname, "proxy_interval", None),
        )
        bad_ca = check_ca_bundle(cfg.ca_bundle)
        if bad_ca:
            c.fail(tname, "ca_bundle", bad_ca)
        if cfg.route not in ("auto", "direct", "proxy"):
            c.fail(tname, "route", f"expected auto, direct or proxy, got {cfg.route!r}")
        if not cfg.hub and ("route" in entry or "proxy_interval" in entry):
            c.fail(tname, "route" if "route" in entry else "proxy_interval", "only for a hub (hub = true)")
        if source == "env" and not cfg.token_env:
            c.fail(tname, "token_env", "missing (token = \"env\" needs the variable's name)")
        if source == "cmd" and not cfg.token_cmd:
            c.fail(tname, "token_cmd", "missing (token = \"cmd\" needs a command)")
        out[name] = cfg
    return out


def load(explicit: str | os.PathLike | None = None, *, creating: bool = False) -> Config:
    """``creating`` (`servers add`): a named config file not there yet is one to create
    (``create_named_file``), not a typo."""
    if not creating:
        _named_file_exists(explicit)
    folder = config_dir(explicit)
    return Config(folder=folder, settings=load_settings(settings_path(explicit)), servers=load_servers(folder))


def create_named_file(explicit: str | os.PathLike | None = None) -> Optional[Path]:
    """Create the config file ``--config``/``NBTUI_CONFIG`` names when it is not there yet
    (0600, its folders 0700, never through a link; defaults as comments): the first
    `servers add` is how a user makes one. Returns its path when it made it."""
    named = explicit or os.environ.get("NBTUI_CONFIG")
    if not named:
        return None
    p = Path(named).expanduser()
    if p.suffix != ".toml" or os.path.lexists(p):
        return None
    from nbtui.files.safefile import UnsafeFile, open_fd
    try:
        fd = open_fd(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:  # made meanwhile (another `servers add`): it is there
        return None
    except UnsafeFile as e:
        raise ConfigError(str(e)) from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot create: {e.strerror or e}") from None
    try:
        os.write(fd, NEW_CONFIG.encode("utf-8"))
    finally:
        os.close(fd)
    return p


NEW_CONFIG = """\
# nbtui settings (every key is optional; the defaults are shown commented out).
# Servers live in servers.toml beside this file (`nbtui servers add/remove` write it).
# refresh = 2.0     # seconds between the TUI's reads
# timeout = 5.0     # seconds a server may take to answer
# discover = true   # find local running servers (their jpserver-*.json runtime files)
"""


def save_servers(config: Config) -> None:
    """Write servers.toml atomically (temp file + os.replace), mode 0600."""
    import tomli_w

    from nbtui.files.safefile import UnsafeFile, ensure_dir, replace_file
    try:
        ensure_dir(config.folder)
    except UnsafeFile as e:
        raise ConfigError(str(e)) from None
    body = {"servers": {n: s.to_toml() for n, s in sorted(config.servers.items())}}
    data = tomli_w.dumps(body)
    replace_file(config.servers_path,
                 "# Written by nbtui (`nbtui servers add/remove`). Tokens live in the keyring.\n" + data,
                 sync=True)


@contextlib.contextmanager
def servers_lock(folder: Path) -> Iterator[None]:
    """Hold servers.toml's lock (an flock beside it) for one read-modify-write: ten
    concurrent `servers add` keep ten entries."""
    import fcntl

    from nbtui.files.safefile import UnsafeFile, open_fd
    try:
        fd = open_fd(folder / ".servers.lock", os.O_RDWR | os.O_CREAT)
    except UnsafeFile as e:
        raise ConfigError(str(e)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def with_server(config: Config, server: ServerConfig) -> Config:
    servers = dict(config.servers)
    servers[server.name] = server
    return replace(config, servers=servers)
