"""Safe as root (issue 10), the cases the first 66 did not cover: the re-check before kill
and rebind against a server that drips only then, a hostile JupyterHub, the exporter's
labels from hostile names, GPU holders' process names. Real fake servers (tests/fakehttp.py)
and real processes; no sleeps, every wait polls with a deadline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from tests.conftest import run_nbtui as _run_nbtui
from tests.fakehttp import FakeHTTP
from tests.jupyter import wait_for

RAW_CONTROL = ("\x1b", "\x07", "\u202e", "\x00")


def run_nbtui(*args, env=None, **kw):
    if args[:2] != ("servers", "add") and "--no-discover" not in args:
        args = (*args, "--no-discover")
    return _run_nbtui(*args, env={"COLUMNS": "250", **(env or {})}, **kw)


def audit_lines() -> list[dict]:
    path = Path(os.environ["NBTUI_STATE_DIR"]) / "audit.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


# -- the re-check before acting, against a server that drips only then ---------------------------


@pytest.fixture
def kernel_process(tmp_path):
    """A real local process that names kernel KID's connection file, a child of this test
    process (which serves the fake API): the host ties it to the fake server, so a kill that
    got past its re-check would signal it. It writes TERM to a file if it is ever signalled."""
    kid = str(uuid.uuid4())
    mark = tmp_path / "signalled"
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: open(sys.argv[3], 'w').write('TERM'))\n"
            "print('ready', flush=True)\n"
            "time.sleep(120)\n")
    p = subprocess.Popen([sys.executable, "-c", code, "-f", str(tmp_path / f"kernel-{kid}.json"), str(mark)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    yield kid, p, mark
    p.kill()
    p.wait(10)


def test_kill_and_rebind_meet_a_drip_at_the_recheck_end_within_its_timeout(kernel_process):
    kid, proc, mark = kernel_process
    timeout = 2.0
    with FakeHTTP("drip-recheck", kernels=[kid]) as bad:
        r = run_nbtui("servers", "add", "bad", bad.url, "--no-token", "--timeout", f"{timeout:g}")
        assert r.returncode == 0, r.stderr
        rows = json.loads(run_nbtui("ls", "--json").stdout)["kernels"]
        assert [k["pid"] for k in rows] == [proc.pid]  # the host ties the process to this server's kernel

        bad.httpd.listings = 0  # type: ignore[attr-defined]  # kill's own read is answered, its re-check drips
        t0 = time.monotonic()
        r = run_nbtui("kill", f"bad:{kid}", "--yes", "--grace", "1", timeout=60)
        took = time.monotonic() - t0
        assert r.returncode == 4, (r.stdout, r.stderr)
        *plan, line = r.stdout.strip().splitlines()  # the plan, then one line for the outcome
        assert line.startswith(f"bad:{kid}: failed: server bad: timed out after 2 s (the re-check before acting"), line
        assert not r.stderr
        assert took < timeout + 30, took  # not a speed check: unbounded, it would last the drip's 1,000 s
        assert "GET /api/kernels" in bad.dripped and not bad.deleted  # no DELETE was ever sent
        assert proc.poll() is None and not mark.exists()  # nothing signalled
        results = [(a["action"], a["result"]) for a in audit_lines()]
        assert results[0] == ("kill", "intent") and results[1][1].startswith("failed: server bad: timed out")

        bad.httpd.listings = 0  # type: ignore[attr-defined]  # the next read is answered again
        t0 = time.monotonic()
        r = run_nbtui("rebind", f"bad:{kid}", "--notebook", "again.ipynb", timeout=60)
        took = time.monotonic() - t0
        assert r.returncode == 4, (r.stdout, r.stderr)
        err = r.stderr.strip()
        assert len(err.splitlines()) == 1 and "timed out after 2 s (the re-check before acting" in err, err
        assert "internal error" not in err and took < timeout + 30, took  # (the drip: 1,000 s)
        assert f"GET /api/kernels/{kid}" in bad.dripped and not bad.deleted
        assert not [d for d in bad.dripped if d.startswith("POST")]  # no session was asked for
        assert proc.poll() is None and not mark.exists()
        results = [(a["action"], a["result"]) for a in audit_lines()]
        assert results[-2] == ("rebind", "intent") and results[-1][1].startswith("failed: server bad: timed out")


# -- a hostile JupyterHub ----------------------------------------------------------------------


def _user(name: str, *servers: str, **fields) -> dict:
    """A hub user with ready servers ("" is the default one), at JupyterHub's URLs."""
    from urllib.parse import quote

    base = f"/user/{quote(name, safe='')}/"
    return {"name": name, "servers": {
        s: {"name": s, "ready": True, "url": base + (f"{quote(s, safe='')}/" if s else ""),
            "started": "2026-01-01T00:00:00Z", "last_activity": "2026-01-01T00:00:00Z", **fields}
        for s in servers}}


def _add_hub(url: str, timeout: float = 3.0) -> None:
    r = run_nbtui("servers", "add", "hub", url, "--hub", "--no-token", "--route", "proxy",
                  "--timeout", f"{timeout:g}")
    assert r.returncode == 0, r.stderr


ESC = "\x1b]0;pwned\x07\x1b[2J\u202e"


def test_crafted_hub_names_cannot_pose_as_another_users_server_and_show_as_text():
    alice, alice_x, mallory, eve = (str(uuid.uuid4()) for _ in range(4))
    users = [_user("alice", "", "x"), _user("alice/x", ""), _user(f"eve{ESC}", ""), _user("bob:" + alice, "")]
    kernels_at = {"/user/alice/": [alice], "/user/alice/x/": [alice_x], "/user/alice%2Fx/": [mallory],
                  "/user/eve%1B%5D0%3Bpwned%07%1B%5B2J%E2%80%AE/": [eve]}
    with FakeHTTP("hub", users=users, kernels_at=kernels_at) as hub:
        _add_hub(hub.url)
        r = run_nbtui("ls", "--json")
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        by_kernel = {k["kernel_id"]: k["server"] for k in data["kernels"]}
        # user "alice/x" is not alice's server "x"; a ":" in a name cannot split a TARGET
        assert by_kernel == {alice: "hub/alice", alice_x: "hub/alice/x", mallory: "hub/alice%2Fx",
                             eve: "hub/eve%1B]0;pwned%07%1B[2J%E2%80%AE"}
        rows = {s["name"]: s for s in data["servers"]}
        assert rows["hub/alice%2Fx"]["user"] == "alice/x" and rows["hub/bob%3A" + alice]["user"] == "bob:" + alice
        assert rows["hub/eve%1B]0;pwned%07%1B[2J%E2%80%AE"]["user"] == f"eve{ESC}"  # JSON keeps the exact name

        # Another nbtui's state: this one read them through the proxy a moment ago (proxy-reads.json).
        human = run_nbtui("ls", env={"NBTUI_STATE_DIR": os.environ["NBTUI_STATE_DIR"] + "-human"})
        assert human.returncode == 0 and not any(c in human.stdout + human.stderr for c in RAW_CONTROL), human.stdout
        assert "hub/alice%2Fx" in human.stdout

        r = run_nbtui("kill", f"hub/alice/x:{mallory}", "--yes")  # mallory's kernel is not on alice's server
        assert r.returncode == 3 and "no kernel matches" in r.stderr and not hub.deleted, (r.stdout, r.stderr)
        r = run_nbtui("kill", f"hub/alice:{alice}", "--yes", "--grace", "0")
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert hub.deleted == [f"/user/alice/api/kernels/{alice}"]  # alice's own, and only it
        r = run_nbtui("kill", f"hub/bob%3A{alice}:{alice[:8]}", "--dry-run")
        assert r.returncode == 3 and "no kernel matches" in r.stderr  # bob:ALICE-ID lists no kernel at all


@pytest.mark.parametrize("case", ["loop", "endless", "100k", "servers-list", "huge-activity"])
def test_a_hostile_hubs_user_list_is_one_line_or_plain_rows_within_its_timeout(case):
    timeout = 2.0
    kid = str(uuid.uuid4())
    users, pages = [_user("alice", "")], "plain"
    if case in ("loop", "endless"):
        pages = case
    elif case == "100k":  # each with a ready server; the hub's timeout lets the whole list arrive
        users = [{"name": f"u{i}", "servers": {"": {"ready": True, "url": f"/user/u{i}/"}}} for i in range(100_000)]
        timeout = 15.0
    elif case == "servers-list":
        users = [{"name": "bob", "servers": [{"name": "", "ready": True, "url": "/user/bob/"}]}, _user("alice", "")]
    elif case == "huge-activity":
        users = [_user("alice", "", last_activity="2026-01-01T00:00:00." + "1" * (4 << 20) + "Z"),
                 _user("carol", "", started="9" * (4 << 20))]
    with FakeHTTP("hub", users=users, pages=pages, kernels_at={"/user/alice/": [kid]}) as hub:
        _add_hub(hub.url, timeout)
        t0 = time.monotonic()
        r = run_nbtui("ls", "--json", timeout=120)
        took = time.monotonic() - t0
        assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
        data = json.loads(r.stdout)
        row = next(s for s in data["servers"] if s["name"] == "hub")
        kernels = [k["kernel_id"] for k in data["kernels"]]
        if case == "endless":  # pages until the hub's timeout, never to the most pages nbtui follows
            # (Python 3.11's wait_for swallowed the read's cancellation when a page answered at
            # that moment: the pages went on to the 10,000th, 23 s on a busy host)
            assert r.returncode == 4 and row["error_kind"] == "timeout", row
            assert "timed out after 2 s" in row["error"] or "did not end within 2 s" in row["error"], row
            assert took < timeout + 30, took  # not a speed check: a hang, not a slow host, fails it
        elif case == "100k":
            assert r.returncode == 4 and row["error_kind"] == "too-big", row
            assert "lists 100,000 users' servers, more than the 5,000 nbtui reads of one hub" in row["error"]
        else:  # a next that loops stops at once; odd shapes and huge strings: plain rows
            assert r.returncode == 0 and row["status"] == "ok", row
            assert kernels == [kid]
            assert "hub/bob" not in {s["name"] for s in data["servers"]}  # servers as a list: not a server


# -- strings no UTF-8 stream can write: lone surrogates, undecodable bytes --------------------------


def clean_output(data: bytes) -> bool:
    """Valid UTF-8 with no control character but the newline, no C1, nothing that reorders."""
    text = data.decode("utf-8")  # strict: a raw \xff or \x9b byte fails here
    return not any((ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) <= 0x9f or c in "\u202e\u2066"
                   for c in text)


def test_lone_surrogates_from_a_server_and_undecodable_bytes_of_a_process_are_escapes(tmp_path):
    kid = str(uuid.uuid4())
    path = "a\ud800b\udc9b[2J\x1b]0;t\x07.ipynb"  # JSON carries it as \ud800 \udc9b \u001b …
    code = "import time; print('ready', flush=True); time.sleep(120)"
    env = {"PATH": os.environ["PATH"], "JPY_PARENT_PID": "999999"}
    env_b = {k.encode(): v.encode() for k, v in env.items()}
    env_b[b"JPY_SESSION_NAME"] = b"/x/\xff\x9b[2J\xc2\x9b31m.ipynb"  # not UTF-8, and 8-bit CSIs
    p = subprocess.Popen([sys.executable.encode(), b"-c", code.encode(), b"--name=\xff\x9b]0;t\x07"], env=env_b,
                         stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline().strip() == b"ready"
        with FakeHTTP("liar", kernels=[kid], paths={kid: path}, user="eve\ud800\x1b[2J") as bad:
            assert run_nbtui("servers", "add", "bad", bad.url, "--no-token").returncode == 0
            for args in (("ls",), ("ls", "--orphans"), ("ls", "--json"), ("servers", "test"),
                         ("kill", f"bad:{kid}", "--dry-run"), ("kill", f"pid:{p.pid}", "--dry-run"),
                         ("kill", f"bad:{kid}", "--yes")):
                r = subprocess.run([sys.executable, "-m", "nbtui", *args, "--no-discover"], capture_output=True,
                                   env={**os.environ, "COLUMNS": "250"}, timeout=60)
                assert r.returncode == 0 and b"internal error" not in r.stderr, (args, r.stdout, r.stderr)
                assert clean_output(r.stdout) and clean_output(r.stderr), (args, r.stdout)
            data = json.loads(run_nbtui("ls", "--json").stdout)
            assert [k["session"]["path"] for k in data["kernels"] if k["kernel_id"] == kid] == [path]  # JSON: exact
            row = next(x for x in data["processes"] if x["pid"] == p.pid)
            assert row["cmdline"].endswith("--name=\udcff\udc9b]0;t\x07")  # the bytes, as Python decodes them
            assert "\\udc9b" in run_nbtui("ls", "--orphans").stdout
            assert bad.deleted  # the kill went to the server, and was audited:
        lines = (Path(os.environ["NBTUI_STATE_DIR"]) / "audit.jsonl").read_bytes()
        assert clean_output(lines) and [json.loads(x)["target"]["notebook"] for x in lines.splitlines()] == [path, path]
    finally:
        p.kill()
        p.wait(10)


# -- the exporter's label values ------------------------------------------------------------------------


def test_exporter_labels_from_hostile_hub_users_and_notebook_paths_are_escaped_text(tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    import httpx

    kid = str(uuid.uuid4())
    user = f"eve{ESC}\ud800"
    path = 'x"} 1\nnbtui_up{server="forged"} 1\n\x1b]52;c;ZXZpbA==\x07\\\u2066.ipynb'
    from urllib.parse import quote

    base = f"/user/{quote(user, safe='', errors='surrogatepass')}/"
    users = [{"name": user, "servers": {"": {"ready": True, "url": base}}}]
    with FakeHTTP("hub", users=users, kernels_at={base: [kid]}, paths={kid: path}) as hub:
        _add_hub(hub.url)
        log = tmp_path / "log"
        proc = subprocess.Popen([sys.executable, "-m", "nbtui", "--no-discover", "exporter", "--listen", "127.0.0.1:0",
                                 "--per-kernel", "--refresh", "1"], stdout=log.open("wb"), stderr=subprocess.STDOUT)
        try:
            line = wait_for(lambda: "serving http" in log.read_text() and log.read_text(), 60, what="serving")
            url = line.split("serving ", 1)[1].split()[0]  # …/metrics
            body = wait_for(lambda: (lambda b: b if b"nbtui_kernel_info{" in b else None)(httpx.get(url, timeout=10).content),
                            60, 0.2, "a scrape with the kernel")
        finally:
            proc.terminate()
            proc.wait(30)
        assert clean_output(body)
        info = [s for f in text_string_to_metric_families(body.decode()) for s in f.samples if s.name == "nbtui_kernel_info"]
        assert len(info) == 1  # one kernel: the path's newline forged no second series
        labels = info[0].labels
        assert labels["user"] == "eve\\x1b]0;pwned\\x07\\x1b[2J\\u202e\\ud800"
        assert labels["server"] == "hub/eve%1B]0;pwned%07%1B[2J%E2%80%AE%ED%A0%80"
        assert labels["notebook"].startswith('x"} 1\\nnbtui_up{server="forged"} 1\\n\\x1b]52;c;')
        ups = [s.labels["server"] for f in text_string_to_metric_families(body.decode()) for s in f.samples
               if s.name == "nbtui_up"]
        assert "forged" not in ups
        assert "Traceback" not in log.read_text()


# -- GPU holders named by a server's extension ------------------------------------------------------


def test_gpu_holders_from_a_hostile_extension_show_as_plain_text(capsys):
    from nbtui.core import model
    from nbtui.display import report
    from nbtui.host import ledger, wire
    from nbtui.display import gpu_line
    evil = "python \x1b]0;pwned\x07\x1b[2J\u202e\ud800 --token=s3cr3t train.py"
    body = {"nbtui_usage": 1, "host": "far", "kernels": {}, "gpus": [{
        "index": 0, "uuid": "GPU-\x1b[31m", "name": "H100\u202e", "memory_used": 3 << 30, "memory_total": 80 << 30,
        "utilization": 1.0, "ledger": {"kernels": 0, "terminals": 0, "leftovers": 0, "other": 3 << 30,
                                       "unattributed": 0, "unassigned": 0, "note": "odd \x1b[2J\ud800 note",
                                       "others": [{"pid": 7, "user": "eve\x1b[2J", "command": evil,
                                                   "memory_bytes": 3 << 30}]}}]}
    _usage, devices, _note = wire.load("far", body)
    (d,) = devices
    text = gpu_line.line(d)
    assert clean_output(text.encode()) and "\\x1b[2J" in text and "(eve\\x1b[2J)" in text
    snap = model.Snapshot(generated_at=dt_now(), servers=(), kernels=(), gpus=devices)
    from nbtui.cli.commands.common import print_json
    capsys.readouterr()
    print_json(report.snapshot_json(snap))  # (the lone surrogate: past orjson, the standard encoder's path)
    dumped = capsys.readouterr().out
    assert clean_output(dumped.encode())
    command = json.loads(dumped)["gpus"][0]["ledger"]["others"][0]["command"]
    assert command == evil.replace("s3cr3t", "***")  # scrubbed on this side too, else exact


def dt_now():
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc)


def test_a_time_utc_cannot_hold_is_unknown_and_the_rest_of_the_fleet_is_read(config_dir):
    """A liar's ``last_activity`` in range as written but not in UTC (year 1 an hour east of
    it, year 9,999 an hour west): that kernel's time is unknown, never the whole read's end."""
    early, late = "0badbeef-0000-4000-8000-00000000000e", "0badbeef-0000-4000-8000-00000000000f"
    with FakeHTTP("liar", kernels=[early, late],
                  times={early: "0001-01-01T00:00:00+01:00", late: "9999-12-31T23:59:59-01:00"}) as liar:
        assert run_nbtui("servers", "add", "liar", liar.url, "--no-token").returncode == 0
        r = run_nbtui("ls", "--json")
        assert r.returncode == 0, r.stderr
        rows = {k["kernel_id"]: k for k in json.loads(r.stdout)["kernels"]}
        assert set(rows) == {early, late}
        assert all(rows[k]["last_activity"] is None and rows[k]["idle_seconds"] is None for k in rows)
        table = run_nbtui("ls")
        assert table.returncode == 0 and early[:8] in table.stdout, table.stderr
