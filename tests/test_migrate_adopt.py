"""Adopt: a live kernel whose Jupyter server was SIGKILLed, reached again over ZMQ, listed
by another local server through its external_connection_dir, and moved from there.

The kernel is launched through a wrapper (``sh -c``), as conda-run and site launchers do:
ipykernel's parent poller then watches the wrapper, not the server, so the kernel lives
on when its server dies (a kernel whose direct parent is the server exits with it).
"""

from __future__ import annotations

import json
import os
import signal
import sys

import psutil
import pytest

from nbtui.jupyter.channels import ZmqChannels
from tests.conftest import run_nbtui
from tests.jupyter import wait_for


def _wrapped_spec(server_base) -> None:
    spec = server_base / "data" / "kernels" / "wrapped"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": ["/bin/sh", "-c", '"$0" -m ipykernel_launcher -f "$1"; exit $?', sys.executable, "{connection_file}"],
        "display_name": "Python (wrapped)", "language": "python"}))


def _python_kernel_pid(server, kernel_id: str) -> int:
    def find():
        for p in psutil.Process(server.pid).children(recursive=True):
            cmd = " ".join(p.cmdline())
            if "ipykernel_launcher" in cmd and f"kernel-{kernel_id}.json" in cmd and not cmd.startswith("/bin/sh"):
                return p.pid
        return None

    return wait_for(find, 30, what="the kernel's python process")


async def _run(ch, code: str) -> str:
    ex = await ch.execute(code)
    out = []
    async for msg in ex:
        if msg["header"]["msg_type"] == "stream":
            out.append(msg["content"]["text"])
    return "".join(out).strip()


async def test_adopt_a_kernel_whose_server_was_killed(jupyter_factory, config_dir, tmp_path):
    gone = jupyter_factory("gone")
    _wrapped_spec(gone.base)
    ext = tmp_path / "external"
    home = jupyter_factory("home", extra_args=("--ServerApp.allow_external_kernels=True",
                                               f"--ServerApp.external_connection_dir={ext}"))
    os.environ["NBTUI_TEST_TOKEN_HOME"] = home.token
    (config_dir / "servers.toml").write_text(
        f'[servers.home]\nurl = "{home.url}"\ntoken = "env"\ntoken_env = "NBTUI_TEST_TOKEN_HOME"\n')

    kid = gone.api("POST", "api/sessions", json={"path": "lost.ipynb", "type": "notebook", "name": "lost.ipynb",
                                                 "kernel": {"name": "wrapped"}}).json()["kernel"]["id"]
    gone.run_code(kid, "state = {'epoch': 12, 'loss': 0.25}\nhistory = list(range(100))")
    lost = gone.root_dir / "lost.ipynb"  # the file the kernel was started for (its JPY_SESSION_NAME)
    lost.write_text(json.dumps({"cells": [{"cell_type": "code", "execution_count": None, "metadata": {},
                                           "outputs": [], "source": ["state = {'epoch': 12}\n", "train()"]}],
                                "metadata": {}, "nbformat": 4, "nbformat_minor": 4}))
    pid = _python_kernel_pid(gone, kid)
    conn = str(gone.connection_file(kid))
    gone.kill_hard()

    # 1. Adoptable: answers its heartbeat, its server is gone, its notebook is known.
    r = run_nbtui("adopt", f"pid:{pid}", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["kernel_id"] == kid and info["server_alive"] is False and info["notebook"].endswith("lost.ipynb")
    assert info["connection_file"] == conn and "key" not in r.stdout

    # 2. Reached over ZMQ (the console's local transport): the state is intact.
    async with ZmqChannels(conn) as ch:
        await ch.wait_for_ready(30)
        assert await _run(ch, "print(state['epoch'], len(history))") == "12 100"

    # 3. Listed by a local server with allow_external_kernels, bound to a notebook.
    r = run_nbtui("adopt", f"pid:{pid}", "--to", "home", "--notebook", "found.ipynb")  # no --yes, no terminal
    assert r.returncode == 2 and "pass --yes" in r.stderr and not ext.exists()
    r = run_nbtui("adopt", f"pid:{pid}", "--to", "home", "--dry-run")
    assert r.returncode == 0 and not ext.exists(), r.stderr
    assert f"would place kernel-{kid}.json (mode 0600, owned by root) into {ext} (creating external, 0700)" in r.stdout
    r = run_nbtui("adopt", f"pid:{pid}", "--to", "home", "--notebook", "found.ipynb", "--json", "--yes")
    assert r.returncode == 0, r.stderr
    new_id = json.loads(r.stdout)["server_kernel_id"]
    assert new_id in {k["id"] for k in home.kernels()}
    assert [s["kernel"]["id"] for s in home.api("GET", "api/sessions").json() if s["path"] == "found.ipynb"] == [new_id]
    assert oct(next(ext.iterdir()).stat().st_mode & 0o777) == "0o600"
    r = run_nbtui("exec", f"home:{new_id[:8]}", "print(state['loss'])")
    assert r.returncode == 0 and r.stdout.strip() == "0.25", r.stderr

    # 4. Moved from the local process into a new kernel on the server; the process then exits.
    r = run_nbtui("migrate", f"pid:{pid}", "--to", "home", "--yes")
    assert r.returncode == 2 and "--notebook PATH" in r.stderr and "lost.ipynb" in r.stderr
    r = run_nbtui("migrate", f"pid:{pid}", "--to", "home", "--notebook", "moved.ipynb", "--yes")
    assert r.returncode == 1 and "no kernel spec 'wrapped'" in r.stderr  # the spec it was started with
    r = run_nbtui("migrate", f"pid:{pid}", "--to", "home", "--notebook", "moved.ipynb", "--kernel", "python3",
                  "--yes", "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert {m["name"] for m in report["moved"]} == {"state", "history"} and report["source_shut_down"] is True
    # The notebook comes along from this host (its server is gone): the file it was started for.
    nb = report["notebook_file"]
    assert nb["action"] == "copy" and nb["source_path"] == str(lost) and nb["source_server"] is None, nb
    carried = json.loads((home.root_dir / "moved.ipynb").read_text())
    assert "".join(carried["cells"][0]["source"]) == "state = {'epoch': 12}\ntrain()"
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 15,
             what="the adopted kernel to exit")
    moved = report["target"]["kernel_id"]
    r = run_nbtui("exec", f"home:{moved[:8]}", "print(state, sum(history))")
    assert r.stdout.strip() == "{'epoch': 12, 'loss': 0.25} 4950", r.stderr

    audit = [json.loads(line)["action"] for line in
             (config_dir.parent / "nbtui-state" / "audit.jsonl").read_text().splitlines()
             if json.loads(line)["result"] != "intent"]
    assert audit == ["adopt", "migrate", "migrate-shutdown"]


async def test_a_kernel_that_does_not_answer_its_heartbeat_is_not_adoptable(jupyter_factory):
    server = jupyter_factory("hb")
    kid = server.start_kernel()
    pid = server.kernel_pid(kid)
    server.connection_file(kid)
    os.kill(pid, signal.SIGSTOP)
    try:
        r = run_nbtui("adopt", f"pid:{pid}")
        assert r.returncode == 1 and "does not answer on its heartbeat" in r.stderr, r.stderr
    finally:
        os.kill(pid, signal.SIGCONT)
    r = run_nbtui("adopt", f"pid:{os.getpid()}")
    assert r.returncode == 1 and "is not a kernel" in r.stderr
    r = run_nbtui("adopt", f"pid:{pid}")
    assert r.returncode == 0 and "answers on its heartbeat; its server" in r.stdout and "still runs" in r.stdout
