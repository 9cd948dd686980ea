"""Small real HTTP servers on loopback that are not Jupyter: a login page, HTML, a 500,
and hostile ones (issue 10): ``deep`` (``[`` x 200,000), ``huge`` (a body of ``size``
bytes, streamed), ``drip`` (a byte a second), ``ws-hang`` (a Jupyter-looking API whose
kernel websocket accepts and never upgrades), ``liar`` (lists ``kernels``, someone else's
kernel ids), ``scheme`` (redirects to a file: URL), ``badtypes`` (JSON of the wrong shapes).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    mode = "html"

    def log_message(self, *args):  # keep test output clean
        pass

    def _json(self, data, status: int = 200) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _hostile(self, mode: str) -> bool:
        srv = self.server
        path = self.path.split("?", 1)[0]
        try:
            if mode == "deep":
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
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "1000")
                self.end_headers()
                for _ in range(1000):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(1)
            elif mode in ("ws-hang", "liar"):
                if path.endswith("/channels"):  # accept, read the upgrade, never answer it
                    srv.hung.append(self.connection)  # type: ignore[attr-defined]
                    time.sleep(120)
                elif path == "/api/kernels":
                    self._json([{"id": kid, "name": "python3", "last_activity": "2026-01-01T00:00:00Z",
                                 "execution_state": "idle", "connections": 0}
                                for kid in srv.kernels])  # type: ignore[attr-defined]
                elif path.startswith("/api/kernels/"):
                    kid = path.rsplit("/", 1)[-1]
                    if kid in srv.kernels:  # type: ignore[attr-defined]
                        self._json({"id": kid, "name": "python3", "execution_state": "idle"})
                    else:
                        self._json({"message": "no such kernel"}, 404)
                elif path == "/api/sessions":
                    self._json([])
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
    def __init__(self, mode: str, *, kernels=(), size: int = 600 << 20, user: str = "mallory"):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.mode = mode  # type: ignore[attr-defined]
        self.httpd.kernels = list(kernels)  # type: ignore[attr-defined]
        self.httpd.size = size  # type: ignore[attr-defined]
        self.httpd.user = user  # type: ignore[attr-defined]
        self.httpd.hung = []  # type: ignore[attr-defined]
        self.httpd.deleted = []  # type: ignore[attr-defined]
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHTTP":
        self.thread.start()
        return self

    @property
    def deleted(self) -> list:
        return self.httpd.deleted  # type: ignore[attr-defined]

    def __exit__(self, *exc) -> None:
        for conn in self.httpd.hung:  # type: ignore[attr-defined]
            try:
                conn.close()
            except OSError:
                pass
        self.httpd.shutdown()
        self.httpd.server_close()
