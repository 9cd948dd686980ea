"""A kernel nobody ever used reads `starting · never used`; a missing --config file is exit 2."""

from __future__ import annotations

import datetime as dt

import pytest

from nbtui.core.model import Kernel
from nbtui.display.report import kernel_json, kernels_table
from nbtui.core.states import never_used, state_text
from tests.conftest import run_nbtui


T0 = dt.datetime(2026, 11, 26, 10, 0, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(autouse=True)
def _clock(still_clock):
    still_clock(T0)


def _kernel(state="starting", connections=0, idle=120.0) -> Kernel:
    return Kernel(server="s", kernel_id="k" * 8, kernel_name="python3", state=state, connections=connections,
                  last_activity=None if idle is None else T0 - dt.timedelta(seconds=idle))


def test_starting_for_a_minute_with_no_client_reads_never_used():
    assert state_text(_kernel()) == "starting · never used"
    assert never_used(_kernel()) is True and kernel_json(_kernel())["never_used"] is True
    assert kernel_json(_kernel())["state"] == "starting"  # the contract's state stays as it was
    assert state_text(_kernel(idle=20)) == "starting"  # a kernel that is just slow to start
    assert state_text(_kernel(connections=1)) == "starting"
    assert state_text(_kernel(state="idle")) == "idle" and never_used(_kernel(state="idle")) is False
    assert never_used(_kernel(idle=None)) is None  # cannot tell is not "no"
    assert "starting · never used" in "\n".join(kernels_table([_kernel()], width=120))
    assert " never used " in kernels_table([_kernel()], width=80)[1]  # narrow: the file name keeps the room


def test_a_missing_config_file_is_a_usage_error(tmp_path):
    missing = tmp_path / "nope" / "config.toml"
    r = run_nbtui("--config", str(missing), "ls")
    assert r.returncode == 2 and str(missing) in r.stderr and "does not exist" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run_nbtui("ls", env={"NBTUI_CONFIG": str(missing)})
    assert r.returncode == 2 and "NBTUI_CONFIG" in r.stderr, r.stderr
    r = run_nbtui("--config", str(tmp_path), "ls", "--json")  # a folder with no config.toml: defaults
    assert r.returncode == 0, r.stderr


def test_servers_test_names_one_stable_identity(shared_jupyter):
    from tests.conftest import add_server

    add_server("lab", shared_jupyter)
    first, second = (run_nbtui("servers", "test", "lab", "--no-discover") for _ in range(2))
    assert first.returncode == 0 and "as anonymous (token auth)" in first.stdout, first.stdout + first.stderr
    assert first.stdout.split(" ms, ")[1] == second.stdout.split(" ms, ")[1]  # same words, every call
    import json

    r = run_nbtui("servers", "test", "lab", "--no-discover", "--json")
    s = json.loads(r.stdout)["servers"][0]
    assert s["identity"] == "anonymous (token auth)" and s["user"] is None
    assert shared_jupyter.token not in r.stdout


def test_every_server_error_reads_whole_and_servers_test_says_when_api_me_timed_out():
    """Issue 24: a missing token variable read `auth-failed … environment variable BAD is not…`;
    `servers test` said `as ?` when /api/me timed out."""
    import json

    from tests.fakehttp import FakeHTTP

    var = "NBTUI_TEST_A_VARIABLE_NOBODY_SET_WITH_A_LONG_NAME"
    assert run_nbtui("servers", "add", "bad", "http://127.0.0.1:9/", "--token-env", var).returncode == 0
    whole = f"environment variable {var} is not set"
    r = run_nbtui("servers", "test", "bad", "--no-discover", env={"COLUMNS": "60"})
    assert r.returncode == 4 and f"bad: auth-failed: {whole}" in r.stdout, r.stdout
    r = run_nbtui("ls", "--no-discover", env={"COLUMNS": "60"})
    assert whole in r.stdout, r.stdout
    r = run_nbtui("ls", "--no-discover", "--json")
    assert json.loads(r.stdout)["servers"][0]["error"] == f"server bad: {whole}"
    assert run_nbtui("servers", "remove", "bad").returncode == 0

    with FakeHTTP("liar", me_hangs=True) as srv:
        assert run_nbtui("servers", "add", "slowme", srv.url, "--no-token", "--insecure-http",
                         "--timeout", "1").returncode == 0
        r = run_nbtui("servers", "test", "slowme", "--no-discover")
        assert r.returncode == 0, r.stderr
        assert "as ? (/api/me timed out after 1 s; no auth)" in r.stdout, r.stdout
        r = run_nbtui("servers", "test", "slowme", "--no-discover", "--json")
        s = json.loads(r.stdout)["servers"][0]
        assert s["identity_error"] == "/api/me timed out after 1 s" and s["user"] is None


def test_servers_add_creates_the_config_file_a_variable_names(tmp_path):
    """Issue 24: NBTUI_CONFIG naming a config.toml not there yet made `servers add` refuse
    ("create it, or name its folder"); adding the first server is how a user makes it."""
    import stat

    cfg = tmp_path / "new" / "nbtui" / "config.toml"
    r = run_nbtui("servers", "add", "first", "http://127.0.0.1:9/", "--no-token", "--insecure-http",
                  env={"NBTUI_CONFIG": str(cfg)})
    assert r.returncode == 0, r.stderr
    assert f"created {cfg}" in r.stdout and "added first" in r.stdout
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    assert stat.S_IMODE(cfg.parent.stat().st_mode) == stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    r = run_nbtui("servers", "list", "--json", "--no-discover", env={"NBTUI_CONFIG": str(cfg)})
    assert r.returncode == 0 and [s["name"] for s in __import__("json").loads(r.stdout)["servers"]] == ["first"]
    # --config too; a bad add creates nothing; other commands still refuse a missing file
    other = tmp_path / "other" / "config.toml"
    r = run_nbtui("--config", str(other), "servers", "add", "bad name", "http://127.0.0.1:9/", "--no-token")
    assert r.returncode == 2 and not (tmp_path / "other").exists()
    r = run_nbtui("--config", str(other), "servers", "add", "x", "http://127.0.0.1:9/", "--no-token", "--insecure-http")
    assert r.returncode == 0 and other.is_file(), r.stderr
    assert run_nbtui("--config", str(tmp_path / "typo.toml"), "ls").returncode == 2
    # a link planted where the file would be is never written through
    target = tmp_path / "victim"
    target.write_text("keep\n")
    (tmp_path / "linked").mkdir(mode=0o700)
    (tmp_path / "linked" / "config.toml").symlink_to(target)
    r = run_nbtui("servers", "add", "y", "http://127.0.0.1:9/", "--no-token", "--insecure-http",
                  env={"NBTUI_CONFIG": str(tmp_path / "linked" / "config.toml")})
    assert target.read_text() == "keep\n"


def test_idle_of_a_busy_or_never_used_kernel_says_so():
    """Issue 24: a kernel busy for 3 minutes read `3m` under IDLE, as if idle 3 minutes."""
    from nbtui.display import table_rows as tr

    def idle_cell(k: Kernel, width: int) -> str:
        head, row = kernels_table([k], width=width)
        at = head.index("IDLE") + len("IDLE")
        return row[:at].rsplit(None, 1)[-1] if row[:at].rstrip() else ""

    for width in (80, 120):
        assert kernels_table([_kernel(state="busy", idle=200)], width=width)[1].count("busy 3m") == 1
        assert idle_cell(_kernel(state="busy", idle=200), width) == "3m"  # right-aligned: `busy 3m`
        assert "unused" in kernels_table([_kernel(idle=3600)], width=width)[1]  # starting for an hour
        assert idle_cell(_kernel(state="idle", idle=200), width) == "3m"
    assert tr.idle_text(tr.kernel_row(_kernel(state="busy", idle=7 * 3600 + 600))) == "busy 7h"
    assert tr.cell(tr.kernel_row(_kernel(state="busy", idle=12 * 3600)), "idle", 7) == "busy12h"
    assert tr.idle_text(tr.kernel_row(_kernel(state="busy", idle=None))) == "busy"
    assert tr.idle_text(tr.kernel_row(_kernel(idle=20))) == "20s"  # just starting: no verdict yet
    assert kernel_json(_kernel(state="busy", idle=200))["idle_seconds"] == 200  # the JSON keeps the figure
