"""The hub's pure parts: users' servers from hostile JSON, scopes and their costs, the
servers strip's collapse, server: targets, servers.toml keys (no hub needed)."""

from __future__ import annotations

import datetime as dt

import pytest

from nbtui.files import config as config_mod
from nbtui.core import targets
from nbtui.core.errors import NotFound, UsageError
from nbtui.jupyter import hub
from nbtui.core.model import ServerInfo, Snapshot
NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)


def test_users_servers_from_hostile_json():
    users = [
        {"name": "alice", "servers": {"": {"url": "/user/alice/", "ready": True, "pending": None,
                                           "started": "2026-12-01T10:00:00Z", "last_activity": "2026-12-01T11:00:00.5Z",
                                           "state": {"pid": 420}}}},
        {"name": "bob", "servers": {"gpu1": {"ready": False, "pending": "spawn", "state": {"pid": True}}}},
        {"name": "", "servers": {"": {}}}, "junk", {"name": "eve", "servers": ["x"]},
        {"name": "mallory", "servers": {"": {"url": "http://evil/", "pending": "rm -rf", "state": {"pid": -3}}}},
        {"name": "trudy", "servers": {"": {"url": "/user/trudy/../../hub/api/", "ready": True}}},
        {"name": "trent", "servers": {"": {"url": "/user/trent/%2e%2E/", "ready": True}}},
    ]
    out = hub.parse_users("h", users)
    assert [s.name for s in out] == ["h/alice", "h/bob/gpu1", "h/mallory"]
    alice, bob, mallory = out
    assert alice.ready and alice.pid == 420 and alice.last_activity.microsecond == 500000
    assert bob.pending == "spawn" and bob.pid is None and bob.path == "/user/bob/gpu1/"
    assert mallory.pending is None and mallory.pid is None and mallory.path == "/user/mallory/"


def test_scopes_and_what_a_missing_one_costs():
    full = ["list:users", "read:users", "read:servers", "tokens", "admin:server_state", "proxy", "servers"]
    assert hub.missing_scopes(full) == []
    assert hub.missing_scopes(["admin:users", "tokens", "proxy"]) == []
    missing = {m[0]: m[1] for m in hub.missing_scopes(["list:users", "read:users", "tokens!user=alice",
                                                        "access:servers"])}
    assert missing == {"read:servers": "missing", "tokens": "only some", "admin:server_state": "missing",
                       "proxy": "missing", "servers": "missing"}
    assert hub.missing_scopes(full[:-1] + ["delete:servers"]) == []


def _server(name, **kw):
    return ServerInfo(name=name, url="http://127.0.0.1:1/", source=kw.pop("source", "hub"), **kw)


def test_the_strip_collapses_a_hubs_many_servers_to_a_count():
    from nbtui.tui.hub import STRIP_MAX, strip_entries
    few = [_server("h", hub="h", version="6.1.1"), _server("h/alice", hub="h", user="alice", route="proxy"),
           _server("h/bob", hub="h", user="bob", pending="spawn"), _server("gpu1", source="config")]
    names = [n for n, _ in strip_entries(few)]
    assert names == ["h", "h/alice", "h/bob", "gpu1"]
    assert dict(strip_entries(few))["h/alice"].endswith("via proxy (marks activity)")
    assert dict(strip_entries(few))["h/bob"] == "starting…"
    many = [_server("h", hub="h")] + [_server(f"h/u{i}", hub="h", user=f"u{i}") for i in range(STRIP_MAX + 3)]
    entries = strip_entries(many)
    assert len(entries) == 1 and entries[0][1] == f"({STRIP_MAX + 3} user servers)"
    hostile = strip_entries([_server("h/\x1b[2Jx", hub="h", user="\x1b[2Jx")])
    assert "\x1b" not in hostile[0][0]


def test_server_targets_name_a_hub_users_server():
    snap = Snapshot(generated_at=NOW, servers=(
        _server("h", hub="h"), _server("h/alice", hub="h", user="alice", server_name=""),
        _server("gpu1", source="config")))
    t = targets.resolve(snap, "server:h/alice")
    assert isinstance(t, targets.ServerTarget) and t.server.user == "alice"
    with pytest.raises(UsageError):
        targets.resolve(snap, "server:h")
    with pytest.raises(UsageError):
        targets.resolve(snap, "server:gpu1")
    with pytest.raises(NotFound):
        targets.resolve(snap, "server:h/carol")


def test_cull_servers_selects_by_the_hubs_last_activity():
    from nbtui.service.actions.hubservers import plan_cull_servers
    snap = Snapshot(generated_at=NOW, servers=(
        _server("h", hub="h"),
        _server("h/old", hub="h", user="old", hub_last_activity=NOW - dt.timedelta(hours=3)),
        _server("h/new", hub="h", user="new", hub_last_activity=NOW - dt.timedelta(minutes=5)),
        _server("h/unknown", hub="h", user="unknown"),
        _server("h/spawning", hub="h", user="s", pending="spawn", hub_last_activity=NOW - dt.timedelta(hours=3))))
    steps = plan_cull_servers(snap, 3600)
    assert [s.target for s in steps] == ["server:h/old"]
    assert steps[0].json()["hub_last_activity"] == NOW - dt.timedelta(hours=3)  # print_json writes it as ls does


def test_servers_toml_keeps_a_hubs_keys(tmp_path):
    cfg = config_mod.Config(folder=tmp_path, settings=config_mod.Settings(), servers={})
    hub_cfg = config_mod.ServerConfig(name="h", url="http://127.0.0.1:8000/", token_source="none", hub=True,
                                      route="proxy", proxy_interval=1200.0)
    config_mod.save_servers(config_mod.with_server(cfg, hub_cfg))
    loaded = config_mod.load_servers(tmp_path)["h"]
    assert (loaded.hub, loaded.route, loaded.proxy_interval) == (True, "proxy", 1200.0)
    (tmp_path / "servers.toml").write_text('[servers.x]\nurl = "http://127.0.0.1:1/"\nroute = "proxy"\n')
    with pytest.raises(UsageError, match="only for a hub"):
        config_mod.load_servers(tmp_path)


def test_proxy_reads_file_is_a_courtesy_never_a_trap(tmp_path):
    from nbtui.jupyter import proxy_reads
    f = tmp_path / "state" / "proxy-reads.json"
    assert proxy_reads.last_read("http://h/user/a/", where=f) is None
    proxy_reads.record(["http://h/user/a/"], at=1000.0, where=f)
    proxy_reads.record(["http://h/user/b/"], by="nbtui ls, pid 7", at=1000.0 + proxy_reads.KEEP + 1,
                       where=f)  # a's entry is dropped
    assert proxy_reads.last_read("http://h/user/b/", where=f) == (1000.0 + proxy_reads.KEEP + 1, "nbtui ls, pid 7")
    assert proxy_reads.last_read("http://h/user/a/", where=f) is None
    assert f.stat().st_mode & 0o777 == 0o600
    for junk in ("[1, 2]", '{"reads": {"x": "soon", "y": true}}', "not json", ""):
        f.write_text(junk)
        assert proxy_reads.last_read("x", where=f) is None and proxy_reads.last_read("y", where=f) is None
    target = tmp_path / "secret"
    target.write_text('{"reads": {"x": 5}}')
    f.unlink()
    f.symlink_to(target)
    assert proxy_reads.last_read("x", where=f) is None  # never read through a link
    proxy_reads.record(["x"], at=7.0, where=f)  # the link is replaced, its target kept
    assert not f.is_symlink() and target.read_text() == '{"reads": {"x": 5}}'
    assert proxy_reads.last_read("x", where=f) == (7.0, None)
