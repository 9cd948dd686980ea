"""Rebind and move against two real Jupyter servers with real ipykernel kernels.

Server "src" holds the kernels to move; server "dst" receives them. Both run kernels
with tests/migrate_stub on PYTHONPATH (a GPU-tensor stand-in, a non-Python kernel), and
dst has an IPython startup file that defines ``shared`` (a name that collides).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbtui.jupyter.rest import ServerClient
from nbtui.migrate.move import Migration, MigrationFailed, Options, ServerSource
from tests.conftest import ROOT, run_nbtui
from tests.jupyter import JupyterServer, ready_client, wait_for

STUB = Path(__file__).resolve().parent / "migrate_stub"


def _server(base: Path, name: str, startup: str | None = None) -> JupyterServer:
    ipydir = base / "ipython"
    (ipydir / "profile_default" / "startup").mkdir(parents=True)
    if startup:
        (ipydir / "profile_default" / "startup" / "00-site.py").write_text(startup)
    env = {"PYTHONPATH": os.pathsep.join([str(STUB), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "IPYTHONDIR": str(ipydir)}
    server = JupyterServer(base, name=name, env=env)
    spec = base / "data" / "kernels" / "echo"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "echo_kernel", "-f", "{connection_file}"],
        "display_name": "Echo", "language": "echo"}))
    return server.start()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    src = _server(tmp_path_factory.mktemp("mig-src"), "src")
    dst = _server(tmp_path_factory.mktemp("mig-dst"), "dst", startup="shared = 'defined by a startup file'\n")
    yield src, dst
    src.stop()
    dst.stop()


@pytest.fixture
def servers(pair, config_dir):
    """The pair, configured for the CLI; every kernel is shut down after the test."""
    src, dst = pair
    lines = []
    for s in (src, dst):
        var = f"NBTUI_TEST_TOKEN_MIG_{s.name.upper()}"
        os.environ[var] = s.token
        lines += [f"[servers.{s.name}]", f'url = "{s.url}"', 'token = "env"', f'token_env = "{var}"', ""]
    (config_dir / "servers.toml").write_text("\n".join(lines))
    yield src, dst
    for s in (src, dst):
        for k in s.kernels():
            try:
                s.shutdown_kernel(k["id"])
            except Exception:
                pass


def value(server: JupyterServer, kernel_id: str, expr: str, setup: str = "") -> str:
    """repr of ``expr`` evaluated in the kernel (over ZMQ, not through nbtui)."""
    kc = ready_client(server.connection_file(kernel_id), 60, f"kernel {kernel_id} to answer")
    try:
        reply = kc.execute_interactive(setup, user_expressions={"v": expr}, timeout=60, output_hook=lambda m: None)
    finally:
        kc.stop_channels()
    result = reply["content"]["user_expressions"]["v"]
    assert result["status"] == "ok", result
    return result["data"]["text/plain"]


NAMESPACE = r"""
import os, threading, zlib
import gpustub
data = bytearray(os.urandom(3 << 20))
data_crc = zlib.crc32(data)
small = {"a": [1, 2.5, "three"], "b": (None, True)}
shared = "from the source"
gpu = gpustub.FakeTensor(b"weights" * 1000, "cuda:0")
nested = {"layer": gpustub.FakeTensor(b"bias", "cuda:1")}
class Point:
    def __init__(self, x): self.x = x
pt = Point(7)
square = lambda v: v * v
fh = open(os.devnull)
lock = threading.Lock()
gen = (i for i in range(3))
huge = bytes(6 << 20)
"""


def _migrate(*args: str):
    return run_nbtui("migrate", *args, "--yes", "--json", timeout=120)


def test_move_verifies_names_skips_the_rest_and_keeps_a_source_with_data_left(servers, tmp_path):
    src, dst = servers
    sess = src.create_session("work/train.ipynb")
    kid = sess["kernel"]["id"]
    src.run_code(kid, NAMESPACE)

    r = _migrate(f"src:{kid[:8]}", "--to", "dst", "--max-bytes", "4M", "--chunk-bytes", "1M")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    moved = {m["name"]: m for m in report["moved"]}
    skipped = {s["name"]: s["reason"] for s in report["skipped"]}
    assert {"data", "data_crc", "small", "gpu", "nested", "pt", "square"} <= set(moved)
    assert all(m["verified"] for m in moved.values())
    assert moved["data"]["serializer"] == "pickle" and moved["data"]["size"] > 3 << 20
    assert moved["pt"]["serializer"] in ("dill", "cloudpickle")  # defined in the notebook: by value
    assert "cuda:0 -> cpu" in moved["gpu"]["note"] and "cuda:1" in moved["nested"]["note"]
    assert "open file" in skipped["fh"] and "lock" in skipped["lock"] and "generator" in skipped["gen"]
    assert "--max-bytes" in skipped["huge"]
    assert "already defined in the target" in skipped["shared"]
    assert {"name": "os", "module": "os"} in report["imported"]
    # huge (over --max-bytes) and shared (taken in the target) hold data that did not move:
    # the source is kept; the file, lock and generator alone would not have kept it.
    assert report["source_shut_down"] is False
    assert "2 skipped name(s) hold data" in report["source_kept_reason"]
    assert "huge" in report["source_kept_reason"] and "shared" in report["source_kept_reason"]
    assert "transfer" in r.stderr  # progress on stderr

    # The target kernel holds the work, bound to the same notebook path.
    new = report["target"]["kernel_id"]
    assert [s for s in dst.api("GET", "api/sessions").json() if s["kernel"]["id"] == new][0]["path"] == "work/train.ipynb"
    assert value(dst, new, "zlib.crc32(data) == data_crc", "import zlib") == "True"
    assert value(dst, new, "small") == "{'a': [1, 2.5, 'three'], 'b': (None, True)}"
    assert value(dst, new, "(str(gpu.device), gpu.data[:7], str(nested['layer'].device))") == "('cpu', b'weights', 'cpu')"
    assert value(dst, new, "(pt.x, square(4), os.sep)") == "(7, 16, '/')"
    assert value(dst, new, "shared") == "'defined by a startup file'"
    assert value(dst, new, "[n for n in dir() if 'nbtui' in n]") == "[]"  # no helper left behind
    assert value(src, kid, "(len(huge), shared, '_nbtui_migrate' in dir())") == "(6291456, 'from the source', False)"

    audit = [json.loads(line) for line in (Path(os.environ["NBTUI_STATE_DIR"]) / "audit.jsonl").read_text().splitlines()]
    assert [(a["action"], a["result"], a["target"]["kernel_id"]) for a in audit] == [
        ("migrate", "intent", kid), ("migrate", "ok", kid)]
    assert src.token not in r.stdout + r.stderr and dst.token not in r.stdout + r.stderr


def test_dry_run_prints_the_plan_and_changes_nothing(servers):
    src, dst = servers
    kid = src.create_session("dry.ipynb")["kernel"]["id"]
    src.run_code(kid, "import threading\nx = list(range(10))\nlock = threading.Lock()")
    before = {k["id"] for k in dst.kernels()}
    r = run_nbtui("migrate", kid, "--to", "dst", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "plan: src:" in r.stdout and "dry.ipynb" in r.stdout
    assert any(line.split()[:1] == ["x"] and "move" in line for line in r.stdout.splitlines())
    assert any(line.split()[:1] == ["lock"] and "skip" in line and "lock" in line for line in r.stdout.splitlines())
    assert {k["id"] for k in dst.kernels()} == before
    assert value(src, kid, "(x[-1], '_nbtui_migrate' in dir())") == "(9, False)"


async def test_plain_pickle_moves_what_it_can(servers):
    """Without dill or cloudpickle, notebook-defined functions and classes are skipped with the reason."""
    src, dst = servers
    kid = src.create_session("pickle.ipynb")["kernel"]["id"]
    src.run_code(kid, "class P: pass\np = P()\nf = lambda: 1\nnums = bytearray(b'x' * 100)\nd = {'k': 1}")
    async with ServerClient("src", src.url, src.token) as a, ServerClient("dst", dst.url, dst.token) as b:
        m = Migration(ServerSource(a, kid, "python3", "pickle.ipynb"), b,
                      Options(to="dst", serializers=("pickle",), keep_source=True, transport="websocket"))
        report = await m.run()
    moved = {e.name for e in report.moved}
    skipped = {e.name: e.reason for e in report.skipped}
    assert moved == {"nums", "d"}
    assert "defined in the notebook" in skipped["f"] and "dill or cloudpickle" in skipped["p"]
    assert report.source_shut_down is False and report.source_kept_reason == "--keep-source"
    assert value(src, kid, "(d, '_nbtui_migrate' in dir())") == "({'k': 1}, False)"


@pytest.mark.parametrize("transport", ["auto", "websocket"])  # ZMQ to local kernels, or through the servers
async def test_target_kernel_dying_mid_transfer_leaves_the_source_untouched(servers, transport):
    src, dst = servers
    kid = src.create_session("dies.ipynb")["kernel"]["id"]
    src.run_code(kid, "blob = bytearray(8 << 20)\nblob[-1] = 7")
    killed = []

    def progress(p):
        if p.stage == "transfer" and p.done and not killed:  # after the first chunk landed
            pid = dst.kernel_pid(m.target_kernel)
            os.kill(pid, 9)
            killed.append(m.target_kernel)

    async with ServerClient("src", src.url, src.token) as a, ServerClient("dst", dst.url, dst.token) as b:
        m = Migration(ServerSource(a, kid, "python3", "dies.ipynb"), b,
                      Options(to="dst", chunk_bytes=1 << 20, transport=transport), progress)
        with pytest.raises(Exception) as err:
            await m.run()
    assert killed, "the target kernel was never killed"
    assert "died" in str(err.value) or "restarted" in str(err.value) or "dropped" in str(err.value)
    wait_for(lambda: killed[0] not in {k["id"] for k in dst.kernels()}, 30, what="the target kernel to be removed")
    assert value(src, kid, "(len(blob), blob[-1], '_nbtui_migrate' in dir())") == "(8388608, 7, False)"
    assert kid in {k["id"] for k in src.kernels()}
    assert not [s for s in dst.api("GET", "api/sessions").json() if s["path"] == "dies.ipynb"]


def _nothing_changed(src: JupyterServer, dst: JupyterServer, kid: str, before: set, r) -> None:
    assert {k["id"] for k in dst.kernels()} == before
    assert kid in {k["id"] for k in src.kernels()}
    assert "Traceback" not in r.stderr


# The refusals, in three tests (each one's refusals change nothing).


def test_refusals_change_nothing(servers, config_dir):
    src, dst = servers
    kid = src.create_session("taken.ipynb")["kernel"]["id"]
    other = dst.create_session("taken.ipynb")["kernel"]["id"]
    before = {k["id"] for k in dst.kernels()}

    r = _migrate(kid, "--to", "dst")  # the notebook path already has a session on dst
    assert r.returncode == 1 and "taken.ipynb already has a session on dst" in r.stderr and other[:8] in r.stderr

    r = _migrate(kid, "--to", "dst", "--notebook", "x.ipynb", "--kernel", "nope")
    assert r.returncode == 1 and "no kernel spec 'nope'" in r.stderr and "python3" in r.stderr

    r = _migrate(kid, "--to", "nowhere")
    assert r.returncode == 3 and "unknown server 'nowhere'" in r.stderr
    _nothing_changed(src, dst, kid, before, r)


def test_refusals_change_nothing_busy_or_not_python(servers, tmp_path):
    src, dst = servers
    kid = src.create_session("taken.ipynb")["kernel"]["id"]
    before = {k["id"] for k in dst.kernels()}

    echo = src.api("POST", "api/kernels", json={"name": "echo"}).json()["id"]
    r = _migrate(echo, "--to", "dst", "--notebook", "e.ipynb")
    assert r.returncode == 1 and "runs echo, not Python" in r.stderr

    # Busy until the test says so (a loaded machine cannot end a fixed busy spell early).
    release = tmp_path / "release"
    src.start_code(kid, f"import os, time\nwhile not os.path.exists({str(release)!r}): time.sleep(0.05)")
    try:
        wait_for(lambda: src.api("GET", f"api/kernels/{kid}").json()["execution_state"] == "busy", 10, what="busy")
        r = _migrate(kid, "--to", "dst", "--notebook", "y.ipynb")
        assert r.returncode == 1 and "busy" in r.stderr and "--wait" in r.stderr
        err = tmp_path / "wait.err"
        with open(err, "w") as f:
            waiting = subprocess.Popen([sys.executable, "-m", "nbtui", "migrate", kid, "--to", "dst", "--notebook",
                                        "y.ipynb", "--wait", "--dry-run"], stdout=subprocess.PIPE, stderr=f,
                                       stdin=subprocess.DEVNULL, text=True, cwd=ROOT)
        try:
            wait_for(lambda: "waiting for the source kernel" in err.read_text(), 60, what="migrate --wait waiting")
            release.touch()
            out, _ = waiting.communicate(timeout=60)
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.wait(10)
        assert waiting.returncode == 0 and "plan:" in out
    finally:
        release.touch()
    _nothing_changed(src, dst, kid, before, r)
    assert "Traceback" not in err.read_text()


def test_refusals_change_nothing_dead_target(servers, config_dir):
    src, dst = servers
    kid = src.create_session("taken.ipynb")["kernel"]["id"]
    before = {k["id"] for k in dst.kernels()}
    # A dead target server: refused before anything changes.
    with open(config_dir / "servers.toml", "a") as f:
        f.write('[servers.down]\nurl = "http://127.0.0.1:9/"\ntoken = "env"\ntoken_env = "NBTUI_TEST_TOKEN_MIG_SRC"\n')
    r = _migrate(kid, "--to", "down", "--notebook", "z.ipynb")
    assert r.returncode == 1 and "connection refused" in r.stderr and "nothing was changed" in r.stderr
    _nothing_changed(src, dst, kid, before, r)


def test_rebind_binds_a_sessionless_kernel_and_refuses_a_taken_path(servers):
    src, _ = servers
    kid = src.start_kernel()
    src.run_code(kid, "state = 41 + 1")
    other = src.create_session("busy.ipynb")["kernel"]["id"]

    r = run_nbtui("rebind", f"src:{kid}", "--notebook", "busy.ipynb")
    assert r.returncode == 1 and "busy.ipynb already has a session" in r.stderr and other[:8] in r.stderr

    r = run_nbtui("rebind", f"src:{kid}", "--notebook", "/found/again.ipynb", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    sessions = [s for s in src.api("GET", "api/sessions").json() if s["kernel"]["id"] == kid]
    assert [s["path"] for s in sessions] == ["found/again.ipynb"] and out["session_id"] == sessions[0]["id"]
    assert value(src, kid, "state") == "42"  # same kernel, state intact
    assert other in {k["id"] for k in src.kernels()}

    r = run_nbtui("rebind", f"src:{kid}", "--notebook", "third.ipynb")
    assert r.returncode == 1 and "already has a session (found/again.ipynb)" in r.stderr
    audit = [json.loads(line)["result"] for line in (Path(os.environ["NBTUI_STATE_DIR"]) / "audit.jsonl").read_text().splitlines()]
    done = [a for a in audit if a != "intent"]  # each outcome follows its intent line (issue 10)
    assert audit[0] == "intent" and done[0].startswith("failed") and done[1] == "ok"


def test_binary_frames_round_trip_in_fragments():
    from jupyter_client.session import Session

    from nbtui.jupyter.channels import decode_json, decode_v1, encode_json_fragments, encode_v1_fragments
    msg = Session(key=b"").msg("execute_request", {"code": "_nbtui_migrate.write('x', 1, 0)"})
    payload = os.urandom(2_500_000)
    msg["buffers"] = [memoryview(payload)]
    for encode, decode in ((encode_v1_fragments, decode_v1), (encode_json_fragments, decode_json)):
        frags = encode("shell", msg)
        assert len(frags) == 4 and max(len(f) for f in frags[1:]) <= 1 << 20  # head + 1 MiB slices
        channel, back = decode(b"".join(frags))
        assert channel == "shell" and back["content"]["code"] == msg["content"]["code"]
        assert [bytes(b) for b in back["buffers"]] == [payload]


def test_move_brings_the_notebook_file_and_leaves_no_orphan(servers):
    """The notebook file comes along through the contents API; a different file at the
    target is refused (nothing changed) unless --overwrite-notebook."""
    src, dst = servers
    nb = {"cells": [{"cell_type": "code", "source": "x = 41 + 1", "metadata": {}, "outputs": [],
                     "execution_count": None, "id": "c1"}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (src.root_dir / "proj").mkdir(exist_ok=True)
    (src.root_dir / "proj" / "real.ipynb").write_text(json.dumps(nb))
    kid = src.create_session("proj/real.ipynb")["kernel"]["id"]
    src.run_code(kid, "x = 41 + 1")

    r = _migrate(f"src:{kid[:8]}", "--to", "dst")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["notebook_file"]["action"] == "copy" and report["source_shut_down"] is True
    landed = json.loads((dst.root_dir / "proj" / "real.ipynb").read_text())
    assert ["".join(c["source"]) for c in landed["cells"]] == ["x = 41 + 1"]  # nbformat keeps lines
    new = report["target"]["kernel_id"]
    orphaned = run_nbtui("ls", "--json", "--orphans", "--server", "dst", "--no-discover")  # notebooks checked
    assert orphaned.returncode == 0, orphaned.stderr
    assert new not in [k["kernel_id"] for k in json.loads(orphaned.stdout)["kernels"]]

    # A different file already at the target path (its session gone): refused, nothing changed ...
    dst.shutdown_kernel(new)
    (src.root_dir / "proj" / "other.ipynb").write_text(json.dumps(dict(nb, cells=[])))
    two = src.create_session("proj/other.ipynb")["kernel"]["id"]
    before = {k["id"] for k in dst.kernels()}
    r = _migrate(two, "--to", "dst", "--notebook", "proj/real.ipynb")
    assert r.returncode == 1 and "a different file" in r.stderr and "--overwrite-notebook" in r.stderr, r.stderr
    assert {k["id"] for k in dst.kernels()} == before and two in {k["id"] for k in src.kernels()}
    assert json.loads((dst.root_dir / "proj" / "real.ipynb").read_text())["cells"]  # untouched
    # ... unless asked.
    r = _migrate(two, "--to", "dst", "--notebook", "proj/real.ipynb", "--overwrite-notebook")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["notebook_file"]["action"] == "overwrite"
    assert json.loads((dst.root_dir / "proj" / "real.ipynb").read_text())["cells"] == []


def test_rebind_to_a_path_with_no_file_makes_an_empty_notebook(servers):
    src, _ = servers
    kid = src.start_kernel()
    r = run_nbtui("rebind", f"src:{kid}", "--notebook", "fresh/new.ipynb")
    assert r.returncode == 0, r.stderr
    assert json.loads((src.root_dir / "fresh" / "new.ipynb").read_text())["cells"] == []
    orphaned = run_nbtui("ls", "--json", "--orphans", "--server", "src", "--no-discover")  # notebooks checked
    assert orphaned.returncode == 0, orphaned.stderr
    assert kid not in [k["kernel_id"] for k in json.loads(orphaned.stdout)["kernels"]]


def test_an_abort_before_the_target_kernel_exists_still_gets_its_audit_outcome(servers):
    """Every intent gets its outcome (issue 10): a target that cannot start a kernel aborts
    the move after the intent was written, before any target kernel exists."""
    src, dst = servers
    spec = dst.base / "data" / "kernels" / "broken"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": ["/nonexistent/python", "-f", "{connection_file}"], "display_name": "Broken", "language": "python"}))
    kid = src.start_kernel()
    r = _migrate(kid, "--to", "dst", "--notebook", "broken.ipynb", "--kernel", "broken")
    assert r.returncode == 1 and "could not start a kernel on dst" in r.stderr, r.stderr
    audit = [json.loads(line) for line in (Path(os.environ["NBTUI_STATE_DIR"]) / "audit.jsonl").read_text().splitlines()]
    assert [(a["action"], a["result"].split(":")[0]) for a in audit] == [("migrate", "intent"), ("migrate", "aborted")]
    assert kid in {k["id"] for k in src.kernels()}  # the source as it was
