"""The nbtui server extension (GET /api/nbtui/usage) on real Jupyter servers, read by nbtui
over HTTP; and what nbtui makes of an extension that is absent, old or answers garbage."""

from __future__ import annotations

import pytest

from nbtui.files.config import ServerConfig
from nbtui.service.fleet import Fleet
from nbtui.host import wire
from nbtui.jupyter.rest import ServerClient, ServerError
from tests.conftest import run_nbtui
from tests.jupyter import JupyterServer

MB = 1024**2
NO_EXTENSION = ("--ServerApp.jpserver_extensions=nbtui=False",)


def remote_config(server, name="far") -> ServerConfig:
    # No pid: nbtui does not know the server's process, as for a server on another host.
    return ServerConfig(name=name, url=server.url, token_source="discovered", token=server.token, timeout=10.0)


@pytest.fixture(scope="module")
def ext_server(tmp_path_factory):
    server = JupyterServer(tmp_path_factory.mktemp("jupyter-ext"), name="ext").start()
    server.write_notebook("train.ipynb")
    session = server.create_session("train.ipynb")
    server.kid = session["kernel"]["id"]
    server.run_code(server.kid, "_b = bytearray(80 * 1024 * 1024)")
    yield server
    server.stop()


async def test_endpoint_reports_each_kernel_tree(ext_server):
    async with ServerClient("ext", ext_server.url, ext_server.token) as client:
        data = await client.nbtui_usage()
    assert data["nbtui_usage"] == wire.FORMAT
    usage, devices, note = wire.load("ext", data)
    u = usage[f"ext:{ext_server.kid}"]
    assert u.source == "extension"
    assert u.pid == ext_server.kernel_pid(ext_server.kid)
    assert u.memory_bytes >= 80 * MB
    assert u.cpu_percent is not None  # measured over a short interval on first sight
    assert u.host
    assert u.gpu_memory_bytes is None and devices == () and note  # no GPU on this host, and why


async def test_endpoint_needs_the_servers_own_authentication(ext_server):
    async with ServerClient("ext", ext_server.url, None) as client:
        with pytest.raises(ServerError) as e:
            await client.nbtui_usage()
    assert e.value.kind == "auth-failed"
    async with ServerClient("ext", ext_server.url, "wrong-token") as client:
        with pytest.raises(ServerError) as e:
            await client.nbtui_usage()
    assert e.value.kind == "auth-failed"


async def test_fleet_uses_the_extension_for_kernels_not_on_this_host(ext_server):
    # No local host view: as from a laptop reading a GPU host.
    async with Fleet([remote_config(ext_server)], host=None) as fleet:
        snap = await fleet.snapshot()
    k = next(k for k in snap.kernels if k.kernel_id == ext_server.kid)
    assert k.usage is not None and k.usage.source == "extension"
    assert k.usage.pid == ext_server.kernel_pid(ext_server.kid)
    assert k.usage.memory_bytes >= 80 * MB
    assert snap.servers[0].usage_source == "extension"
    assert snap.servers[0].usage_note is None


def test_servers_test_names_the_usage_source(ext_server, config_dir):
    import os

    os.environ["NBTUI_TEST_TOKEN_EXT"] = ext_server.token
    r = run_nbtui("servers", "add", "ext", ext_server.url, "--token-env", "NBTUI_TEST_TOKEN_EXT")
    assert r.returncode == 0, r.stderr
    r = run_nbtui("servers", "test", "ext", "--no-discover")
    assert r.returncode == 0, r.stderr
    # Its kernel runs on this host: the local view wins.
    assert "usage: local" in r.stdout
    assert "GPU: " in r.stdout  # one line saying why there are no GPU figures


def test_extension_disabled_means_unknown_with_a_reason(tmp_path_factory):
    # Disabled on this server's command line (which wins over the config.d file), not with
    # `jupyter server extension disable nbtui`, which would write into the shared environment.
    server = JupyterServer(tmp_path_factory.mktemp("jupyter-noext"), name="noext", extra_args=NO_EXTENSION)
    server.start()
    try:
        kid = server.start_kernel()

        async def read():
            async with Fleet([remote_config(server)], host=None) as fleet:
                return await fleet.snapshot()

        import asyncio

        snap = asyncio.run(read())
        k = next(k for k in snap.kernels if k.kernel_id == kid)
        assert k.usage is None
        assert snap.servers[0].usage_source is None
        assert "no nbtui extension" in snap.servers[0].usage_note
        # Without the extension the server is as jupyter_server makes it: Nagle's algorithm on.
        assert asyncio.run(_kernel_websocket_nodelay(server, kid)) == 0
    finally:
        server.stop()


async def test_the_extension_turns_nagle_off_on_kernel_websockets(ext_server):
    """Behind a proxy a reply's later frames would wait for its delayed ACK (~40 ms a round
    trip, bench/hub.py): the server's end of a kernel websocket has TCP_NODELAY set."""
    assert await _kernel_websocket_nodelay(ext_server, ext_server.kid) == 1


def test_the_nagle_change_can_be_turned_off(tmp_path_factory):
    import asyncio

    server = JupyterServer(tmp_path_factory.mktemp("jupyter-nagle"), name="nagle",
                           extra_args=("--NbtuiExtension.kernel_websocket_nodelay=False",)).start()
    try:
        kid = server.start_kernel()
        assert asyncio.run(_kernel_websocket_nodelay(server, kid)) == 0
    finally:
        server.stop()


async def _kernel_websocket_nodelay(server, kid: str) -> int:
    """TCP_NODELAY on the server's end of a kernel websocket nbtui opened: the server's
    socket is copied into this process (pidfd_getfd, Linux >= 5.6, as root or its owner)."""
    import ctypes
    import os
    import socket

    import psutil

    from nbtui.jupyter.channels import WebsocketChannels
    async with ServerClient("s", server.url, server.token) as client:
        async with WebsocketChannels(client, kid) as ch:
            await ch.kernel_info(timeout=30)
            port = ch._ws.transport.get_extra_info("sockname")[1]
            conn = next(c for c in psutil.Process(server.proc.pid).net_connections(kind="tcp")
                        if c.raddr and c.raddr.port == port)
            libc = ctypes.CDLL(None, use_errno=True)
            pidfd = os.pidfd_open(server.proc.pid)
            try:
                fd = libc.syscall(438, pidfd, conn.fd, 0)  # pidfd_getfd
                if fd < 0:
                    pytest.skip(f"pidfd_getfd cannot copy the server's socket here: "
                                f"{os.strerror(ctypes.get_errno())}")
            finally:
                os.close(pidfd)
            with socket.socket(fileno=fd) as copy:
                return copy.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


# -- garbage in, unknown out ----------------------------------------------------------------------


GOOD = {"nbtui_usage": 1, "version": "0.1.0", "hostname": "gpu1", "gpu_note": None,
        "kernels": {"k1": {"pid": 10, "pids": [10, 11], "cpu_percent": 12.5, "memory_bytes": 100,
                           "gpu_memory_bytes": 2048, "gpu_percent": 3,
                           "gpus": [{"index": 0, "uuid": "GPU-1", "memory_bytes": 2048, "sm_percent": 3}]}},
        "gpus": [{"index": 0, "uuid": "GPU-1", "name": "H100", "memory_used": 5, "memory_total": 80,
                  "utilization": 40, "idle_kernel_memory": 0}]}


def test_wire_reads_a_good_answer():
    usage, devices, note = wire.load("gpu1", GOOD)
    u = usage["gpu1:k1"]
    assert (u.pid, u.pids, u.cpu_percent, u.memory_bytes, u.gpu_memory_bytes, u.gpu_percent) == (10, (10, 11), 12.5, 100, 2048, 3.0)
    assert u.gpus[0].uuid == "GPU-1" and u.host == "gpu1"
    assert devices[0].host == "gpu1" and devices[0].memory_total == 80


@pytest.mark.parametrize("body", [None, [], "text", {"kernels": {}}, {"nbtui_usage": "1", "kernels": {}},
                                  {"nbtui_usage": 1, "kernels": []}, {"nbtui_usage": True, "kernels": {}}])
def test_wire_refuses_what_is_not_a_usage_answer(body):
    with pytest.raises(wire.WireError):
        wire.load("s", body)


def test_wire_refuses_a_newer_format_with_a_hint():
    with pytest.raises(wire.WireError, match="upgrade nbtui"):
        wire.load("s", dict(GOOD, nbtui_usage=99))


def test_wire_fields_of_the_wrong_type_are_unknown_never_made_up():
    body = {"nbtui_usage": 1, "hostname": 7, "gpus": "no", "kernels": {
        "k1": {"pid": 10, "cpu_percent": "lots", "memory_bytes": -5, "gpu_memory_bytes": True,
               "gpu_percent": float("nan"), "gpus": [{"index": "0"}, 3], "pids": "10"},
        "k2": {"pid": None, "note": "kernel process not found on the server's host"},
        "k3": "garbage",
        "k4": {"pid": "10"},
    }}
    usage, devices, note = wire.load("s", body)
    assert list(usage) == ["s:k1"]
    u = usage["s:k1"]
    assert (u.cpu_percent, u.memory_bytes, u.gpu_memory_bytes, u.gpu_percent, u.gpus, u.pids, u.host) == (
        None, None, None, None, (), (), None)
    assert devices == () and note is None



async def test_server_named_by_a_host_name_gets_the_extension_and_local_still_wins(jupyter_factory):
    """A server nbtui must treat as remote (no PID, a host name rather than a loopback
    address): its extension is read alongside its kernels; where the kernel is found on
    this host after all (kernel ids, never host names, decide), local wins."""
    import socket

    from nbtui.host.local import LocalHost
    name = socket.gethostname()
    try:
        if socket.gethostbyname(name) != "127.0.0.1":
            pytest.skip("this host's name does not resolve to 127.0.0.1")
    except OSError:
        pytest.skip("this host's name does not resolve")
    # Requests that name the host (not localhost) are refused unless remote access is allowed.
    jupyter = jupyter_factory("named", extra_args=("--ServerApp.allow_remote_access=True",))
    kid = jupyter.start_kernel()
    far = ServerConfig(name="named", url=f"http://{name}:{jupyter.port}/", token_source="discovered",
                       token=jupyter.token, timeout=10.0, insecure_http=True)
    async with Fleet([far], host=None) as fleet:
        snap = await fleet.snapshot()
    # A name that resolves to loopback addresses only counts as loopback (issue 10): the
    # server is local, yet its kernels are not measured without a host view, so the
    # extension is asked for them.
    assert snap.servers[0].ok and snap.servers[0].local
    assert next(k for k in snap.kernels if k.kernel_id == kid).usage.source == "extension"
    async with Fleet([far], host=LocalHost()) as fleet:
        snap = await fleet.snapshot()
    u = next(k for k in snap.kernels if k.kernel_id == kid).usage
    assert u.source == "local" and u.pid == jupyter.kernel_pid(kid)
    assert snap.servers[0].usage_source == "local"
