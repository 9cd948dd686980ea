"""The core: servers and ls against real Jupyter servers, and every kind of bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keyring
import keyring.backend

from nbtui import cli
from tests.conftest import ROOT, add_server, run_nbtui
from tests.fakehttp import FakeHTTP
from tests.jupyter import free_port


class MemoryKeyring(keyring.backend.KeyringBackend):
    priority = 1

    def __init__(self):
        super().__init__()
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service, username):
        return self.store.get((service, username))

    def set_password(self, service, username, password):
        self.store[(service, username)] = password

    def delete_password(self, service, username):
        self.store.pop((service, username), None)


def ls_json(*args: str, env: dict | None = None):
    r = run_nbtui("ls", "--json", *args, env=env)
    return r, (json.loads(r.stdout) if r.stdout.strip() else None)


# -- the package and the command line -------------------------------------------------------


def test_version_and_help():
    r = run_nbtui("--version")
    assert r.returncode == 0 and r.stdout.startswith("nbtui ")
    r = run_nbtui("ls", "--help")
    assert r.returncode == 0 and "--orphans" in r.stdout


def test_unknown_flag_is_one_line_exit_2():
    r = run_nbtui("ls", "--bogus")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "--bogus" in r.stderr


def test_a_mistyped_command_or_flag_says_did_you_mean_and_no_prefix_is_taken():
    r = run_nbtui("lss")
    assert r.returncode == 2 and "did you mean `ls`?" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run_nbtui("servers", "tst")
    assert r.returncode == 2 and "did you mean `test`?" in r.stderr
    # `--orphan` was silently read as `--orphans`: a typo must not choose what a cull acts on.
    r = run_nbtui("ls", "--orphan", "--json")
    assert r.returncode == 2 and r.stdout == "" and "did you mean `--orphans`?" in r.stderr, r.stderr
    r = run_nbtui("cull", "--orph", "--dry-run")
    assert r.returncode == 2 and "--orph" in r.stderr
    r = run_nbtui("ls", "--zzz")
    assert r.returncode == 2 and "did you mean" not in r.stderr


def test_ls_does_not_import_textual():
    code = (
        "import sys; from nbtui import cli; rc = cli.main(['ls', '--json']); "
        "assert rc == 0, rc; print('textual' in sys.modules)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False"


def test_the_tui_without_a_terminal_exits_2_pointing_at_ls(tmp_path, shared_jupyter):
    """As under cron: stdin /dev/null, stdout a file. No escape sequences in the file, no
    Textual loaded, one line saying what to run instead (issue 24: it drew into the file and
    never exited)."""
    code = ("import sys; from nbtui import cli; rc = cli.main(sys.argv[1:]); "
            "sys.stderr.write('textual=%s rc=%s\\n' % ('textual' in sys.modules, rc))")
    for argv, hint in (([], "`nbtui ls`"), (["demo"], "`nbtui demo --no-tui`")):
        out = tmp_path / "out.txt"
        with open(out, "w") as f:
            r = subprocess.run([sys.executable, "-c", code, *argv], stdin=subprocess.DEVNULL, stdout=f,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=60)
        lines = r.stderr.strip().splitlines()
        assert lines[-1] == "textual=False rc=2", r.stderr
        assert len(lines) == 2 and "no terminal" in lines[0] and hint in lines[0], r.stderr
        assert out.read_text() == ""
    r = run_nbtui()  # the real command: stdout and stdin are pipes
    assert r.returncode == 2 and "nbtui ls" in r.stderr and r.stdout == ""
    # console: a bad TARGET is still exit 3 first; a good one without a terminal exit 2
    add_server("lab", shared_jupyter)
    kid = shared_jupyter.start_kernel()
    assert run_nbtui("--no-discover", "console", "lab:ffffffff").returncode == 3
    r = run_nbtui("--no-discover", "console", f"lab:{kid[:8]}")
    assert r.returncode == 2 and "no terminal" in r.stderr and r.stdout == "", r.stderr


def test_no_servers_says_how_to_add_one():
    r = run_nbtui("ls")
    assert r.returncode == 0
    assert "nbtui servers add" in r.stdout and "nbtui demo" in r.stdout


# -- config files -----------------------------------------------------------------------------


def test_malformed_config_toml_names_file_and_line(config_dir):
    (config_dir / "config.toml").write_text('refresh = 2\ntheme = "dark\n')
    r = run_nbtui("ls")
    assert r.returncode == 2
    assert "config.toml" in r.stderr and "line 2" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) <= 2


def test_bad_value_in_config_names_key_and_line(config_dir):
    (config_dir / "config.toml").write_text('refresh = 2\n\n[orphans]\nidle = "2hrs"\n')
    r = run_nbtui("ls")
    assert r.returncode == 2
    assert "orphans.idle" in r.stderr and "line 4" in r.stderr and "90s" in r.stderr


def test_malformed_servers_toml(config_dir):
    (config_dir / "servers.toml").write_text('[servers.gpu1]\nurl = "ftp://x"\n')
    r = run_nbtui("servers", "list")
    assert r.returncode == 2
    assert "servers.toml" in r.stderr and "servers.gpu1.url" in r.stderr and "line 2" in r.stderr


def test_unknown_key_in_servers_toml(config_dir):
    (config_dir / "servers.toml").write_text('[servers.gpu1]\nurl = "http://127.0.0.1:1/"\ntokn = "env"\n')
    r = run_nbtui("ls")
    assert r.returncode == 2 and "tokn" in r.stderr and "unknown key" in r.stderr


def test_nan_and_negative_numbers_in_config_files_are_refused(config_dir):
    (config_dir / "servers.toml").write_text('[servers.a]\nurl = "http://127.0.0.1:9/"\ntoken = "none"\ntimeout = nan\n')
    r = run_nbtui("--no-discover", "ls")
    assert r.returncode == 2 and "servers.a.timeout" in r.stderr and "internal error" not in r.stderr
    (config_dir / "servers.toml").unlink()
    for body, key in (("[orphans]\nidle = nan\n", "orphans.idle"), ("[cull]\nidle = -5\n", "cull.idle")):
        (config_dir / "config.toml").write_text(body)
        r = run_nbtui("--no-discover", "ls")
        assert r.returncode == 2 and key in r.stderr, r.stderr


# -- servers add / list / remove ----------------------------------------------------------------


def test_servers_add_list_remove(jupyter, config_dir):
    add_server("gpu1", jupyter)
    r = run_nbtui("servers", "add", "gpu1", jupyter.url, "--token-env", "X")
    assert r.returncode == 2 and "exists" in r.stderr and "--replace" in r.stderr
    r = run_nbtui("servers", "list", "--json", "--no-discover")
    assert [s["name"] for s in json.loads(r.stdout)["servers"]] == ["gpu1"]
    text = (config_dir / "servers.toml").read_text()
    assert jupyter.token not in text
    assert oct((config_dir / "servers.toml").stat().st_mode & 0o777) == "0o600"
    r = run_nbtui("servers", "remove", "gpu1")
    assert r.returncode == 0
    r = run_nbtui("servers", "remove", "gpu1")
    assert r.returncode == 3


def test_servers_add_without_keyring_backend_says_what_to_use():
    r = run_nbtui("servers", "add", "gpu1", "http://127.0.0.1:9/", "--token-stdin", input="secret-token-123\n")
    assert r.returncode == 2
    assert "keyring" in r.stderr and "--token-env" in r.stderr and "--token-cmd" in r.stderr
    assert "secret-token-123" not in r.stderr + r.stdout


def test_bad_url_error_does_not_echo_a_pasted_token():
    r = run_nbtui("servers", "add", "x", "localhost:8888/lab?token=pasted-secret-42", "--no-token")
    assert r.returncode == 2 and "bad server URL" in r.stderr and "localhost:8888/lab" in r.stderr
    assert "pasted-secret-42" not in r.stderr + r.stdout
    r = run_nbtui("servers", "add", "x", "ftp://me:pw-secret-43@h/", "--no-token")
    assert r.returncode == 2 and "pw-secret-43" not in r.stderr + r.stdout
    for url in ("http://[::1", "http://h:99999/"):
        r = run_nbtui("servers", "add", "x", url, "--no-token")
        assert r.returncode == 2 and "bad server URL" in r.stderr and "internal error" not in r.stderr


def test_servers_add_refuses_a_timeout_that_servers_toml_would_refuse(config_dir):
    r = run_nbtui("servers", "add", "x", "http://127.0.0.1:9/", "--timeout", "0", "--no-token")
    assert r.returncode == 2 and "--timeout" in r.stderr
    r = run_nbtui("--no-discover", "servers", "list")
    assert r.returncode == 0 and "no servers" in r.stdout


def test_nan_seconds_are_refused():
    for args in (["--refresh", "nan", "ls"], ["kill", "pid:1", "--grace", "nan", "--dry-run"],
                 ["exec", "x:y", "1", "--timeout", "nan"]):
        r = run_nbtui(*args)
        assert r.returncode == 2 and "argument --" in r.stderr, (args, r.stderr)


def test_token_over_plain_http_to_remote_host_is_refused():
    r = run_nbtui("servers", "add", "far", "http://jupyter.example.org:8888/", "--token-env", "T")
    assert r.returncode != 0 and "https" in r.stderr and "--insecure-http" in r.stderr


def test_keyring_path_with_memory_backend(jupyter, config_dir, monkeypatch, capsys):
    ring = MemoryKeyring()
    previous = keyring.get_keyring()
    keyring.set_keyring(ring)
    try:
        monkeypatch.setattr(sys, "stdin", _Stdin(jupyter.token + "\n"))
        assert cli.main(["servers", "add", "kr", jupyter.url, "--token-stdin", "--no-discover"]) == 0
        assert ring.store[("nbtui", "kr")] == jupyter.token
        capsys.readouterr()
        assert cli.main(["ls", "--json", "--no-discover"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["servers"][0]["status"] == "ok"
        assert cli.main(["servers", "remove", "kr"]) == 0
        assert ("nbtui", "kr") not in ring.store
    finally:
        keyring.set_keyring(previous)


class _Stdin:
    def __init__(self, text):
        self.text = text

    def readline(self):
        return self.text

    def isatty(self):
        return False


def test_token_cmd(jupyter, tmp_path):
    script = tmp_path / "tok.sh"
    script.write_text(f"#!/bin/sh\necho {jupyter.token}\n")
    script.chmod(0o700)
    r = run_nbtui("servers", "add", "viacmd", jupyter.url, "--token-cmd", str(script))
    assert r.returncode == 0, r.stderr
    r, out = ls_json("--no-discover")
    assert r.returncode == 0 and out["servers"][0]["status"] == "ok"


# -- ls across a fleet ---------------------------------------------------------------------------


def test_ls_two_servers_joins_sessions(jupyter_factory):
    a = jupyter_factory("a")
    b = jupyter_factory("b")
    add_server("a", a)
    add_server("b", b)
    a.write_notebook("work/train.ipynb")
    sess = a.create_session("work/train.ipynb")
    bare = b.start_kernel()
    r, out = ls_json("--no-discover")
    assert r.returncode == 0, r.stderr
    assert [s["status"] for s in out["servers"]] == ["ok", "ok"]
    assert all(s["version"] and s["latency_ms"] is not None for s in out["servers"])
    by_id = {k["kernel_id"]: k for k in out["kernels"]}
    nb = by_id[sess["kernel"]["id"]]
    assert nb["server"] == "a" and nb["session"]["path"] == "work/train.ipynb"
    assert nb["orphan_reasons"] == []
    lone = by_id[bare]
    assert lone["server"] == "b" and lone["session"] is None and lone["orphan_reasons"] == ["no-session"]
    assert lone["idle_seconds"] is not None and lone["last_activity"].endswith("Z")
    for key in ("pid", "cpu_percent", "memory_bytes", "gpu_memory_bytes", "gpus", "usage_source", "connections"):
        assert key in lone
    assert set(out) >= {"generated_at", "servers", "kernels", "processes", "unattributed_gpu"}

    r, only_b = ls_json("--no-discover", "--server", "b")
    assert [s["name"] for s in only_b["servers"]] == ["b"]
    r, orphans = ls_json("--no-discover", "--orphans")
    assert [k["kernel_id"] for k in orphans["kernels"]] == [bare]

    table = run_nbtui("ls", "--no-discover", env={"COLUMNS": "80"})
    lines = table.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert any("work/train.ipynb" in line for line in lines)
    assert "2 kernels" in lines[-1] or "2 kernels" in table.stdout


def test_ls_unknown_server_is_exit_3(jupyter):
    add_server("a", jupyter)
    r = run_nbtui("ls", "--server", "nope", "--no-discover")
    assert r.returncode == 3 and "nope" in r.stderr and "a" in r.stderr


def test_long_paths_are_truncated_in_the_middle(jupyter):
    add_server("a", jupyter)
    path = "projects/" + "very-long-folder-name/" * 5 + "final-notebook.ipynb"
    jupyter.write_notebook(path)
    jupyter.create_session(path)
    r = run_nbtui("ls", "--no-discover", env={"COLUMNS": "80"})
    row = next(line for line in r.stdout.splitlines() if "…" in line)
    # The file name stays whole; the folders are cut (issue 13: the name is what the user knows).
    assert len(row) <= 80 and "…/final-notebook.ipynb" in row, row


# -- broken servers: each gets one line, the rest are still read -----------------------------------


def test_broken_servers_are_reported_and_the_good_one_still_listed(jupyter_factory, config_dir, tmp_path):
    good = jupyter_factory("good")
    hung = jupyter_factory("hung")
    add_server("good", good)
    add_server("hung", hung, "--timeout", "1.5")
    add_server("wrongtok", good)
    os.environ["NBTUI_TEST_TOKEN_WRONGTOK"] = "definitely-not-the-token"
    refused_port = free_port()
    run_nbtui("servers", "add", "refused", f"http://127.0.0.1:{refused_port}/", "--no-token")
    good.start_kernel()
    with FakeHTTP("login") as login, FakeHTTP("html") as html, FakeHTTP("500") as err:
        for name, fake in (("login", login), ("html", html), ("err500", err)):
            assert run_nbtui("servers", "add", name, fake.url, "--no-token").returncode == 0
        hung.pause()
        try:
            r, out = ls_json("--no-discover")
            table = run_nbtui("ls", "--no-discover")
            test = run_nbtui("servers", "test", "--no-discover")
        finally:
            hung.resume()
    assert r.returncode == 4, r.stderr
    status = {s["name"]: (s["status"], s["error_kind"]) for s in out["servers"]}
    assert status == {
        "good": ("ok", None),
        "hung": ("timeout", "timeout"),
        "wrongtok": ("auth-failed", "auth-failed"),
        "refused": ("unreachable", "unreachable"),
        "login": ("auth-failed", "auth-failed"),
        "html": ("error", "not-jupyter"),
        "err500": ("error", "server-error"),
    }
    assert [k["server"] for k in out["kernels"]] == ["good"]
    errors = {s["name"]: s["error"] for s in out["servers"]}
    assert all(len(e.splitlines()) == 1 and name in e for name, e in errors.items() if e)
    assert table.returncode == 4
    assert "not read: server hung: timed out" in table.stdout
    assert test.returncode == 4 and "good: ok" in test.stdout and "wrongtok: auth-failed" in test.stdout
    # No token anywhere: output, errors, or any file nbtui wrote.
    everything = r.stdout + r.stderr + table.stdout + table.stderr + test.stdout + test.stderr
    for root in (config_dir, Path(os.environ["NBTUI_STATE_DIR"])):
        if root.exists():
            everything += "".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())
    for token in (good.token, hung.token, "definitely-not-the-token"):
        assert token not in everything


# -- discovery -------------------------------------------------------------------------------------


def test_discovery_finds_local_server_and_reports_stale_files(jupyter, tmp_path):
    runtime = jupyter.runtime_dir
    stale = runtime / "jpserver-999999.json"
    stale.write_text(json.dumps({"pid": 999999, "url": "http://127.0.0.1:1/", "token": "stale-token-xyz"}))
    env = {"JUPYTER_RUNTIME_DIR": str(runtime)}
    kid = jupyter.start_kernel()
    r, out = ls_json(env=env)
    assert r.returncode == 0, r.stderr
    assert [s["source"] for s in out["servers"]] == ["discovered"]
    assert out["servers"][0]["pid"] == jupyter.pid
    assert kid in [k["kernel_id"] for k in out["kernels"]]
    listing = run_nbtui("servers", "list", env=env)
    assert listing.stdout.count("stale runtime file") == 1 and str(stale) in listing.stdout
    assert stale.exists()  # reported, never deleted
    assert "stale-token-xyz" not in listing.stdout + r.stdout
    # Configured and discovered: listed once, under the user's name.
    add_server("mine", jupyter)
    r, out = ls_json(env=env)
    assert [(s["name"], s["source"]) for s in out["servers"]] == [("mine", "config")]


def test_config_flag_reads_the_named_file(tmp_path):
    cfg = tmp_path / "elsewhere"
    cfg.mkdir()
    (cfg / "gpu.toml").write_text("refresh = -1\n")
    (cfg / "config.toml").write_text("refresh = 2\n")
    r = run_nbtui("--config", str(cfg / "gpu.toml"), "ls")
    assert r.returncode == 2 and "gpu.toml" in r.stderr and "refresh" in r.stderr
    r = run_nbtui("ls", "--config", str(cfg))  # a folder: its config.toml
    assert r.returncode == 0, r.stderr


def test_seconds_flags_refuse_nan_and_out_of_range():
    for args in (("kill", "pid:1", "--grace", "nan"), ("cull", "--grace", "5000"),
                 ("exec", "x", "--timeout", "0"), ("--refresh", "inf", "ls")):
        r = run_nbtui(*args)
        assert r.returncode == 2 and "seconds" in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)


# -- discovered servers: grouped by owner, gone after one failed read (issue 24 #5) ---------------


def test_a_discovered_server_that_died_leaves_after_one_failed_read(jupyter, monkeypatch):
    """A discovered server killed during a session: the next read drops it (no `✗ local-N
    unreachable` line for the rest of the session) and its runtime file counts as stale."""
    import asyncio
    import getpass

    from nbtui.files import config as config_mod
    from nbtui.service.fleet import Fleet
    from nbtui.tui.fleet_header import server_lines, summary_text
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(jupyter.runtime_dir))
    config = config_mod.load()

    async def session():
        fleet = Fleet.from_config(config)
        async with fleet:
            first = await fleet.snapshot()
            jupyter.kill_hard()  # SIGKILL: its runtime file stays behind
            second = await fleet.snapshot()
            third = await fleet.snapshot()
        return first, second, third

    first, second, third = asyncio.run(session())
    (found,) = [s for s in first.servers if s.pid == jupyter.pid]
    assert found.ok and found.source == "discovered" and found.owner == getpass.getuser()
    for snap in (second, third):
        assert not any(s.pid == jupyter.pid for s in snap.servers), snap.servers
        assert any(f.endswith(f"jpserver-{jupyter.pid}.json") for f in snap.stale_files), snap.stale_files
        assert "unreachable" not in server_lines(snap, 80, theme=_theme()).plain
        summary = summary_text(snap, 120, theme=_theme(), readonly=False, shown=0, total=0, filtered=False,
                               orphans_only=False, marked=0, frees="").plain
        assert f"{len(snap.stale_files)} stale" in summary, summary
    from nbtui.display.report import orphan_lines
    assert any("stale runtime file" in line for line in orphan_lines(third, third.kernels))


def _theme():
    from nbtui.tui.themes import load_all
    return next(t for t in load_all()[0] if t.name == "nbtui-dark")


def test_other_users_discovered_servers_are_one_line_per_user(monkeypatch):
    import datetime as dt

    from nbtui.display import server_groups
    from nbtui.core.model import ServerInfo, Snapshot
    from nbtui.display.server_groups import split_others
    from nbtui.tui.fleet_header import server_lines

    def srv(name, owner, source="discovered", status="ok"):
        return ServerInfo(name=name, url=f"http://127.0.0.1:1/{name}/", source=source, owner=owner,
                          status=status, error=None if status == "ok" else f"server {name}: refused")

    servers = (srv("mine", "root", source="config"), srv("local-1", "root"),
               *(srv(f"local-a{i}", "alice") for i in range(5)), srv("local-b1", "bob"),
               srv("local-b2", "bob", status="unreachable"))
    own, groups = split_others(servers, user="root")
    assert [s.name for s in own] == ["mine", "local-1"]
    assert [(g.owner, g.summary()) for g in groups] == [("alice", "5 servers"), ("bob", "2 servers, 1 not read")]
    snap = Snapshot(generated_at=dt.datetime.now(dt.timezone.utc), servers=servers)
    monkeypatch.setattr(server_groups, "me", lambda: "root")  # as root's screen sees it
    text = server_lines(snap, 120, theme=_theme()).plain
    assert "user alice 5 servers" in text and "user bob 2 servers, 1 not read" in text, text
    assert "local-a" not in text and "local-b2" not in text and text.count("\n") == 0, text
