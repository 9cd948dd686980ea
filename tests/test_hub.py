"""A real JupyterHub (DummyAuthenticator, SimpleLocalProcessSpawner, the npm proxy): every
user's servers and kernels from one service token, read without keeping them alive."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import signal
import time

import httpx
import pytest

from nbtui.files import config as config_mod
from nbtui.service.fleet import Fleet
from tests.conftest import run_nbtui
from tests.hub import Hub
from tests.jupyter import wait_for

pytestmark = pytest.mark.timeout(240)

RO_TOKEN = "ro" + "0" * 46
INTERVAL = 2  # the hub's last_activity_interval here (seconds)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """One hub for the module: alice's default server (one kernel) and bob's named server
    gpu1 (one kernel); one user per page, so every list needs pagination."""
    h = Hub(tmp_path_factory.mktemp("hub"), users=("alice", "bob", "carol"), page_limit=1,
            activity_interval=INTERVAL,
            services={"nbtui-ro": {"token": RO_TOKEN, "scopes": ["list:users", "read:users"]}})
    h.start()
    try:
        h.spawn("alice")
        h.spawn("bob", "gpu1")
        h.wait_ready("alice")
        h.wait_ready("bob", "gpu1")
        h.targets = {}
        for user, server in (("alice", ""), ("bob", "gpu1")):
            path = f"/user/{user}/" + (f"{server}/" if server else "")
            h.targets[user] = _target(h, path)
        # Kernels started at the internal targets: the proxy has seen nothing of them.
        h.kernels = {u: _direct(h, u, "POST", "api/kernels", json={"name": "python3"}).json()["id"]
                     for u in ("alice", "bob")}
        for u, kid in h.kernels.items():
            h.wait_kernel(u, kid)
        yield h
    finally:
        h.stop()


def _target(h: Hub, path: str) -> str:
    items = []
    offset = 0
    while True:
        r = h.api("GET", f"proxy?offset={offset}", headers={"Accept": "application/jupyterhub-pagination+json"})
        data = r.json()
        items += list(data["items"].items())
        nxt = data["_pagination"]["next"]
        if not nxt:
            break
        offset = nxt["offset"]
    return dict(items)[path]["target"] + path


def _direct(h: Hub, user: str, method: str, path: str, **kw) -> httpx.Response:
    sep = "&" if "?" in path else "?"
    r = httpx.request(method, h.targets[user] + path + sep + "no_track_activity=1", headers=h.headers,
                      timeout=30, **kw)
    r.raise_for_status()
    return r


def _add_hub(hub: Hub, name: str = "hub", token: str | None = None, *extra: str):
    var = f"NBTUI_TEST_HUB_{name.upper().replace('-', '_')}"
    os.environ[var] = token or hub.token
    r = run_nbtui("servers", "add", name, hub.url, "--token-env", var, "--hub", *extra)
    assert r.returncode == 0, r.stderr
    return r


def _ls(*extra: str, env=None, code: int | None = 0) -> dict:
    r = run_nbtui("ls", "--json", *extra, env=env)
    assert code is None or r.returncode == code, r.stdout + r.stderr
    return json.loads(r.stdout)


def _activity(hub: Hub) -> dict:
    """Every last_activity the hub keeps for the two users and their servers."""
    out = {}
    for user, server in (("alice", ""), ("bob", "gpu1")):
        model = hub.user(user)
        out[user] = model["last_activity"]
        out[f"{user}/{server}"] = model["servers"][server]["last_activity"]
    return out


def test_one_token_lists_every_users_servers_and_kernels(hub, config_dir):
    # A hub URL added as a plain server is offered as a hub.
    r = run_nbtui("servers", "add", "plain", hub.url, "--no-token")
    assert r.returncode == 0 and "answers as JupyterHub" in r.stdout and "--hub" in r.stdout
    run_nbtui("servers", "remove", "plain")
    _add_hub(hub)
    data = _ls("--no-discover")
    by_name = {s["name"]: s for s in data["servers"]}
    assert set(by_name) == {"hub", "hub/alice", "hub/bob/gpu1"}  # carol has no server
    assert by_name["hub"]["source"] == "hub" and by_name["hub"]["version"].startswith("6.")
    alice, bob = by_name["hub/alice"], by_name["hub/bob/gpu1"]
    assert (alice["user"], alice["server_name"], bob["user"], bob["server_name"]) == ("alice", "", "bob", "gpu1")
    for s in (alice, bob):
        assert s["source"] == "hub" and s["status"] == "ok" and s["hub"] == "hub"
        assert s["route"] == "direct" and s["route_note"] is None
        assert s["pid"] and s["started"] and s["hub_last_activity"] and s["pending"] is None
        assert s["usage_source"] == "local", s  # nbtui runs on the hub host: the kernels are local processes
    kernels = {k["server"]: k for k in data["kernels"] if k["server"].startswith("hub/")}
    assert kernels["hub/alice"]["kernel_id"] == hub.kernels["alice"]
    assert kernels["hub/bob/gpu1"]["kernel_id"] == hub.kernels["bob"]
    # On the hub host the kernels are local processes: usage local; the person is the hub user,
    # the process's OS owner apart (the spawner here runs every server as the hub's own user).
    assert kernels["hub/alice"]["usage_source"] == "local" and kernels["hub/alice"]["pid"]
    assert (kernels["hub/alice"]["user"], kernels["hub/bob/gpu1"]["user"]) == ("alice", "bob")
    assert kernels["hub/alice"]["process_user"] == kernels["hub/bob/gpu1"]["process_user"] == getpass.getuser()
    # The contract's TARGETs reach them: exec through the hub's name for the server.
    r = run_nbtui("exec", f"hub/bob/gpu1:{hub.kernels['bob'][:8]}", "6*7", "--no-discover")
    assert r.returncode == 0 and r.stdout.strip() == "42", r.stdout + r.stderr


def test_a_server_discovered_locally_too_is_listed_once_under_the_hub(hub, config_dir):
    _add_hub(hub)
    runtime = hub.base / "home" / "alice" / ".local" / "share" / "jupyter" / "runtime"
    assert list(runtime.glob("jpserver-*.json")), "alice's server announces itself in her runtime folder"
    data = _ls(env={"JUPYTER_RUNTIME_DIR": str(runtime)})
    pid = hub.server_pid("alice")
    listed = [s["name"] for s in data["servers"] if s["pid"] == pid]
    assert listed == ["hub/alice"]
    assert [k["server"] for k in data["kernels"] if k["kernel_id"] == hub.kernels["alice"]] == ["hub/alice"]


def test_direct_reads_move_no_last_activity_the_proxy_does(hub, config_dir):
    """The observer effect one floor up: over refreshes longer than the hub's
    last_activity_interval, reads at the internal targets move neither the hub's users' and
    servers' last_activity, nor the servers' own (reported to the hub), nor the kernels'."""
    _add_hub(hub)
    cfg = config_mod.load(config_dir)

    def server_activity():
        return {u: _direct(hub, u, "GET", "api/status").json()["last_activity"] for u in ("alice", "bob")}

    def kernel_activity():
        return {u: _direct(hub, u, "GET", f"api/kernels/{hub.kernels[u]}").json()["last_activity"]
                for u in ("alice", "bob")}

    time.sleep(INTERVAL + 1)  # whatever the setup did has reached the hub
    before = (_activity(hub), server_activity(), kernel_activity())

    async def refreshes():
        async with Fleet.from_config(cfg, discover_local=False) as fleet:
            for _ in range(3):
                snap = await fleet.snapshot()
                assert {s.name for s in snap.servers if s.ok} >= {"hub/alice", "hub/bob/gpu1"}
                assert {k.kernel_id for k in snap.kernels} >= set(hub.kernels.values())
                await asyncio.sleep(INTERVAL * 0.75)

    asyncio.run(refreshes())
    time.sleep(INTERVAL + 1)  # one more of the hub's activity rounds
    assert (_activity(hub), server_activity(), kernel_activity()) == before
    # The trap the direct route avoids: one read of alice's kernels through the proxy.
    httpx.get(hub.user_url("alice") + "api/kernels", headers=hub.headers, timeout=30).raise_for_status()
    moved = wait_for(lambda: _activity(hub)["alice/"] != before[0]["alice/"], 30, 0.3, "the proxy's activity")
    assert moved


def test_proxy_route_says_so_and_polls_no_more_than_its_interval(hub, config_dir, tmp_path, monkeypatch):
    _add_hub(hub, "hp", None, "--route", "proxy", "--proxy-interval", "10m")
    data = _ls("--no-discover")
    alice = next(s for s in data["servers"] if s["name"] == "hp/alice")
    assert alice["route"] == "proxy" and alice["url"] == hub.user_url("alice")
    assert "marks the server active" in alice["route_note"] and "10m" in alice["route_note"]
    assert hub.kernels["alice"] in {k["kernel_id"] for k in data["kernels"]}
    # Across processes too: the next one-shot ls within the interval does not read it again,
    # and says so (some servers unread: exit 4).
    state = tmp_path / "nbtui-state" / "proxy-reads.json"
    assert state.stat().st_mode & 0o777 == 0o600 and hub.token not in state.read_text()
    again = _ls("--no-discover", code=4)
    alice = next(s for s in again["servers"] if s["name"] == "hp/alice")
    assert (alice["status"], alice["error_kind"]) == ("skipped", "proxy-interval")
    assert "by nbtui ls, pid " in alice["error"] and "next in" in alice["error"]  # whose read spent it
    assert not any(k["server"] == "hp/alice" for k in again["kernels"])
    r = run_nbtui("ls", "--no-discover")
    assert r.returncode == 4 and "not read: server hp/alice: read through the hub's proxy" in r.stdout, r.stdout
    # A link planted at the file's name is neither read nor written through: it is replaced.
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    state.unlink()
    state.symlink_to(target)
    _ls("--no-discover")  # the planted file counts as no record: read once more
    assert target.read_text() == "keep" and not state.is_symlink() and "hp/alice" not in state.read_text()
    monkeypatch.setenv("NBTUI_STATE_DIR", str(tmp_path / "fresh-state"))  # the in-process interval below
    r = run_nbtui("servers", "test", "hp", "--no-discover")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 through the proxy" in r.stdout and r.stdout.count("marks the server active") == 1
    # The test spent none of the interval: the ls right after it reads the servers it tested.
    after = _ls("--no-discover")
    assert hub.kernels["alice"] in {k["kernel_id"] for k in after["kernels"]}
    # The console's websocket through the proxy: the token goes in the handshake's header.
    r = run_nbtui("exec", f"hp/alice:{hub.kernels['alice'][:8]}", "1+1", "--no-discover")
    assert r.returncode == 0 and r.stdout.strip() == "2", r.stdout + r.stderr

    async def two_reads():
        async with Fleet.from_config(config_mod.load(config_dir), discover_local=False) as fleet:
            first = await fleet.snapshot()
            extra = hub.start_kernel("alice")  # appears only at the next read through the proxy
            second = await fleet.snapshot()
            return first, second, extra

    first, second, extra = asyncio.run(two_reads())
    try:
        ids = lambda snap: {k.kernel_id for k in snap.kernels if k.server == "hp/alice"}  # noqa: E731
        assert ids(first) == ids(second) and extra not in ids(second)
    finally:
        _direct(hub, "alice", "DELETE", f"api/kernels/{extra}")


def test_a_hung_user_server_costs_only_its_own_timeout(hub, config_dir):
    _add_hub(hub, "hub", None, "--timeout", "3")
    pid = hub.server_pid("bob", "gpu1")
    os.kill(pid, signal.SIGSTOP)
    try:
        data = _ls("--no-discover", code=4)  # some servers could not be read
    finally:
        os.kill(pid, signal.SIGCONT)
    by_name = {s["name"]: s for s in data["servers"]}
    assert by_name["hub/bob/gpu1"]["status"] == "timeout"
    assert by_name["hub/alice"]["status"] == "ok" and by_name["hub"]["status"] == "ok"
    assert hub.kernels["alice"] in {k["kernel_id"] for k in data["kernels"]}


def test_a_token_lacking_scopes_is_explained(hub, config_dir):
    _add_hub(hub, "ro", RO_TOKEN)
    r = run_nbtui("servers", "test", "ro", "--no-discover")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "0 user servers" in out and "token of service nbtui-ro" in out
    for scope in ("read:servers", "tokens", "admin:server_state", "proxy", "servers"):
        assert f"missing scope {scope}:" in out
    assert "missing scope list:users" not in out and "missing scope read:users:" not in out
    data = json.loads(run_nbtui("servers", "test", "ro", "--json", "--no-discover").stdout)
    row = data["servers"][0]
    assert {m["scope"] for m in row["missing_scopes"]} == {
        "read:servers", "tokens", "admin:server_state", "proxy", "servers"}
    assert RO_TOKEN not in json.dumps(data)


def test_kill_a_users_kernel_and_stop_a_server_through_the_hub(hub, config_dir, tmp_path):
    _add_hub(hub)
    audit = tmp_path / "nbtui-state" / "audit.jsonl"
    extra = hub.start_kernel("alice")
    r = run_nbtui("kill", f"hub/alice:{extra}", "--yes", "--no-discover")
    assert r.returncode == 0, r.stdout + r.stderr
    assert extra not in {k["id"] for k in _direct(hub, "alice", "GET", "api/kernels").json()}
    lines = [json.loads(x) for x in audit.read_text().splitlines()]
    assert lines[-1]["action"] == "kill" and lines[-1]["target"]["server"] == "hub/alice"
    # cull --servers: the plan of idle servers by the hub's last_activity, nothing done. The
    # kernel's start above went through the proxy, which the hub counts as activity when it
    # next polls the proxy (every 3 s here): alice is idle over 1 s once that has settled.

    def both_planned():
        r = run_nbtui("cull", "--servers", "--idle", "1s", "--dry-run", "--no-discover")
        assert r.returncode == 0, r.stdout + r.stderr
        return "server:hub/bob/gpu1" in r.stdout and "server:hub/alice" in r.stdout and r
    wait_for(both_planned, 30, 1.0, "both idle servers in the cull plan")
    r = run_nbtui("kill", "server:hub/bob/gpu1", "--dry-run", "--no-discover")
    assert r.returncode == 0 and "bob" in r.stdout
    assert "gpu1" in hub.user("bob")["servers"]
    r = run_nbtui("kill", "server:hub/bob", "--yes", "--no-discover")
    assert r.returncode == 3  # bob has no default server
    r = run_nbtui("--readonly", "kill", "server:hub/bob/gpu1", "--yes", "--no-discover")
    assert r.returncode == 2
    r = run_nbtui("kill", "server:hub/bob/gpu1", "--yes", "--no-discover")
    assert r.returncode == 0 and "server:hub/bob/gpu1: ok" in r.stdout, r.stdout + r.stderr
    assert "gpu1" not in hub.user("bob")["servers"]
    lines = [json.loads(x) for x in audit.read_text().splitlines()][-2:]
    assert [x["result"] for x in lines] == ["requested", "ok"]  # the audit line comes before the act
    assert all(x["action"] == "kill-server" and x["target"]["user"] == "bob" for x in lines)
    assert hub.token not in audit.read_text()


async def test_k_on_a_server_row_stops_it_through_the_hub(hub, config_dir, tmp_path):
    """The TUI: v lists every server as a row, k on a hub user's server asks, then stops it
    through the hub (re-checked, audited before and after), and its row goes."""
    from nbtui.tui.app import NbtuiApp
    from nbtui.tui.screens.confirm import ConfirmScreen
    from nbtui.tui.screens.servers import ServersScreen
    from tests.jupyter import until

    hub.spawn("alice", "tmp")
    await asyncio.to_thread(hub.wait_ready, "alice", "tmp")
    _add_hub(hub)
    audit = tmp_path / "nbtui-state" / "audit.jsonl"
    fleet = Fleet.from_config(config_mod.load(config_dir), discover_local=False)
    app = NbtuiApp(fleet, refresh=0.5)
    async with app.run_test(size=(110, 30)) as pilot:
        await until(pilot, lambda: app.snapshot and any(s.name == "hub/alice/tmp" and s.ok
                                                        for s in app.snapshot.servers), 60, what="alice/tmp")
        await pilot.press("v")
        screen = await until(pilot, lambda: isinstance(app.screen, ServersScreen) and app.screen, what="servers")
        await until(pilot, lambda: screen.select("hub/alice/tmp"), what="alice/tmp's row")
        await pilot.press("k")
        modal = await until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen, what="the plan")
        assert modal.title_text == "Stop hub/alice/tmp?"
        assert not audit.exists() or "tmp" not in audit.read_text()  # nothing before the answer
        await pilot.press("y")
        await until(pilot, lambda: "hub/alice/tmp" not in screen._order, 60, what="the row to go")
    await fleet.aclose()
    assert "tmp" not in hub.user("alice")["servers"] and "" in hub.user("alice")["servers"]
    lines = [json.loads(x) for x in audit.read_text().splitlines()]
    assert [x["result"] for x in lines][-2:] == ["requested", "ok"]
    assert all(x["action"] == "stop-server" and x["target"]["user"] == "alice" for x in lines[-2:])
    assert hub.token not in audit.read_text()


def test_a_dead_user_servers_leftover_is_named_by_its_user(hub, config_dir):
    """As root on the hub host: a single-user server killed, its kernel exits (ipykernel
    polls its parent) but what the kernel started lives on; nbtui finds it as a leftover
    named by the hub user and server (ls, ls --json, and the TUI's row)."""
    import psutil

    from nbtui.core.model import Process
    from nbtui.display.table_rows import process_row
    hub.spawn("alice", "crash")
    hub.wait_ready("alice", "crash")
    kid = hub.start_kernel("alice", "crash")
    server_pid = hub.server_pid("alice", "crash")
    _add_hub(hub)
    code = ("import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
            "print(p.pid)")
    r = run_nbtui("exec", f"hub/alice/crash:{kid[:8]}", code, "--no-discover")
    assert r.returncode == 0, r.stdout + r.stderr
    child = int(r.stdout.strip())
    os.kill(server_pid, signal.SIGKILL)
    try:
        wait_for(lambda: not any(f"kernel-{kid}.json" in " ".join(p.info["cmdline"] or ())
                                 for p in psutil.process_iter(["cmdline"])), 20, 0.2, "the kernel to follow its server")
        data = _ls("--no-discover", code=None)  # the hub may still list the dead server: exit 4 then
        left = {p["pid"]: p for p in data["processes"]}
        assert child in left, [p["cmdline"] for p in data["processes"]]
        p = left[child]
        assert (p["hub_user"], p["hub_server_name"], p["hub_server"]) == ("alice", "crash", "hub/alice/crash")
        assert "server-gone" in p["orphan_reasons"] and p["server_pid"] == server_pid
        out = " ".join(run_nbtui("ls", "--no-discover", "--orphans").stdout.split())  # lines wrap at 80
        assert f"pid {child} (alice): Jupyter process of hub user alice's server hub/alice/crash " \
               f"(pid {server_pid}), which is gone" in out, out
        fields = set(Process.__dataclass_fields__)
        row = process_row(Process(**{k: v for k, v in p.items() if k in fields and k != "gpus"}))
        assert (row.server, row.user) == ("hub/alice/crash", "alice")  # the TUI's and ls's row
    finally:
        try:
            psutil.Process(child).kill()
        except psutil.Error:
            pass
