"""On a hub the person is the hub user, not the OS user every single-user server runs as
(issue 24: the local spawner as root made every hub kernel `user: root` in `ls --json`, the
TUI and the exporter). A real JupyterHub whose users' servers all run as this test's user."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import re

import pytest

from nbtui.files import config as config_mod
from nbtui.service.fleet import Fleet
from nbtui.host.local import LocalHost
from tests.conftest import run_nbtui
from tests.hub import Hub

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    h = Hub(tmp_path_factory.mktemp("hub-users"), users=("alice", "bob"))
    h.start()
    try:
        for user in h.users:
            h.spawn(user)
        for user in h.users:
            h.wait_ready(user)
        h.kernels = {u: h.start_kernel(u) for u in h.users}
        h.terminals = {u: h.user_api("POST", u, "api/terminals").json()["name"] for u in h.users}
        yield h
    finally:
        h.stop()


def test_hub_kernels_and_terminals_carry_the_hub_user_and_the_os_owner_apart(hub, config_dir):
    os.environ["NBTUI_TEST_HUB_USERS"] = hub.token
    r = run_nbtui("servers", "add", "hub", hub.url, "--token-env", "NBTUI_TEST_HUB_USERS", "--hub")
    assert r.returncode == 0, r.stderr
    me = getpass.getuser()  # the spawner runs every user's server as the hub's own OS user

    r = run_nbtui("ls", "--json", "--no-discover")
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(r.stdout)
    kernels = {k["kernel_id"]: k for k in data["kernels"]}
    for user in hub.users:
        k = kernels[hub.kernels[user]]
        assert k["server"] == f"hub/{user}" and k["usage_source"] == "local", k
        assert (k["user"], k["process_user"]) == (user, me)
    terminals = {(t["server"], t["name"]): t for t in data["terminals"]}
    for user in hub.users:
        t = terminals[(f"hub/{user}", hub.terminals[user])]
        assert (t["user"], t["process_user"]) == (user, me), t

    # The table says the person too.
    r = run_nbtui("ls", "--no-discover", env={"COLUMNS": "160"})
    head, *rows = r.stdout.splitlines()
    at = head.index("USER")
    for user in hub.users:
        row = next(x for x in rows if hub.kernels[user][:8] in x)
        assert row[at:].split()[0] == user, row

    # The exporter's kernel series and the TUI's details, from the same snapshot.
    from nbtui.exporter.metrics import KernelLines, _kernel_families
    from nbtui.tui.widgets.detail import describe
    config = config_mod.load()

    async def read():
        fleet = Fleet.from_config(config, discover_local=False, host=LocalHost(config.settings))
        async with fleet:
            return await fleet.snapshot()

    snap = asyncio.run(read())
    text = KernelLines().render(snap.kernels)
    for user in hub.users:
        assert any(f'kernel_id="{hub.kernels[user]}"' in line and f',user="{user}"' in line
                   and f'process_user="{me}"' in line for line in text.splitlines()), text
    info = next(f for f in _kernel_families(snap.kernels) if f.name == "nbtui_kernel_info")
    assert {(s.labels["user"], s.labels["process_user"]) for s in info.samples} == {(u, me) for u in hub.users}
    alice = next(k for k in snap.kernels if k.kernel_id == hub.kernels["alice"])
    details = describe(alice, next(s for s in snap.servers if s.name == "hub/alice")).plain
    assert re.search(r"^ *user +alice$", details, re.M) and re.search(rf"^ *os user +{me}$", details, re.M), details
