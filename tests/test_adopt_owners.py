"""adopt --to as root on a host shared with another user (issue 21): the connection folder
comes from the target server's command line, so that server's owner chooses it.

- root's kernel is never adopted into another user's server (its key is code execution as root);
- a connection folder that is a symlink, or lies below one, is never written through;
- a folder owned by a user other than root and the server's owner is refused, and so is one
  that group or others may write;
- the user's own kernel into the user's own server still adopts: the file is theirs, 0600.

Each refusal is one line on stderr, exit 1, and nothing is written where it points.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import run_nbtui as _run_nbtui
from tests.jupyter import wait_for
from tests.localuser import local_user  # noqa: F401  (the fixture)

ALLOW = "--ServerApp.allow_external_kernels=True"


def run_nbtui(*args: str, **kw):
    return _run_nbtui(*args, "--no-discover", **kw)


def _configure(name: str, url: str, token: str, config_dir: Path) -> None:
    var = f"NBTUI_TEST_TOKEN_{name.upper()}"
    os.environ[var] = token
    with open(config_dir / "servers.toml", "a") as f:
        f.write(f'[servers.{name}]\nurl = "{url}"\ntoken = "env"\ntoken_env = "{var}"\n')


def _one_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, (r.returncode, r.stdout, r.stderr)
    return lines[0]


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_symlinked_connection_folder_is_never_written_through(jupyter_factory, config_dir, tmp_path):
    victim = tmp_path / "root-only"
    victim.mkdir(mode=0o700)
    link = tmp_path / "ext"
    link.symlink_to(victim)
    home = jupyter_factory("home", extra_args=(ALLOW, f"--ServerApp.external_connection_dir={link}"))
    _configure("home", home.url, home.token, config_dir)
    kid = home.start_kernel()
    home.connection_file(kid)
    pid = home.kernel_pid(kid)

    for extra in ((), ("--dry-run",)):  # the plan says so too, before anything is asked
        line = _one_line(run_nbtui("adopt", f"pid:{pid}", "--to", "home", "--yes", *extra))
        assert line == f"nbtui: refused: connection folder {link} is a symlink; nbtui does not follow one here"
    # A link further up the path: nothing is created below its target either.
    line = _one_line(run_nbtui("adopt", f"pid:{pid}", "--to", "home", "--yes", "--connection-dir", f"{link}/sub"))
    assert f"connection folder {link} is a symlink" in line
    assert _entries(victim) == [] and len(home.kernels()) == 1
    # Each refusal that was not a dry run is in the audit log, and nothing else is.
    audit = Path(os.environ["NBTUI_STATE_DIR"]) / "audit.jsonl"
    results = [json.loads(x)["result"] for x in audit.read_text().splitlines()]
    assert results == [f"refused: connection folder {link} is a symlink; nbtui does not follow one here"] * 2


def test_roots_kernel_never_goes_to_another_users_server(local_user, jupyter_factory, config_dir):  # noqa: F811
    ext = local_user.home / "ext"
    theirs = local_user.start_server(ALLOW, f"--ServerApp.external_connection_dir={ext}")
    _configure("theirs", theirs.url, theirs.token, config_dir)
    root_server = jupyter_factory("rootk")
    kid = root_server.start_kernel()
    root_server.connection_file(kid)
    pid = root_server.kernel_pid(kid)
    assert psutil.Process(pid).username() == "root"

    for extra in ((), ("--dry-run",), ("--connection-dir", str(ext))):
        line = _one_line(run_nbtui("adopt", f"pid:{pid}", "--to", "theirs", "--yes", *extra))
        assert line == (f"nbtui: refused: kernel {kid[:8]} (pid {pid}) is root's and server theirs runs as "
                        f"{local_user.name}; its key would let {local_user.name} run code as root: a kernel is "
                        "adopted only into a server its own owner runs")
    assert not os.path.lexists(ext)
    r = httpx.get(theirs.url + "api/kernels", headers=theirs.headers, timeout=10)
    assert r.json() == []

    # The user's own kernel: a symlink the user plants as its connection folder, into a folder
    # only root may write, is not followed ...
    their_kid = theirs.start_kernel()
    their_pid = wait_for(lambda: next((c.pid for c in psutil.Process(theirs.pid).children(recursive=True)
                                       if any(f"kernel-{their_kid}.json" in a for a in c.cmdline())), None),
                         30, 0.1, "the user's kernel process")
    wait_for(lambda: (local_user.runtime_dir / f"kernel-{their_kid}.json").exists(), 30, 0.1, "its connection file")
    victim = local_user.base / "root-only"
    victim.mkdir(mode=0o700)
    ext.symlink_to(victim)  # (their server cannot list it either: it answers 500 meanwhile)
    os.lchown(ext, local_user.uid, -1)
    line = _one_line(run_nbtui("adopt", f"pid:{their_pid}", "--to", "theirs", "--yes"))
    assert line == f"nbtui: refused: connection folder {ext} is a symlink; nbtui does not follow one here"
    assert _entries(victim) == []

    # ... and a real folder of theirs is where the file goes: theirs, 0600, listed by their server.
    ext.unlink()
    ext.mkdir(mode=0o700)
    os.chown(ext, local_user.uid, -1)
    r = run_nbtui("adopt", f"pid:{their_pid}", "--to", "theirs", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    placed = ext / f"kernel-{their_kid}.json"
    st = placed.lstat()
    assert st.st_uid == local_user.uid and st.st_mode & 0o777 == 0o600 and st.st_nlink == 1
    assert out["plan"]["owner"] == local_user.name and out["server_kernel_id"] in {
        k["id"] for k in httpx.get(theirs.url + "api/kernels", headers=theirs.headers, timeout=10).json()}


def test_a_connection_folder_others_control_is_refused(local_user, jupyter_factory, config_dir, tmp_path):  # noqa: F811
    ext = tmp_path / "ext"
    ext.mkdir(mode=0o700)
    os.chown(ext, local_user.uid, -1)  # root's server, but the folder is another user's
    home = jupyter_factory("home", extra_args=(ALLOW, f"--ServerApp.external_connection_dir={ext}"))
    _configure("home", home.url, home.token, config_dir)
    kid = home.start_kernel()
    home.connection_file(kid)
    pid = home.kernel_pid(kid)

    line = _one_line(run_nbtui("adopt", f"pid:{pid}", "--to", "home", "--yes"))
    assert line == (f"nbtui: refused: connection folder {ext} is owned by {local_user.name}, not by root: that "
                    "user could swap what nbtui puts there")
    os.chown(ext, 0, -1)
    os.chmod(ext, 0o1777)  # root's, but anyone may create files in it (sticky or not)
    line = _one_line(run_nbtui("adopt", f"pid:{pid}", "--to", "home", "--yes"))
    assert line == (f"nbtui: refused: connection folder {ext} is writable by group and others (mode 1777): "
                    "another user could replace what nbtui puts there")
    assert _entries(ext) == [] and len(home.kernels()) == 1
