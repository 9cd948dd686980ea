"""What a server is (its version, whether it has terminals, whether it has the nbtui
extension) is asked once while it runs, not at every refresh; a server that went away
and came back (restarted, perhaps with terminals on now) is asked again."""

from __future__ import annotations

import re
from typing import Callable

from nbtui.files.config import ServerConfig, Settings
from nbtui.service.fleet import Fleet
from tests.jupyter import JupyterServer


def _gets(server: JupyterServer, path: str) -> int:
    """How many GETs of ``path`` the server's DEBUG access log holds (one line a request)."""
    text = server.log_path.read_text(errors="replace")
    return len(re.findall(rf"\d{{3}} GET {re.escape(path)}(?:\?\S*)? \([^)]*\) [\d.]+ms", text))


async def test_terminals_off_is_asked_once_and_again_after_a_restart(
        jupyter_factory: Callable[..., JupyterServer]) -> None:
    server = jupyter_factory("probes", extra_args=("--ServerApp.log_level=DEBUG",
                                                   "--ServerApp.terminals_enabled=False"))
    config = ServerConfig(name="p", url=server.url, token_source="discovered", token=server.token, timeout=10.0)
    async with Fleet([config], Settings(timeout=10.0)) as fleet:
        for _ in range(3):
            snap = await fleet.snapshot(hold_back=5.0)
            assert snap.servers[0].ok and snap.terminals == ()
        assert _gets(server, "/api/terminals") == 1
        assert _gets(server, "/api") == 1  # its version

        server.stop()
        snap = await fleet.snapshot(hold_back=5.0)
        assert not snap.servers[0].ok
        server.extra_args = ("--ServerApp.log_level=DEBUG",)  # back, with terminals on
        server.start()
        assert server.url == config.url, "the restarted server took another port: nothing to compare"
        name = server.api("POST", "api/terminals").json()["name"]
        try:
            snap = await fleet.snapshot(hold_back=5.0)
            assert snap.servers[0].ok and [t.name for t in snap.terminals] == [name]
        finally:
            server.api("DELETE", f"api/terminals/{name}")
