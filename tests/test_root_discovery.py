"""Discovery as root with a real second user: its own jupyter_server and kernel are found by
root's `nbtui ls`, with the owner named; a runtime file that user plants claiming root's
server is reported and never trusted."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import run_nbtui
from tests.jupyter import wait_for
from tests.localuser import local_user  # noqa: F401  (the fixture)

ROOT_DISCOVERY = {"NBTUI_ROOT_DISCOVERY": "1"}


@pytest.fixture(scope="module")
def user_server(local_user):  # noqa: F811
    server = local_user.start_server()
    server.kid = server.start_kernel()
    wait_for(lambda: list(local_user.runtime_dir.glob(f"kernel-{server.kid}.json")), 30, 0.1, "its kernel")
    return server


def _ls(*extra: str) -> dict:
    r = run_nbtui("ls", "--json", *extra, env=ROOT_DISCOVERY, timeout=90)
    # Other tests' servers come and go on this host while we read: some may be unread (4).
    assert r.returncode in (0, 4), r.stderr
    return json.loads(r.stdout)


def test_root_finds_another_users_server_and_names_the_owner(local_user, user_server):  # noqa: F811
    out = _ls()
    mine = [s for s in out["servers"] if s["url"] == user_server.url]
    assert len(mine) == 1 and mine[0]["status"] == "ok" and mine[0]["source"] == "discovered", out["servers"]
    assert mine[0]["pid"] == user_server.pid
    k = next(k for k in out["kernels"] if k["kernel_id"] == user_server.kid)
    assert k["user"] == local_user.name and k["server"] == mine[0]["name"]
    assert k["pid"] is not None and k["usage_source"] == "local"
    assert user_server.token not in json.dumps(out)  # its token is used, never shown

    # Off for everyone but root's own folder: NBTUI_ROOT_DISCOVERY=0 (tests) or --no-discover.
    r = run_nbtui("ls", "--json", "--no-discover", env=ROOT_DISCOVERY)
    assert r.returncode == 0 and json.loads(r.stdout)["servers"] == []


def test_a_planted_file_claiming_roots_server_is_reported_never_trusted(local_user, user_server, jupyter):  # noqa: F811
    planted = local_user.runtime_dir / f"jpserver-{jupyter.pid}.json"
    planted.write_text(json.dumps({"pid": jupyter.pid, "port": jupyter.port, "url": jupyter.url,
                                   "token": "planted-token", "base_url": "/", "root_dir": "/"}))
    os.chown(planted, local_user.uid, -1)  # written by the user: its file
    # And one naming the user's own server process but another port (a server it does not run).
    wrong_port = local_user.runtime_dir / "jpserver-1.json"
    wrong_port.write_text(json.dumps({"pid": user_server.pid, "port": 1, "url": "http://127.0.0.1:1/",
                                      "token": "x"}))
    os.chown(wrong_port, local_user.uid, -1)
    try:
        out = _ls()
    finally:
        planted.unlink()
        wrong_port.unlink()
    notes = out["untrusted_files"]
    assert any(n.startswith(str(planted)) and "claims another user's server" in n for n in notes), notes
    assert any(n.startswith(str(wrong_port)) and "does not listen on port 1" in n for n in notes), notes
    assert "planted-token" not in json.dumps(out)
    assert not any(s["url"] == "http://127.0.0.1:1/" for s in out["servers"])
    # root's server itself is still found, through its own (root-owned) runtime file
    assert [s["status"] for s in out["servers"] if s["url"] == jupyter.url] in ([], ["ok"])


def test_runtime_files_that_are_pipes_links_or_huge_are_never_read(tmp_path):
    from nbtui.jupyter.discovery import discover
    os.mkfifo(tmp_path / "jpserver-1.json")  # reading it would block discovery forever
    (tmp_path / "target.json").write_text(json.dumps({"pid": os.getpid(), "url": "http://127.0.0.1:1/"}))
    os.symlink(tmp_path / "target.json", tmp_path / "jpserver-2.json")
    (tmp_path / "jpserver-3.json").write_text(" " * (1 << 20) + "{}")
    found = discover(tmp_path)
    assert found.servers == () and sorted(found.unreadable) == sorted(
        str(tmp_path / f"jpserver-{n}.json") for n in (1, 2, 3))


def test_a_file_naming_its_own_port_but_another_servers_url_is_not_trusted(local_user, user_server, jupyter):  # noqa: F811
    """The port checked must be the port connected to: a file of the user's naming its own
    server's process and port, but root's server's URL, would send the token it chose there and
    list root's kernels under the user's server."""
    lure = local_user.runtime_dir / "jpserver-2.json"
    lure.write_text(json.dumps({"pid": user_server.pid, "port": user_server.port, "url": jupyter.url,
                                "token": "lure-token"}))
    os.chown(lure, local_user.uid, -1)
    try:
        out = _ls()
    finally:
        lure.unlink()
    assert any(n.startswith(str(lure)) and f"its URL names port {jupyter.port}" in n
               for n in out["untrusted_files"]), out["untrusted_files"]
    assert not any(s["url"] == jupyter.url and s["pid"] == user_server.pid for s in out["servers"]), out["servers"]
