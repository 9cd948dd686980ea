"""A JupyterHub-shaped HTTP server on loopback with many users, for what a real hub cannot
show on 2 cores: 200 users' servers (a real one would spawn 200 jupyter_servers).

It answers the hub API nbtui uses (``/hub/api``, ``/hub/api/user``, ``/hub/api/users`` and
``/hub/api/proxy`` paginated ``page`` items at a time, following ``offset``) and, at each
user's internal target (this same server, ``/user/NAME/``), a single-user server's REST API
with one kernel, which answers only a token minted for that user's server through
``POST /hub/api/users/NAME/tokens`` (as a real single-user server would: never the hub's
token; refused ones are counted in ``refused``). It counts the TCP connections open at once (``max_open``) and the offsets
each list was asked for (``offsets``), also at ``/_stats`` when it runs in a process of its
own (``python -m tests.fakehub USERS PAGE``: its URL on the first line of stdout), so its
threads do not compete with the client measured.
"""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

T = "2026-12-01T10:00:00.000000Z"
SCOPES = ["list:users", "read:users", "read:servers", "admin:server_state", "servers", "tokens", "proxy"]


def kernel_id(i: int) -> str:
    return f"{i:08x}-0000-4000-8000-000000000000"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client's pool reuses its sockets
    # An answer goes out at once, as tornado (a hub, jupyter_server) sends it: with Nagle's
    # algorithm on, the body written after the headers waits for the client's delayed ACK
    # (~40 ms a request on loopback), and every client measured here would wait on that.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def _json(self, data, status: int = 200) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _page(self, what: str, items: list, query: dict) -> None:
        srv: FakeHub = self.server  # type: ignore[assignment]
        offset = int(query.get("offset", ["0"])[0])
        with srv.lock:
            srv.offsets.setdefault(what, []).append(offset)
        page = items[offset:offset + srv.page]
        nxt = offset + srv.page
        more = {"offset": nxt, "limit": srv.page, "url": f"/hub/api/{what}?offset={nxt}"} if nxt < len(items) else None
        if what == "proxy":
            data = {"items": dict(page), "_pagination": {"offset": offset, "limit": srv.page, "total": len(items),
                                                        "next": more}}
        else:
            data = {"items": page, "_pagination": {"offset": offset, "limit": srv.page, "total": len(items),
                                                  "next": more}}
        self._json(data)

    def do_GET(self):
        srv: FakeHub = self.server  # type: ignore[assignment]
        parts = urlsplit(self.path)
        path, query = parts.path, parse_qs(parts.query)
        if path == "/hub/api":
            return self._json({"version": "5.2.1"})
        if path == "/_stats":  # for a test running this hub in a process of its own
            with srv.lock:
                return self._json({"max_open": srv.max_open, "offsets": srv.offsets, "mints": srv.mints,
                                   "revoked": srv.revoked, "refused": srv.refused, "asked": srv.asked})
        if path == "/hub/api/user":
            return self._json({"kind": "service", "name": "nbtui", "scopes": SCOPES})
        if path == "/hub/api/users":
            with srv.lock:
                failing, srv.failing = srv.failing > 0, max(srv.failing - 1, 0)
            if failing and srv.failing_hangs:
                srv.release.wait(30)  # (released by the test)
            if failing:
                return self._json({"message": "Bad Gateway"}, 502)
            return self._page("users", srv.users(), query)
        if path == "/hub/api/proxy":
            return self._page("proxy", [(f"/user/{n}/", {"target": srv.url.rstrip("/")}) for n in srv.names], query)
        if path.startswith("/user/"):
            _, _, name, *rest = path.split("/", 3)
            api = "/" + (rest[0] if rest else "")
            if name not in srv.names:
                return self._json({"message": "no such user"}, 404)
            if (name in srv.refuse_all  # a hostile user's server: it says no to every token
                    or self.headers.get("Authorization", "").removeprefix("token ") not in srv.minted.get(name, ())):
                with srv.lock:
                    srv.refused += 1
                return self._json({"message": "token refused"}, 403)
            i = srv.names.index(name)
            with srv.lock:
                srv.asked[api] = srv.asked.get(api, 0) + 1
            if api == "/api/kernels":
                return self._json([{"id": kernel_id(i), "name": "python3", "last_activity": T,
                                    "execution_state": "idle", "connections": 0}])
            if api == "/api/sessions" and name in srv.notebooks:
                path = srv.notebooks[name]
                return self._json([{"id": f"s{i}", "path": path, "name": path, "type": "notebook",
                                    "kernel": {"id": kernel_id(i), "name": "python3", "last_activity": T,
                                               "execution_state": "idle", "connections": 0}}])
            if api.startswith("/api/contents"):
                with srv.lock:
                    srv.contents_asked += 1
                srv.release.wait(30)
                return self._json({"message": "not found"}, 404)
            if api in ("/api/sessions", "/api/terminals"):
                return self._json([])
            if api == "/api/me":
                return self._json({"identity": {"username": name}})
            if api in ("/api", "/api/"):
                return self._json({"version": "2.17.0"})
            return self._json({"message": "not found"}, 404)  # as jupyter_server: no nbtui extension here
        return self._json({"message": "not found"}, 404)


    def do_POST(self):
        srv: FakeHub = self.server  # type: ignore[assignment]
        parts = urlsplit(self.path).path.split("/")  # /hub/api/users/NAME/tokens
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if len(parts) == 6 and parts[1:4] == ["hub", "api", "users"] and parts[5] == "tokens" and parts[4] in srv.names:
            token = secrets.token_hex(16)
            with srv.lock:
                srv.minted.setdefault(parts[4], set()).add(token)
                srv.mints += 1
                srv.mints_by[parts[4]] = srv.mints_by.get(parts[4], 0) + 1
                token_id = f"a{srv.mints}"
                srv.ids[token_id] = (parts[4], token)
            return self._json({"token": token, "id": token_id, "user": parts[4]}, 201)
        return self._json({"message": "not found"}, 404)

    def do_DELETE(self):
        srv: FakeHub = self.server  # type: ignore[assignment]
        parts = urlsplit(self.path).path.split("/")  # /hub/api/users/NAME/tokens/ID
        with srv.lock:
            srv.revoked += 1
            name, token = srv.ids.pop(parts[-1], ("", ""))
            srv.minted.get(name, set()).discard(token)  # a revoked token opens nothing
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


class FakeHub(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many connects at once must not overflow the listen backlog

    def __init__(self, users: int = 200, page: int = 50):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.names = [f"u{i:03d}" for i in range(users)]
        self.page = page
        self.lock = threading.Lock()
        self.open = 0
        self.max_open = 0
        self.offsets: dict[str, list[int]] = {}
        self.minted: dict[str, set[str]] = {}  # user -> the tokens minted for her server
        self.mints = self.revoked = self.refused = 0
        self.asked: dict[str, int] = {}  # the users' servers' API paths asked (token accepted), by path
        self.started = T  # every user's server's start (a test moves it: every server started again)
        self.mints_by: dict[str, int] = {}  # user -> tokens minted for her server
        self.ids: dict[str, tuple[str, str]] = {}  # token id -> (user, token), until revoked
        self.refuse_all: set[str] = set()  # users whose server refuses every token (hostile)
        self.failing = 0  # the next listings of users that fail with a 502 (its proxy, a restart)
        self.failing_hangs = False  # ... or hang (until ``release``) first
        self.notebooks: dict[str, str] = {}  # user -> the notebook path of her kernel's session
        self.contents_asked = 0  # /api/contents requests to users' servers, each held until released
        self.release = threading.Event()  # (a test sets it: every held contents request answers 404)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/"
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def users(self) -> list:
        return [{"name": n, "kind": "user", "admin": False, "last_activity": T,
                 "servers": {"": {"name": "", "ready": True, "pending": None, "url": f"/user/{n}/",
                                  "started": self.started, "last_activity": T, "state": {}}}}
                for n in self.names]

    def process_request_thread(self, request, client_address):  # one thread per TCP connection
        with self.lock:
            self.open += 1
            self.max_open = max(self.max_open, self.open)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.lock:
                self.open -= 1

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


if __name__ == "__main__":
    import sys

    hub = FakeHub(int(sys.argv[1]), int(sys.argv[2]))
    print(hub.url, flush=True)
    hub.serve_forever()
