"""Small real HTTP servers on loopback that are not Jupyter: a login page, HTML, a 500,
and hostile ones (issue 10): ``deep`` (``[`` x 200,000), ``huge`` (a body of ``size``
bytes, streamed), ``drip`` (a byte a second), ``ws-hang`` (a Jupyter-looking API whose
kernel websocket accepts and never upgrades; with ``usage_hangs`` its nbtui extension's
usage read too), ``liar`` (lists ``kernels``, someone else's
kernel ids; with ``me_hangs`` its ``/api/me`` never answers), ``scheme`` (redirects to a file: URL), ``badtypes`` (JSON of the wrong shapes),
``drip-recheck`` (a Jupyter-looking API, as ``liar``, that answers the first kernel listing,
then drips every later listing, every ``/api/kernels/ID`` and every DELETE/POST: the
re-check right before an action meets the drip, the read before it does not), and ``hub``
(a JupyterHub API whose user list is ``users``, paged as ``pages`` says: ``plain`` one
list, ``loop`` a ``next`` that points at itself, ``endless`` a ``next`` that never ends;
each user's server, read through the "proxy" at its ``url``, lists ``kernels_at[url]``).
``paths`` (kernel id -> notebook path) gives ``liar`` and ``hub`` kernels sessions, any
string at all (JSON escapes it: a lone surrogate arrives as ``\ud800``); ``times`` (kernel id ->
``last_activity``) gives ``liar`` kernels any time at all.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    mode = "html"

    def log_message(self, *args):  # keep test output clean
        pass

    def _json(self, data, status: int = 200) -> None:
        self._raw_json(json.dumps(data).encode(), status)

    def _raw_json(self, body: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _drip(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        for _ in range(1000):
            self.wfile.write(b" ")
            self.wfile.flush()
            time.sleep(1)

    def _dripping(self, path: str) -> bool:
        """drip-recheck: whether this request is one that drips (the re-check and the act)."""
        srv = self.server
        if self.command == "GET" and path == "/api/kernels":
            srv.listings += 1  # type: ignore[attr-defined]
            return srv.listings > 1  # type: ignore[attr-defined]
        return self.command != "GET" or path.startswith("/api/kernels/")

    def _sessions(self, kernels) -> list:
        paths = self.server.paths  # type: ignore[attr-defined]
        return [{"id": f"s-{kid}", "path": paths[kid], "name": paths[kid].rsplit("/", 1)[-1], "type": "notebook",
                 "kernel": {"id": kid, "name": "python3"}} for kid in kernels if kid in paths]

    def _hub(self, path: str) -> None:
        srv = self.server
        query = self.path.partition("?")[2]
        if path.startswith("/hub/api/users/") and "/tokens" in path:  # a token for one user's server
            if self.command == "POST":
                self._json({"token": secrets.token_hex(16), "id": f"a{len(path)}"}, 201)
            else:
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()
            return
        if path == "/hub/api":
            self._json({"version": "5.2.1"})
        elif path == "/hub/api/user":
            self._json({"kind": "service", "name": "nbtui",
                        "scopes": ["list:users", "read:users", "read:servers", "tokens", "servers"]})
        elif path == "/hub/api/users":
            users, pages = srv.users, srv.pages  # type: ignore[attr-defined]
            offset = int(dict(kv.partition("=")[::2] for kv in query.split("&")).get("offset") or 0)
            if pages == "plain":  # encoded once: a list of 100,000 users is served fast
                if srv.users_body is None:  # type: ignore[attr-defined]
                    srv.users_body = json.dumps(users).encode()  # type: ignore[attr-defined]
                self._raw_json(srv.users_body)  # type: ignore[attr-defined]
            elif pages == "loop":  # the same page again and again: next points at itself
                self._json({"items": users, "_pagination": {"offset": offset, "next": {"offset": offset}}})
            else:  # endless: a new page, always one more
                self._json({"items": [{"name": f"u{offset}", "servers": {}}],
                            "_pagination": {"offset": offset, "next": {"offset": offset + 1}}})
        elif path.startswith("/user/"):
            base, _, rest = path.partition("/api")
            kernels = srv.kernels_at.get(base + "/", [])  # type: ignore[attr-defined]
            if self.command == "DELETE":
                srv.deleted.append(path)  # type: ignore[attr-defined]
                self.send_response(204)
                self.end_headers()
            elif rest == "/kernels":
                self._json([{"id": kid, "name": "python3", "last_activity": "2026-01-01T00:00:00Z",
                             "execution_state": "idle", "connections": 0} for kid in kernels])
            elif rest.startswith("/kernels/"):
                kid = rest.rsplit("/", 1)[-1]
                self._json({"id": kid, "name": "python3"} if kid in kernels else {"message": "no such kernel"},
                           200 if kid in kernels else 404)
            elif rest == "/sessions":
                self._json(self._sessions(kernels))
            elif rest == "/terminals":
                self._json([])
            else:
                self._json({"version": "2.21.0"})
        else:
            self._json({"message": "not found"}, 404)

    def _hostile(self, mode: str) -> bool:
        srv = self.server
        path = self.path.split("?", 1)[0]
        try:
            if mode == "hub":
                self._hub(path)
            elif mode == "drip-recheck" and self._dripping(path):
                srv.dripped.append(f"{self.command} {path}")  # type: ignore[attr-defined]
                self._drip()
            elif mode == "deep":
                body = b"[" * 200_000
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            elif mode == "huge":  # no Content-Length: the client must cap while it streams
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'["')
                chunk = b"x" * (1 << 20)
                for _ in range(srv.size // len(chunk)):  # type: ignore[attr-defined]
                    self.wfile.write(chunk)
                self.wfile.write(b'"]')
            elif mode == "drip":
                self._drip()
            elif mode in ("ws-hang", "liar", "drip-recheck"):
                if path.endswith("/channels") or (path == "/api/nbtui/usage" and srv.usage_hangs) or (  # type: ignore[attr-defined]
                        path == "/api/me" and srv.me_hangs):  # type: ignore[attr-defined]
                    srv.hung.append(self.connection)  # accept, read the request, never answer it  # type: ignore[attr-defined]
                    time.sleep(120)
                elif path == "/api/kernels":
                    self._json([{"id": kid, "name": "python3",
                                 "last_activity": srv.times.get(kid, "2026-01-01T00:00:00Z"),  # type: ignore[attr-defined]
                                 "execution_state": "idle", "connections": 0}
                                for kid in srv.kernels])  # type: ignore[attr-defined]
                elif path.startswith("/api/kernels/"):
                    kid = path.rsplit("/", 1)[-1]
                    if kid in srv.kernels:  # type: ignore[attr-defined]
                        self._json({"id": kid, "name": "python3", "execution_state": "idle"})
                    else:
                        self._json({"message": "no such kernel"}, 404)
                elif path == "/api/sessions":
                    self._json(self._sessions(srv.kernels))  # type: ignore[attr-defined]
                elif path == "/api/me":
                    self._json({"identity": {"username": srv.user}})  # type: ignore[attr-defined]
                else:
                    self._json({"version": "2.21.0"})
            elif mode == "evil400":  # an error message full of escapes
                self._json({"message": "bad \x1b]0;pwned\x07\x1b[2J [red]x[/]"}, 400)
            elif mode == "scheme":
                self.send_response(302)
                self.send_header("Location", "file:///etc/shadow")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif mode == "badtypes":
                if path == "/api/sessions":
                    self._json([{"id": 1, "path": ["x"], "notebook": "nb", "kernel": {"id": "k1"}}])
                elif path == "/api/kernels":
                    self._json([{"id": "k1", "name": 5, "connections": "many", "last_activity": 7}])
                elif path == "/api/me":
                    self._json({"identity": "not-a-dict"})
                else:
                    self._json({"version": ["not", "a", "string"]})
            else:
                return False
        except (BrokenPipeError, ConnectionResetError):
            pass
        return True

    def do_DELETE(self):
        if self.server.mode == "hub":  # type: ignore[attr-defined]
            self._hostile("hub")
            return
        if self.server.mode == "drip-recheck":  # type: ignore[attr-defined]
            self.server.deleted.append(self.path)  # type: ignore[attr-defined]
            self._hostile("drip-recheck")
            return
        if self.server.mode in ("liar", "ws-hang"):  # type: ignore[attr-defined]
            self.server.deleted.append(self.path)  # type: ignore[attr-defined]
            self.send_response(204)
            self.end_headers()

    def do_POST(self):
        self.do_DELETE()

    def do_GET(self):
        mode = self.server.mode  # type: ignore[attr-defined]
        if self._hostile(mode):
            return
        if mode == "login":
            self.send_response(302)
            self.send_header("Location", "/login?next=" + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif mode == "500":
            body = b"<html><body>Internal Server Error</body></html>"
            self.send_response(500)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            body = b"<!doctype html><html><body><h1>Welcome to nginx!</h1></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


class FakeHTTP:
    def __init__(self, mode: str, *, kernels=(), size: int = 600 << 20, user: str = "mallory",
                 users=(), pages: str = "plain", kernels_at=None, paths=None, usage_hangs: bool = False, me_hangs: bool = False,
                 times=None):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.mode = mode  # type: ignore[attr-defined]
        self.httpd.kernels = list(kernels)  # type: ignore[attr-defined]
        self.httpd.size = size  # type: ignore[attr-defined]
        self.httpd.user = user  # type: ignore[attr-defined]
        self.httpd.hung = []  # type: ignore[attr-defined]
        self.httpd.deleted = []  # type: ignore[attr-defined]
        self.httpd.listings = 0  # type: ignore[attr-defined]
        self.httpd.users = list(users)  # type: ignore[attr-defined]
        self.httpd.pages = pages  # type: ignore[attr-defined]
        self.httpd.users_body = None  # type: ignore[attr-defined]
        self.httpd.paths = dict(paths or {})  # type: ignore[attr-defined]
        self.httpd.times = dict(times or {})  # type: ignore[attr-defined]  # kernel id -> its last_activity
        self.httpd.kernels_at = dict(kernels_at or {})  # type: ignore[attr-defined]
        self.httpd.dripped = []  # type: ignore[attr-defined]
        self.httpd.usage_hangs = usage_hangs  # type: ignore[attr-defined]
        self.httpd.me_hangs = me_hangs  # type: ignore[attr-defined]  # its /api/me never answers
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHTTP":
        self.thread.start()
        return self

    @property
    def deleted(self) -> list:
        return self.httpd.deleted  # type: ignore[attr-defined]

    @property
    def dripped(self) -> list:
        return self.httpd.dripped  # type: ignore[attr-defined]

    def __exit__(self, *exc) -> None:
        for conn in self.httpd.hung:  # type: ignore[attr-defined]
            try:
                conn.close()
            except OSError:
                pass
        self.httpd.shutdown()
        self.httpd.server_close()
