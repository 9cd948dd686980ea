"""Many Jupyter-shaped servers on loopback, in a process of their own, for the scale benchmarks
(a real jupyter_server per 5,000 kernels is out of reach on 2 cores).

``python -m bench.fakefleet SERVERS PER_SERVER [CHANGE]`` prints the servers' ports as one JSON
line, then serves until its stdin closes. Each server answers, with any token or none, what a
stock jupyter_server answers a reader: ``/api``, ``/api/status``, ``/api/me``, ``/api/kernels``
(``PER_SERVER`` kernels), ``/api/sessions`` (four kernels in five have a notebook session, the
session's ``kernel`` the full kernel model, as jupyter_server sends it), ``/api/terminals``
(none), ``/api/kernelspecs``, and ``/api/contents/PATH`` for each notebook and each folder
(a folder's model lists its notebooks; a user's folder, its projects' folders), 404 for anything else. With ``CHANGE`` (a share, e.g.
0.01), each ``GET /api/kernels`` first changes that share of the server's kernels (state
flipped, ``last_activity`` now): a fleet where 1 % of the kernels change between refreshes.
``GET /_stats`` counts the kernel listings served (``kernels_gets``) and when each came
(``times``, ``time.monotonic()``) and every request by its kind (``requests``: "kernels",
"sessions", "contents", ...), for the benchmark.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

FOLDERS = 40  # distinct notebook folders per server (users' projects)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(t))


class FakeServer:
    """One server's data; its JSON bodies encoded once, again only after a change."""

    def __init__(self, s: int, n: int, change: float, rng: random.Random):
        now = time.time()
        self.rng, self.change, self.lock = rng, change, threading.Lock()
        self.kernels_gets = 0
        self.requests: dict[str, int] = {}  # requests served, by the part after /api/ ("contents", ...)
        self.times: list[float] = []  # time.monotonic() of each kernel listing (the same clock in every process)
        self.kernels = []
        self.paths: dict[str, str] = {}  # kernel id -> notebook path
        for i in range(n):
            kid = f"{s:04x}{i:04x}-{rng.getrandbits(16):04x}-4000-8000-{rng.getrandbits(48):012x}"
            self.kernels.append({"id": kid, "name": "python3", "last_activity": _iso(now - rng.randint(0, 5 * 86400)),
                                 "execution_state": rng.choice(["idle", "idle", "idle", "busy"]),
                                 "connections": rng.randint(0, 2)})
            if i % 5:
                self.paths[kid] = f"user{i % FOLDERS}/project-{i % 7}/notebook-{i}.ipynb"
        self.contents: dict[str, bytes] = {}
        folders: dict[str, list] = {}
        modified = _iso(now - 86400)
        for path in self.paths.values():
            name = path.rsplit("/", 1)[-1]
            model = {"name": name, "path": path, "type": "notebook", "created": modified,
                     "last_modified": modified, "content": None, "format": None, "mimetype": None,
                     "size": 2048, "writable": True, "hash": None, "hash_algorithm": None}
            self.contents[path] = json.dumps(model).encode()
            folders.setdefault(path.rsplit("/", 1)[0], []).append(model)
        parents: dict[str, list] = {}  # each user's folder lists its projects' folders, as a server does
        for folder in folders:
            parent, _, name = folder.rpartition("/")
            parents.setdefault(parent, []).append({
                "name": name, "path": folder, "type": "directory", "created": modified, "last_modified": modified,
                "content": None, "format": None, "mimetype": None, "size": None, "writable": True, "hash": None,
                "hash_algorithm": None})
        for folder, items in [*folders.items(), *parents.items()]:
            self.contents[folder] = json.dumps({
                "name": folder.rsplit("/", 1)[-1], "path": folder, "type": "directory", "created": modified,
                "last_modified": modified, "content": items, "format": "json", "mimetype": None, "size": None,
                "writable": True, "hash": None, "hash_algorithm": None}).encode()
        self.static = {"/api": b'{"version": "2.21.1"}', "/api/terminals": b"[]",
                       "/api/status": json.dumps({"started": _iso(now), "last_activity": _iso(now),
                                                  "connections": 0, "kernels": n}).encode(),
                       "/api/me": b'{"identity": {"username": "bench"}, "permissions": {}}',
                       "/api/kernelspecs": b'{"default": "python3", "kernelspecs": {}}'}
        self._encode()

    def _encode(self) -> None:
        self.kernels_body = json.dumps(self.kernels).encode()
        self.sessions_body = json.dumps([
            {"id": f"s-{k['id']}", "path": self.paths[k["id"]], "name": self.paths[k["id"]].rsplit("/", 1)[-1],
             "type": "notebook", "kernel": k, "notebook": {"path": self.paths[k["id"]],
                                                           "name": self.paths[k["id"]].rsplit("/", 1)[-1]}}
            for k in self.kernels if k["id"] in self.paths]).encode()

    def list_kernels(self) -> bytes:
        with self.lock:
            self.kernels_gets += 1
            self.times.append(time.monotonic())
            if self.change:
                share = len(self.kernels) * self.change
                count = int(share) + (self.rng.random() < share - int(share))
                now = _iso(time.time())
                for k in self.rng.sample(self.kernels, count):
                    k["execution_state"] = "busy" if k["execution_state"] == "idle" else "idle"
                    k["last_activity"] = now
                self._encode()
            return self.kernels_body

    def answer(self, path: str) -> bytes | None:
        if path != "/_stats":
            kind = path.split("/")[2] if path.startswith("/api/") else path
            with self.lock:
                self.requests[kind] = self.requests.get(kind, 0) + 1
        if path == "/api/kernels":
            return self.list_kernels()
        if path == "/api/sessions":
            with self.lock:
                return self.sessions_body
        if path == "/_stats":
            with self.lock:
                return json.dumps({"kernels_gets": self.kernels_gets, "times": self.times,
                                   "requests": self.requests}).encode()
        if path.startswith("/api/contents/"):
            return self.contents.get(unquote(path[len("/api/contents/"):]).strip("/"))
        return self.static.get(path.rstrip("/") or path)


def _handler(server: FakeServer) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as jupyter_server (tornado) does
        # An answer goes out at once, as tornado (a hub, jupyter_server) sends it: with Nagle's
        # algorithm on, the body written after the headers waits for the client's delayed ACK
        # (~40 ms a request on loopback), and every client measured here would wait on that.
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def do_GET(self):
            body = server.answer(urlsplit(self.path).path)
            self.send_response(200 if body is not None else 404)
            body = body if body is not None else b'{"message": "not found"}'
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request, client_address) -> None:
        """A client that ends with its keep-alive socket open resets it: nothing to report."""
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


def serve(n_servers: int, per_server: int, change: float = 0.0) -> list[int]:
    """Start the servers on daemon threads; their ports."""
    rng = random.Random(7)
    ports = []
    for s in range(n_servers):
        httpd = _Quiet(("127.0.0.1", 0), _handler(FakeServer(s, per_server, change, rng)))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        ports.append(httpd.server_address[1])
    return ports


if __name__ == "__main__":
    ports = serve(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 0.0)
    print(json.dumps(ports), flush=True)
    sys.stdin.read()  # until the benchmark closes it
