"""A hub user's server is as hostile as any (issue 21): a real JupyterHub with the npm proxy
spawns, for mallory, a small HTTP server that lists traversal kernel ids, session paths and
terminal names and records every request and Authorization header it gets; bob runs a real
single-user server. Every action nbtui offers, aimed at those ids, sends nothing outside
mallory's prefix, and every token mallory's server saw opens neither the hub's API nor bob's
server (nor, once nbtui has ended, anything at all)."""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from tests.conftest import ROOT, run_nbtui
from tests.hub import Hub

pytestmark = pytest.mark.timeout(300)

UNSAFE = "cannot be one URL path segment"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile-hub")
    script, log = base / "script.json", base / "requests.jsonl"
    script.write_text(json.dumps({"kernels": [], "paths": [], "terminals": []}))
    log.touch()
    h = Hub(base / "hub", users=("mallory", "bob"), hostile={
        "mallory": [sys.executable, str(ROOT / "tests" / "hostile_singleuser.py"), str(script), str(log)]})
    h.start()
    try:
        h.spawn("bob")
        h.spawn("mallory")
        h.wait_ready("bob")
        h.wait_ready("mallory")
        h.bob_kernel = h.start_kernel("bob")
        normal = str(uuid.uuid4())
        h.ids = {
            "normal": normal,
            "hub": "../../../../hub/api/users/bob/server",  # through the proxy: DELETE stops bob's server
            "bob": f"../../../bob/api/kernels/{h.bob_kernel}",  # bob's kernel
            "dot": "..",
            "escape": "x\x1b]0;pwned\x07",
        }
        script.write_text(json.dumps({
            "kernels": list(h.ids.values()),
            "paths": ["../../../../hub/api/users"],  # mallory's only session: the normal kernel's
            "terminals": ["..", "../../bob/api/terminals/1", "1"],
        }))
        h.request_log = log
        yield h
    finally:
        h.stop()


def _requests(hub: Hub) -> list[dict]:
    return [json.loads(x) for x in hub.request_log.read_text().splitlines()]


def _bob_untouched(hub: Hub) -> None:
    assert hub.user("bob")["servers"][""]["ready"], "bob's server was stopped"
    kernels = hub.user_api("GET", "bob", "api/kernels").json()
    assert hub.bob_kernel in {k["id"] for k in kernels}, "bob's kernel was deleted"


def test_actions_on_traversal_ids_stay_inside_the_users_prefix(hub, config_dir):
    os.environ["NBTUI_TEST_HUB_H"] = hub.token
    r = run_nbtui("servers", "add", "h", hub.url, "--token-env", "NBTUI_TEST_HUB_H", "--hub",
                  "--route", "proxy", "--proxy-interval", "1s")
    assert r.returncode == 0, r.stderr
    r = run_nbtui("ls", "--json", "--no-discover")
    assert r.returncode == 0, r.stdout + r.stderr
    listed = {k["kernel_id"] for k in json.loads(r.stdout)["kernels"] if k["server"] == "h/mallory"}
    assert set(hub.ids.values()) <= listed  # listed, exactly as the server gave them

    for name in ("hub", "bob", "dot", "escape"):
        target = f"h/mallory:{hub.ids[name]}"
        for args in (["kill", target, "--yes"], ["exec", target, "1+1"],
                     ["rebind", target, "--notebook", "y.ipynb"],
                     ["migrate", target, "--to", "h/bob", "--yes"]):
            r = run_nbtui(*args, "--no-discover")
            said = r.stdout + r.stderr  # kill reports its refused step; the others fail with one line
            assert r.returncode == 1 and UNSAFE in said, (args, r.returncode, r.stdout, r.stderr)
            assert len(r.stderr.strip().splitlines()) <= 2 and "Traceback" not in said
    r = run_nbtui("cull", "--orphans", "--server", "h/mallory", "--yes", "--no-discover")  # no-session orphans
    assert r.returncode == 1 and UNSAFE in r.stdout + r.stderr, r.stdout + r.stderr
    r = run_nbtui("kill", "terminal:h/mallory/..", "--yes", "--no-discover")
    assert r.returncode == 1, r.stdout + r.stderr
    # The one honest id still works: nbtui refuses ids, not servers.
    r = run_nbtui("kill", f"h/mallory:{hub.ids['normal']}", "--yes", "--no-discover")
    assert r.returncode == 0, r.stdout + r.stderr

    _bob_untouched(hub)
    seen = _requests(hub)
    assert seen, "mallory's server was never read"
    for req in seen:  # every request mallory's server got lies inside her prefix, no dot part
        path = req["path"].split("?", 1)[0]
        assert path.startswith("/user/mallory/") and "/../" not in unquote(path) + "/", req
    hub_log = Path(hub.log_path).read_text(errors="replace")
    assert "/hub/api/users/bob/server" not in hub_log.replace("POST /hub/api/users/bob/server", "")


def test_the_tokens_mallory_saw_open_nothing_else(hub):
    tokens = {r["auth"].removeprefix("token ") for r in _requests(hub) if r["auth"]}
    assert tokens, "no token reached mallory's server (was it read at all?)"
    assert hub.token not in tokens  # never the hub's own
    for token in tokens:
        auth = {"Authorization": f"token {token}"}
        for method, path in (("GET", "hub/api/users"), ("DELETE", "hub/api/users/bob/server"),
                             ("POST", "hub/api/users/bob/tokens"), ("GET", "hub/api/proxy")):
            r = httpx.request(method, hub.url + path, headers=auth, timeout=30)
            assert r.status_code in (401, 403, 404), (method, path, r.status_code)
        r = httpx.get(hub.user_url("bob") + "api/kernels", headers=auth, timeout=30, follow_redirects=False)
        assert r.status_code in (302, 401, 403, 404), r.status_code
        # and once nbtui ended, not even who it was: every minted token was revoked
        r = httpx.get(hub.url + "hub/api/user", headers=auth, timeout=30)
        assert r.status_code in (401, 403), r.status_code
    _bob_untouched(hub)
