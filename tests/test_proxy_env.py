"""A proxy named by the environment (``http_proxy``, ``no_proxy``) takes a remote server's
requests, never a server's on this machine. A real HTTP proxy on loopback records what it is
asked and answers for the server. (A rewrite of the request path must keep this, and what httpx
does besides: a proxy without a scheme, ``no_proxy=*`` among others, IPv6 literals, and no
proxy where a transport is given, a hub's shared one.)"""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from nbtui.jupyter.rest import ServerClient, ServerError

FAR = "http://jupyter.nbtui-test.invalid:8888/"  # resolves nowhere: reached through the proxy or not at all


class _Proxy(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.asked.append(self.path)  # type: ignore[attr-defined]  # a proxy is asked the whole URL
        body = json.dumps([]).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def proxy():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    httpd.asked = []  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def _kernels(url: str):
    async def read():
        async with ServerClient("far", url, None, timeout=5.0) as c:
            return await c.kernels()
    return asyncio.run(read())


def _clear(monkeypatch):
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


def test_a_remote_server_is_read_through_the_environments_proxy(proxy, monkeypatch):
    _clear(monkeypatch)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.server_address[1]}")
    assert _kernels(FAR) == []
    assert proxy.asked == [FAR + "api/kernels"]


def test_no_proxy_and_this_machine_bypass_the_proxy(proxy, monkeypatch):
    _clear(monkeypatch)
    port = proxy.server_address[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("NO_PROXY", "nbtui-test.invalid")
    with pytest.raises(ServerError) as e:
        _kernels(FAR)
    assert e.value.kind == "unreachable"
    # a server on loopback: asked itself (here the proxy's own port, as a server: a path, not a URL)
    monkeypatch.delenv("NO_PROXY")
    assert _kernels(f"http://127.0.0.1:{port}/") == []
    assert proxy.asked == ["/api/kernels"]
