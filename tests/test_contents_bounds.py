"""The contents calls that bring a notebook along are bounded like every call: in bytes (a
huge or endless answer is refused without being held) and in time as a whole (a drip)."""

from __future__ import annotations

import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nbtui.jupyter.rest import TIMEOUT, TOO_BIG, ServerClient, ServerError


class _Hostile(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        mode = self.path.split("/")[-1].split("?")[0]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        try:
            if mode == "declared":  # says a terabyte
                self.send_header("Content-Length", str(10 ** 12))
                self.end_headers()
                self.wfile.write(b"{" * 1000)
            elif mode == "endless":  # no length, never ends
                self.send_header("Connection", "close")
                self.end_headers()
                while True:
                    self.wfile.write(b" " * (1 << 16))
            else:  # drip: a byte every 0.2 s
                self.send_header("Connection", "close")
                self.end_headers()
                while True:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture(scope="module")
def hostile():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("mode, kind", [("declared", TOO_BIG), ("endless", TOO_BIG), ("drip", TIMEOUT)])
def test_contents_is_bounded(hostile, mode, kind):
    async def read():
        async with ServerClient("h", hostile, None, timeout=1.0) as c:
            with pytest.raises(ServerError) as err:
                await c.contents(f"nb/{mode}", max_bytes=1 << 20, timeout=2.0)
            return err.value

    e = asyncio.run(read())
    # A drip (a byte every 0.2 s) never trips a per-read timeout: TIMEOUT means the whole read is bounded.
    assert e.kind == kind and "server h:" in str(e), str(e)
