"""A server on this machine keeps its connection between a refresh's paced requests: the TUI
asks sessions, terminals and folders every 10 s to a minute, and httpx drops a connection
idle for 5 s, so each of those opened a new one. A connection the server closed meanwhile is
never reused for a request."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nbtui.jupyter.rest import ServerClient


class _Jupyter(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as jupyter_server's tornado does

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        self.server.connections += 1  # type: ignore[attr-defined]  # one handler per connection

    def do_GET(self):
        close = self.server.close_after  # type: ignore[attr-defined]  # as the request came (not as the client goes on)
        body = json.dumps([]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if close:  # then closes it, unannounced (as an idle timeout does)
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    connections = 0
    close_after = False

    def shutdown_request(self, request):
        super().shutdown_request(request)  # the connection's socket closed: its FIN is on its way
        self.closed.set()


@pytest.fixture
def server():
    httpd = _Server(("127.0.0.1", 0), _Jupyter)
    httpd.closed = threading.Event()
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_local_servers_connection_outlives_httpxs_five_seconds_and_a_closed_one_is_not_reused(server):
    url = f"http://127.0.0.1:{server.server_address[1]}/"

    async def reads():
        async with ServerClient("local", url, None, timeout=5.0) as c:
            assert await c.kernels() == []
            await asyncio.sleep(5.5)  # idle past httpx's own keep-alive (5 s): the gap being tested
            assert await c.kernels() == []
            kept = server.connections
            server.close_after = True  # the server now closes a connection once it answered on it
            assert await c.kernels() == []  # (on the kept one, which the server then closes)
            assert await asyncio.to_thread(server.closed.wait, 10)
            assert await c.kernels() == []  # on a new one: the closed one is not reused
            return kept

    assert asyncio.run(reads()) == 1
    assert server.connections == 2
