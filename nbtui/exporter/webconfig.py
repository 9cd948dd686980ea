"""The exporter's HTTP side: the listen address, the web config file, TLS and basic auth.

``--web-config FILE`` reads the format Prometheus exporters share (exporter-toolkit's
``web-config.yml``). prometheus_client serves TLS (``start_http_server(certfile=…,
keyfile=…)``) but has no basic auth and reads no such file, so nbtui reads it here and
supports this part of it (anything else is refused by name, never silently ignored):

    tls_server_config:
      cert_file: server.crt          # relative paths are relative to the file
      key_file: server.key
      client_auth_type: RequireAndVerifyClientCert   # or NoClientCert, VerifyClientCertIfGiven
      client_ca_file: ca.crt
      min_version: TLS12             # TLS10 … TLS13
      max_version: TLS13
    http_server_config:
      headers: {X-Frame-Options: deny}
    basic_auth_users:
      prometheus: $2y$10$…          # bcrypt hashes, as `htpasswd -nBC 10 "" | tr -d ':\\n'` prints
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client.exposition import ThreadingWSGIServer

from nbtui.core.errors import UsageError

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3,
}
TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version"}
REQUEST_TIMEOUT = 15.0  # seconds a client may take to send its request (a TLS handshake included)


# -- --listen ---------------------------------------------------------------------------------

def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (every interface) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen: expected HOST:PORT (e.g. 127.0.0.1:9877), got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise UsageError(f"--listen: write an IPv6 address in brackets ([::1]:9877), got {text!r}")
    return host or "0.0.0.0", int(port)


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- the web config file ------------------------------------------------------------------------

@dataclass
class WebConfig:
    path: Optional[Path] = None
    tls: Optional[ssl.SSLContext] = None
    users: dict[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def secured(self) -> bool:
        return self.tls is not None or bool(self.users)


def load_web_config(path: str) -> WebConfig:
    import yaml

    p = Path(path)
    where = f"web config {p}"
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(f"{where}: cannot read it ({e.strerror or e})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{where}{line}: not valid YAML ({getattr(e, 'problem', None) or 'parse error'})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected a mapping at the top level")
    unknown = sorted(set(data) - {"tls_server_config", "basic_auth_users", "http_server_config"})
    if unknown:
        raise UsageError(f"{where}: key {unknown[0]!r} is not supported by nbtui "
                         "(supported: tls_server_config, basic_auth_users, http_server_config.headers)")
    cfg = WebConfig(path=p)
    base = p.parent
    tls = data.get("tls_server_config")
    if tls is not None:
        cfg.tls = _tls_context(tls, base, where)
    users = data.get("basic_auth_users")
    if users is not None:
        if not isinstance(users, dict):
            raise UsageError(f"{where}: basic_auth_users: expected a mapping of user to bcrypt hash")
        for user, hashed in users.items():
            if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
                raise UsageError(f"{where}: basic_auth_users.{user}: expected a bcrypt hash ($2y$…)")
            cfg.users[str(user)] = hashed.encode()
        if cfg.users:
            import bcrypt  # noqa: F401 - fail now, not at the first scrape
    http = data.get("http_server_config")
    if http is not None:
        if not isinstance(http, dict):
            raise UsageError(f"{where}: http_server_config: expected a mapping")
        extra = sorted(set(http) - {"headers", "http2"})
        if extra:
            raise UsageError(f"{where}: http_server_config.{extra[0]} is not supported by nbtui")
        headers = http.get("headers") or {}
        if not isinstance(headers, dict):
            raise UsageError(f"{where}: http_server_config.headers: expected a mapping")
        for k, v in headers.items():
            if not str(k).isascii() or any(c in str(k) + str(v) for c in "\r\n"):
                raise UsageError(f"{where}: http_server_config.headers.{k}: not a valid header")
            cfg.headers.append((str(k), str(v)))
    return cfg


def _tls_context(tls: object, base: Path, where: str) -> ssl.SSLContext:
    if not isinstance(tls, dict):
        raise UsageError(f"{where}: tls_server_config: expected a mapping")
    extra = sorted(set(tls) - TLS_KEYS)
    if extra:
        raise UsageError(f"{where}: tls_server_config.{extra[0]} is not supported by nbtui "
                         f"(supported: {', '.join(sorted(TLS_KEYS))})")

    def file(key: str) -> Optional[str]:
        v = tls.get(key)
        if v in (None, ""):
            return None
        return str((base / str(v)) if not Path(str(v)).is_absolute() else Path(str(v)))

    cert, key = file("cert_file"), file("key_file")
    if not cert or not key:
        raise UsageError(f"{where}: tls_server_config needs both cert_file and key_file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise UsageError(f"{where}: tls_server_config: cannot load {cert} / {key} ({getattr(e, 'strerror', None) or e})") from None
    auth = tls.get("client_auth_type") or "NoClientCert"
    if auth not in CLIENT_AUTH:
        raise UsageError(f"{where}: tls_server_config.client_auth_type {auth!r} is not supported by nbtui "
                         f"(supported: {', '.join(CLIENT_AUTH)})")
    ctx.verify_mode = CLIENT_AUTH[auth]
    ca = file("client_ca_file")
    if ca:
        try:
            ctx.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as e:
            raise UsageError(f"{where}: tls_server_config.client_ca_file: cannot load {ca} ({getattr(e, 'strerror', None) or e})") from None
    elif ctx.verify_mode != ssl.CERT_NONE:
        raise UsageError(f"{where}: tls_server_config: client_auth_type {auth} needs client_ca_file")
    for k, attr in (("min_version", "minimum_version"), ("max_version", "maximum_version")):
        v = tls.get(k)
        if v is None:
            continue
        if v not in TLS_VERSIONS:
            raise UsageError(f"{where}: tls_server_config.{k} {v!r}: expected one of {', '.join(TLS_VERSIONS)}")
        setattr(ctx, attr, TLS_VERSIONS[v])
    if tls.get("min_version") is None:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # exporter-toolkit's default too
    return ctx


# -- basic auth -------------------------------------------------------------------------------

class BasicAuth:
    """Checks ``Authorization: Basic`` against bcrypt hashes; a good pair is remembered
    (as a digest) so a scrape every second does not pay bcrypt's cost every second."""

    def __init__(self, users: dict[str, bytes]):
        import bcrypt

        self._bcrypt = bcrypt
        self.users = users
        self._dummy = bcrypt.hashpw(b"nbtui", bcrypt.gensalt(rounds=4))
        self._good: set[bytes] = set()
        self._lock = threading.Lock()

    def check(self, header: Optional[str]) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return False
        hashed = self.users.get(user)
        digest = hashlib.sha256(b"\0".join([user.encode(), password.encode(), hashed or b""])).digest()
        with self._lock:
            if digest in self._good:
                return True
        if hashed is None:
            self._bcrypt.checkpw(password.encode(), self._dummy)  # the same cost for unknown users
            return False
        try:
            ok = self._bcrypt.checkpw(password.encode(), hashed)
        except ValueError:
            return False
        if ok:
            with self._lock:
                if len(self._good) > 1000:
                    self._good.clear()
                self._good.add(digest)
        return ok


# -- the WSGI app and the server --------------------------------------------------------------

INDEX = b"<html><head><title>nbtui exporter</title></head><body><h1>nbtui exporter</h1>" \
        b'<p><a href="metrics">metrics</a></p></body></html>\n'


def make_app(scrape: Callable[[bool], tuple[bytes, bool]], web: WebConfig, content_type: str) -> WSGIApplication:
    auth = BasicAuth(web.users) if web.users else None

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        headers = list(web.headers)
        if auth is not None and not auth.check(environ.get("HTTP_AUTHORIZATION")):
            start_response("401 Unauthorized", headers + [("WWW-Authenticate", 'Basic realm="nbtui"'),
                                                          ("Content-Type", "text/plain")])
            return [b"Unauthorized\n"]
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
        if method not in ("GET", "HEAD"):
            start_response("405 Method Not Allowed", headers + [("Allow", "GET, HEAD")])
            return [b""]
        if path == "/":
            start_response("200 OK", headers + [("Content-Type", "text/html; charset=utf-8")])
            return [INDEX]
        if path != "/metrics":
            start_response("404 Not Found", headers + [("Content-Type", "text/plain")])
            return [b"Not found: the metrics are at /metrics\n"]
        body, gzipped = scrape("gzip" in (environ.get("HTTP_ACCEPT_ENCODING") or ""))
        headers.append(("Content-Type", content_type))
        if gzipped:
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(len(body))))
        start_response("200 OK", headers)
        return [b"" if method == "HEAD" else body]

    return app


class _Handler(WSGIRequestHandler):
    timeout = REQUEST_TIMEOUT

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()  # here, on the request's thread, bounded by timeout

    def log_message(self, format: str, *args: Any) -> None:  # a scrape every second is not news
        pass


def serve(host: str, port: int, app: WSGIApplication, web: WebConfig) -> WSGIServer:
    """A threaded HTTP(S) server, bound now; the caller runs ``serve_forever``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class Server(ThreadingWSGIServer):
        address_family = family

        def handle_error(self, request: socket.socket | tuple[bytes, socket.socket],
                         client_address: Any) -> None:  # a client that hung up, a bad handshake
            pass

    httpd = make_server(host, port, app, Server, handler_class=_Handler)
    if web.tls is not None:
        httpd.socket = web.tls.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
    return httpd
