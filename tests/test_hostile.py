"""Safe as root on a shared host (issue 10): hostile names, hostile servers, hostile files.

Everything here is real: a jupyter_server holding sessions on files whose names carry
markup, escapes and newlines; hostile HTTP servers (tests/fakehttp.py); leftover processes
with a hostile JPY_SESSION_NAME; symlinks in the state folder; concurrent `servers add`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT, add_server
from tests.conftest import run_nbtui as _run_nbtui
from tests.fakehttp import FakeHTTP
from tests.jupyter import JupyterServer, default_sigint, wait_for
from tests.localuser import account_tool

ESC_NAME = "evil/\x1b]0;pwned\x07\x1b[2J\x1b]52;c;ZXZpbA==\x07 x.ipynb"
HOSTILE_PATHS = ["dir[/]x.ipynb", "report [red].ipynb", ESC_NAME, "two\nlines.ipynb", "flip\u202egnp.ipynb"]
RAW_CONTROL = ("\x1b", "\x07", "\u202e")


def run_nbtui(*args, env=None, **kw):
    """The real CLI in a wide terminal (the whole of a hostile name fits its column), on
    the servers the test added only (other sessions' servers on this host stay out)."""
    if args[:2] != ("servers", "add") and "--no-discover" not in args:
        args = (*args, "--no-discover")
    return _run_nbtui(*args, env={"COLUMNS": "250", **(env or {})}, **kw)


def no_raw_control(text: str) -> bool:
    return not any(c in text for c in RAW_CONTROL)


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    """A real server with a session on a real file for each hostile name."""
    server = JupyterServer(tmp_path_factory.mktemp("jupyter-hostile"), name="named").start()
    kids = {}
    for path in HOSTILE_PATHS:
        server.write_notebook(path)
        kids[path] = server.create_session(path)["kernel"]["id"]
    yield server, kids
    server.stop()


def _add(name: str, server: JupyterServer) -> None:
    add_server(name, server, "--timeout", "5")


@pytest.fixture
def leftover():
    """Real leftover processes with Jupyter's variables (a dead server's PID), killed at teardown."""
    procs: list[subprocess.Popen] = []

    def start(session: str, *argv: str, user: str | None = None, ignore_term: bool = False):
        code = "import signal, time\n" + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore_term else "") \
            + "print('ready', flush=True)\ntime.sleep(120)"
        cmd = [sys.executable, "-c", code, *argv]
        if user is not None:
            cmd = ["runuser", "-u", user, "--", "/usr/bin/python3", "-c", code, *argv]
        env = {"PATH": os.environ["PATH"], "JPY_PARENT_PID": "999999", "JPY_SESSION_NAME": session}
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        procs.append(p)
        if user is not None:  # runuser forks: the python is its child
            return wait_for(lambda: next((c.pid for c in psutil.Process(p.pid).children()), None), 10, 0.05,
                            "the other user's process")
        return p.pid

    yield start
    for p in procs:
        for c in (psutil.Process(p.pid).children(recursive=True) if psutil.pid_exists(p.pid) else []):
            try:
                c.kill()
            except psutil.Error:
                pass
        p.kill()
        p.wait(10)


# -- 1. text, never markup or control codes -------------------------------------------------------


def test_ls_shows_hostile_notebook_names_as_visible_text_and_json_keeps_them(named):
    server, kids = named
    _add("named", server)
    r = run_nbtui("ls")
    assert r.returncode == 0, r.stderr
    assert no_raw_control(r.stdout) and no_raw_control(r.stderr)
    assert "dir[/]x.ipynb" in r.stdout and "report [red].ipynb" in r.stdout
    assert "\\x1b]0;pwned\\x07" in r.stdout  # escapes shown, not acted on
    assert "two\\nlines.ipynb" in r.stdout and "flip\\u202egnp" in r.stdout
    rows = [line for line in r.stdout.splitlines() if "named" in line.split()[:3]]  # after the flag and KIND cells
    assert len(rows) == len(HOSTILE_PATHS)  # a newline in a name never splits a row
    data = json.loads(run_nbtui("ls", "--json").stdout)
    assert {k["session"]["path"] for k in data["kernels"]} == set(HOSTILE_PATHS)  # exact strings


def test_leftover_with_hostile_session_name_and_secrets_in_its_cmdline(leftover):
    pid = leftover("/x/\x1b]0;pwned\x07\x1b[2J.ipynb", "--token=s3cr3t-tok", "--password", "hunter2",
                   "api_key=K3Y", "Authorization: token AUTHV")
    for args in (("ls", "--orphans"), ("kill", f"pid:{pid}", "--dry-run"), ("cull", "--orphans", "--dry-run")):
        r = run_nbtui(*args, "--no-discover")
        assert r.returncode in (0, 1), (args, r.stderr)
        shown = r.stdout + r.stderr
        assert str(pid) in shown, (args, shown)
        assert no_raw_control(shown), (args, shown)
        assert "\\x1b]0;pwned" in shown, (args, shown)
        for secret in ("s3cr3t-tok", "hunter2", "K3Y", "AUTHV"):
            assert secret not in shown, (args, secret)
    data = json.loads(run_nbtui("ls", "--json", "--no-discover").stdout)
    [proc] = [p for p in data["processes"] if p["pid"] == pid]
    assert proc["notebook"] == "/x/\x1b]0;pwned\x07\x1b[2J.ipynb"  # JSON keeps the exact string
    assert "--token=***" in proc["cmdline"] and "--password ***" in proc["cmdline"]
    assert not any(s in proc["cmdline"] for s in ("s3cr3t-tok", "hunter2", "K3Y", "AUTHV"))


# -- 3. every network step bounded ----------------------------------------------------------------


@pytest.mark.parametrize("mode, words", [
    ("deep", "nested too deep"),
    ("huge", "with more than 1M (max_body in config.toml)"),
    ("drip", "timed out after 2 s"),
    ("scheme", "another scheme"),
])
def test_a_hostile_server_is_that_servers_error_and_holds_back_no_other(named, config_dir, mode, words):
    server, kids = named
    _add("named", server)
    (config_dir / "config.toml").write_text('max_body = "1M"\n')  # the default 64M: bench/hostile.py
    with FakeHTTP(mode, size=8 << 20) as bad:
        r = run_nbtui("servers", "add", "bad", bad.url, "--no-token", "--timeout", "2")
        assert r.returncode == 0, r.stderr
        r = run_nbtui("ls", "--json", timeout=60)
        assert r.returncode == 4, r.stderr
        data = json.loads(r.stdout)
        by_name = {s["name"]: s for s in data["servers"]}
        assert by_name["named"]["status"] == "ok" and len(data["kernels"]) == len(HOSTILE_PATHS)
        assert words in by_name["bad"]["error"], by_name["bad"]
        r = run_nbtui("servers", "test", "bad", timeout=60)
        assert r.returncode == 4 and words in r.stdout and "internal error" not in r.stdout + r.stderr


def test_fields_of_the_wrong_types_are_no_internal_error(named):
    with FakeHTTP("badtypes") as bad:
        assert run_nbtui("servers", "add", "bad", bad.url, "--no-token").returncode == 0
        for args in (("ls",), ("ls", "--json"), ("servers", "test")):
            r = run_nbtui(*args, "--no-discover")
            assert r.returncode == 0 and "internal error" not in r.stderr, (args, r.stderr)
        assert "as anonymous" in run_nbtui("servers", "test", "--no-discover").stdout


def test_exec_timeout_covers_a_websocket_that_never_upgrades():
    with FakeHTTP("ws-hang", kernels=["0badbeef-0000-4000-8000-000000000001"]) as hang:
        assert run_nbtui("servers", "add", "hang", hang.url, "--no-token").returncode == 0
        r = run_nbtui("exec", "hang:0badbeef", "print(1)", "--timeout", "2", "--no-discover", timeout=60)
    assert r.returncode == 5, (r.stdout, r.stderr)
    [line] = r.stderr.splitlines()
    assert line.startswith("nbtui: timed out after 2 s: ") and "handshake" in line


def test_a_slow_token_command_delays_only_its_server(named):
    server, kids = named
    _add("named", server)
    r = run_nbtui("servers", "add", "slow", "http://127.0.0.1:9/", "--token-cmd", "sleep 20", "--timeout", "1")
    assert r.returncode == 0, r.stderr
    r = run_nbtui("ls", "--json", timeout=15)  # the 20 s command would overrun this
    assert r.returncode == 4
    by_name = {s["name"]: s for s in json.loads(r.stdout)["servers"]}
    assert by_name["named"]["status"] == "ok" and "token command took over 1 s" in by_name["slow"]["error"]


# -- 2. attribution a lying server cannot steer ---------------------------------------------------


def test_a_server_listing_another_servers_kernel_gets_neither_its_process_nor_its_kill(named):
    server, kids = named
    _add("named", server)
    kid = kids["dir[/]x.ipynb"]
    pid = server.kernel_pid(kid)
    with FakeHTTP("liar", kernels=[kid]) as liar:
        assert run_nbtui("servers", "add", "liar", liar.url, "--no-token").returncode == 0
        data = json.loads(run_nbtui("ls", "--json").stdout)
        rows = {k["server"]: k for k in data["kernels"] if k["kernel_id"] == kid}
        assert rows["named"]["pid"] == pid
        assert rows["liar"]["pid"] is None and rows["liar"]["memory_bytes"] is None
        r = run_nbtui("kill", f"liar:{kid}", "--yes", "--grace", "1")
        assert r.returncode == 0, r.stderr
        assert liar.deleted  # it went to the liar, which did nothing
    assert psutil.pid_exists(pid) and kid in {k["id"] for k in server.kernels()}
    assert f"pid {pid}" not in r.stdout


# -- 4. files as root -----------------------------------------------------------------------------


def test_symlinks_in_the_state_folder_are_never_written_through(tmp_path, leftover):
    state = Path(os.environ["NBTUI_STATE_DIR"])
    state.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (state / "cull.lock").symlink_to(victim)
    r = run_nbtui("cull", "--orphans", "--dry-run", "--no-discover")
    assert r.returncode == 1 and victim.read_text() == "precious\n"
    assert r.stderr.strip() == f"nbtui: {state / 'cull.lock'}: is a symlink; nbtui does not write through one"
    (state / "cull.lock").unlink()
    (state / "audit.jsonl").symlink_to(victim)
    pid = leftover("x.ipynb")
    r = run_nbtui("kill", f"pid:{pid}", "--yes", "--no-discover")
    assert r.returncode == 1 and psutil.pid_exists(pid) and victim.read_text() == "precious\n"
    assert "not started: cannot write the audit log" in r.stderr and "symlink" in r.stderr
    (state / "audit.jsonl").unlink()
    (state / "audit.jsonl").symlink_to(tmp_path / "dangling")
    r = run_nbtui("kill", f"pid:{pid}", "--yes", "--no-discover")
    assert r.returncode == 1 and not (tmp_path / "dangling").exists() and psutil.pid_exists(pid)


def test_state_folder_and_files_are_private(leftover):
    state = Path(os.environ["NBTUI_STATE_DIR"]) / "deep" / "er"
    pid = leftover("x.ipynb")
    r = run_nbtui("kill", f"pid:{pid}", "--yes", "--grace", "1", "--no-discover", env={"NBTUI_STATE_DIR": str(state)})
    assert r.returncode == 0, r.stderr
    assert (state.stat().st_mode & 0o777) == 0o700 and (state.parent.stat().st_mode & 0o777) == 0o700
    assert ((state / "audit.jsonl").stat().st_mode & 0o777) == 0o600
    results = [json.loads(x)["result"] for x in (state / "audit.jsonl").read_text().splitlines()]
    assert results == ["intent", "ok"]


def test_ctrl_c_during_the_grace_period_stops_escalating(leftover):
    pid = leftover("stubborn.ipynb", ignore_term=True)
    audit = Path(os.environ["NBTUI_STATE_DIR"]) / "audit.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "nbtui", "kill", f"pid:{pid}", "--yes", "--grace", "30",
                          "--no-discover"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=default_sigint)
    try:
        wait_for(lambda: audit.exists() and '"intent"' in audit.read_text(), 30, 0.1, "the intent line")
        wait_for(lambda: psutil.Process(pid).status() in (psutil.STATUS_SLEEPING, psutil.STATUS_RUNNING)
                 and p.poll() is None, 5, 0.1, "the grace period")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, (out, err)
    assert psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE  # no SIGKILL came
    assert "interrupted" in out and "no SIGKILL sent" in err
    results = [json.loads(x)["result"] for x in audit.read_text().splitlines()]
    assert results[0] == "intent" and results[-1].startswith("interrupted")


def test_config_files_that_are_not_regular_or_huge_are_one_line(config_dir):
    fifo = config_dir / "config.toml"
    os.mkfifo(fifo)
    r = run_nbtui("ls", "--no-discover", timeout=20)  # a FIFO must not hang the read
    assert r.returncode == 2 and r.stderr.strip() == f"nbtui: {fifo}: is not a regular file"
    fifo.unlink()
    fifo.write_text("# " + "x" * (2 << 20) + "\n")
    r = run_nbtui("ls", "--no-discover")
    assert r.returncode == 2 and "a config file is at most" in r.stderr and len(r.stderr.splitlines()) == 1


def test_ten_concurrent_servers_add_keep_ten_entries(config_dir):
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda i: run_nbtui("servers", "add", f"s{i}", f"http://127.0.0.1:{9000 + i}/",
                                                     "--no-token"), range(10)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    data = json.loads(run_nbtui("servers", "list", "--json", "--no-discover").stdout)
    assert sorted(s["name"] for s in data["servers"]) == sorted(f"s{i}" for i in range(10))


# -- 5. secrets -----------------------------------------------------------------------------------


@pytest.mark.parametrize("args, code, words", [
    (("servers", "add", "t", "http://u:PASSWORD@127.0.0.1:9/", "--no-token"), 2, "user:password@"),
    (("servers", "add", "pid", "http://127.0.0.1:9/", "--no-token"), 2, "'pid' is reserved"),
    (("servers", "add", "terminal", "http://127.0.0.1:9/", "--no-token"), 2, "reserved"),
    (("servers", "add", "t", "https://127.0.0.1:9/", "--no-token", "--ca-bundle", "/nonexistent"), 2,
     "no such file: /nonexistent"),
])
def test_bad_servers_add_is_one_line_and_echoes_no_secret(args, code, words):
    r = run_nbtui(*args)
    assert r.returncode == code and words in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    assert "PASSWORD" not in r.stderr + r.stdout


def test_a_config_error_never_echoes_a_secret_value(config_dir):
    (config_dir / "servers.toml").write_text('[servers.t]\nurl = "http://127.0.0.1:9/"\ntoken = "tok-VALUE-123"\n')
    r = run_nbtui("ls", "--no-discover")
    assert r.returncode == 2 and "servers.t.token" in r.stderr and "tok-VALUE-123" not in r.stderr


# -- a second local user --------------------------------------------------------------------------


@pytest.fixture
def other_user():
    """A uniquely named local user, removed at teardown (needs root, as on CI)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to add a local user (useradd); runs on CI")
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no /usr/bin/python3 for the other user to run")
    name = f"nbtui-t-{os.urandom(3).hex()}"
    r = account_tool("useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name)
    if r.returncode != 0:
        pytest.skip(f"useradd failed: {r.stderr.strip()}")
    try:
        yield name
    finally:
        for p in psutil.process_iter(["username"]):
            if p.info["username"] == name:  # only this test's user's processes
                try:
                    p.kill()
                except psutil.Error:
                    pass
        account_tool("userdel", name)


def test_another_users_hostile_leftover_reaches_roots_terminal_as_text(other_user, leftover):
    pid = leftover("/home/x/\x1b]0;pwned\x07\x1b]52;c;ZXZpbA==\x07.ipynb", "--token=their-tok", user=other_user)
    r = run_nbtui("ls", "--orphans", "--no-discover")
    assert r.returncode == 0 and f"pid {pid} ({other_user})" in r.stdout, r.stdout
    assert no_raw_control(r.stdout) and "\\x1b]52;c;" in r.stdout and "their-tok" not in r.stdout
    r = run_nbtui("kill", f"pid:{pid}", "--dry-run", "--no-discover")
    assert no_raw_control(r.stdout) and other_user in r.stdout


def test_runtime_files_of_the_wrong_shapes_are_unreadable_not_a_crash(tmp_path):
    from nbtui.jupyter.discovery import discover
    me = os.getpid()
    (tmp_path / f"jpserver-{me}.json").write_text(json.dumps(
        {"pid": me, "url": "http://127.0.0.1:1/", "token": 5, "base_url": ["x"], "root_dir": {"a": 1}}))
    (tmp_path / "jpserver-2.json").write_text("[" * 100_000)
    (tmp_path / "jpserver-3.json").write_text("[1, 2]")
    found = discover(tmp_path)
    [s] = found.servers
    assert s.token is None and s.root_dir is None and s.url == "http://127.0.0.1:1/"
    assert sorted(Path(p).name for p in found.unreadable) == ["jpserver-2.json", "jpserver-3.json"]
