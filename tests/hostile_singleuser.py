"""A hostile single-user server that a real JupyterHub spawns for one user (``c.Spawner.cmd``):
it answers like a Jupyter server, lists the kernel ids, session paths and terminal names the
test writes into its script file (traversal ids among them), says yes to every re-check and
every action, and records every request it receives (method, raw path, Authorization header)
as JSON lines, so a test can see where nbtui's requests went and try each token it was sent.

    python -m tests.hostile_singleuser SCRIPT.json LOG.jsonl

It listens where the hub asks (``JUPYTERHUB_SERVICE_URL``), under the user's prefix.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

T = "2026-01-01T00:00:00.000000Z"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _record(self) -> None:
        srv = self.server
        with srv.lock:  # type: ignore[attr-defined]
            with open(srv.log, "a") as f:  # type: ignore[attr-defined]
                f.write(json.dumps({"method": self.command, "path": self.path,
                                    "auth": self.headers.get("Authorization")}) + "\n")

    def _json(self, data, status: int = 200) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _script(self) -> dict:
        with open(self.server.script) as f:  # type: ignore[attr-defined]
            return json.load(f)

    def _api(self) -> str:
        """The request's path inside the user's prefix, decoded ("" outside it)."""
        raw = urlsplit(self.path).path
        prefix = self.server.prefix  # type: ignore[attr-defined]
        return unquote(raw[len(prefix):]) if raw.startswith(prefix) else ""

    def _answer(self) -> None:
        self._record()
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        script = self._script()
        api = self._api()
        kernels = [{"id": k, "name": "python3", "last_activity": T, "execution_state": "idle", "connections": 0}
                   for k in script["kernels"]]
        if self.command != "GET":  # every action "succeeds"
            if api.startswith("api/sessions"):
                return self._json({"id": "s-new", "path": "x.ipynb", "type": "notebook",
                                   "kernel": {"id": script["kernels"][0], "name": "python3"}}, 201)
            if api.startswith("api/kernels") and api.endswith("/restart"):
                return self._json(kernels[0])
            if api.startswith("api/contents"):
                return self._json({"name": "x.ipynb", "path": "x.ipynb", "type": "notebook"}, 201)
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if api in ("", "api"):
            return self._json({"version": "2.21.1"})
        if api == "api/status":
            return self._json({"started": T, "last_activity": T, "connections": 0, "kernels": len(kernels)})
        if api == "api/kernels":
            return self._json(kernels)
        if api.startswith("api/kernels/"):  # the re-check: whatever is asked exists
            return self._json({**kernels[0], "id": api.removeprefix("api/kernels/")})
        if api == "api/sessions":
            return self._json([{"id": f"s{i}", "path": p, "name": "x", "type": "notebook",
                                "kernel": {"id": script["kernels"][i % len(kernels)], "name": "python3"}}
                               for i, p in enumerate(script["paths"])])
        if api == "api/terminals":
            return self._json([{"name": n, "last_activity": T} for n in script["terminals"]])
        if api.startswith("api/terminals/"):
            return self._json({"name": api.removeprefix("api/terminals/"), "last_activity": T})
        if api == "api/kernelspecs":
            return self._json({"default": "python3", "kernelspecs": {"python3": {
                "name": "python3", "spec": {"display_name": "Python 3", "language": "python", "argv": []}}}})
        if api == "api/me":
            return self._json({"identity": {"username": os.environ.get("JUPYTERHUB_USER", "")}})
        if api.startswith("api/contents"):
            return self._json({"name": "x.ipynb", "path": "x.ipynb", "type": "notebook", "format": "json",
                               "content": {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}})
        return self._json({"message": "not found"}, 404)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _answer


def main() -> None:
    script, log = sys.argv[1], sys.argv[2]
    url = urlsplit(os.environ["JUPYTERHUB_SERVICE_URL"])
    httpd = ThreadingHTTPServer((url.hostname or "127.0.0.1", url.port or 80), Handler)
    httpd.daemon_threads = True
    httpd.script, httpd.log, httpd.lock = script, log, threading.Lock()  # type: ignore[attr-defined]
    httpd.prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", url.path or "/")  # type: ignore[attr-defined]
    httpd.serve_forever()


if __name__ == "__main__":
    main()
