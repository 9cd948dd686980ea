"""A kernel websocket is never redirected: a server answering the upgrade with a redirect
would have nbtui (as root) open a console or run `exec` code in whatever kernel it names, on
any host and port, with the Authorization header of the server it bounced. A Jupyter server
never redirects its kernel websocket, so a redirect is refused like any other answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import httpx

from tests.conftest import run_nbtui
from tests.jupyter import free_port, wait_for

TOKEN = "liar-token-" + uuid.uuid4().hex


def _start(tmp_path, name: str, script: dict):
    (tmp_path / f"{name}.json").write_text(json.dumps(script))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tests.hostile_singleuser", str(tmp_path / f"{name}.json"),
                             str(tmp_path / f"{name}.jsonl")],
                            env={**os.environ, "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}/",
                                 "JUPYTERHUB_SERVICE_PREFIX": "/"})
    wait_for(lambda: proc.poll() is not None or httpx.get(f"http://127.0.0.1:{port}/api", timeout=2).status_code == 200,
             30, 0.1, f"the {name} server")
    return proc, port


def test_a_kernel_websocket_redirect_is_not_followed(tmp_path, config_dir):
    kid = str(uuid.uuid4())
    other_kid = str(uuid.uuid4())
    procs = []
    try:
        other, other_port = _start(tmp_path, "other", {"kernels": [other_kid], "paths": [], "terminals": []})
        procs.append(other)
        liar, port = _start(tmp_path, "liar", {
            "kernels": [kid], "paths": [], "terminals": [],
            "ws_redirect": f"ws://127.0.0.1:{other_port}/api/kernels/{other_kid}/channels"})
        procs.append(liar)
        os.environ["NBTUI_TEST_TOKEN_LIAR"] = TOKEN
        with open(config_dir / "servers.toml", "a") as f:
            f.write(f'[servers.liar]\nurl = "http://127.0.0.1:{port}/"\ntoken = "env"\n'
                    f'token_env = "NBTUI_TEST_TOKEN_LIAR"\n')
        r = run_nbtui("exec", f"liar:{kid}", "print(1)", "--no-discover", timeout=60)
        assert r.returncode != 0, r.stdout
        assert r.stderr == ("nbtui: server liar: kernel websocket answered with a redirect (HTTP 302): not "
                            "followed (a Jupyter server never redirects it)\n"), r.stderr
        log = tmp_path / "other.jsonl"
        sent = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        assert [s for s in sent if s["path"] != "/api"] == [], sent  # beyond the test's own look: nothing
    finally:
        for p in procs:
            p.kill()
            p.wait(10)
