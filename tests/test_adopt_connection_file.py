"""A local kernel's connection file is named on its command line, and a process's command
line is whatever its owner wrote there. As root nbtui reads that file (the kernel's key), so a
user's process naming root's connection file must not make root's kernel "its" kernel:
adopted into that user's server, the key is code execution as root.

So the file is read only as a regular file (not through a symlink, not a FIFO that would
hang the read) owned by the user who runs the process.
"""

from __future__ import annotations

import os
import uuid

import httpx
import psutil

from tests.jupyter import wait_for
from tests.localuser import SYSTEM_PYTHON, local_user  # noqa: F401  (the fixture)
from tests.test_adopt_owners import ALLOW, _configure, _one_line, run_nbtui

SLEEP = "import time; time.sleep(600)"


def _naming(parent: int, needle: str) -> int:
    """The PID of the process under ``parent`` whose command line names ``needle``."""
    def find():
        for p in [psutil.Process(parent), *psutil.Process(parent).children(recursive=True)]:
            try:
                if any(needle in a for a in p.cmdline()) and "python" in p.name():
                    return p.pid
            except psutil.Error:
                pass
        return None
    return wait_for(find, 30, 0.1, f"the process naming {needle}")


def test_a_users_process_naming_roots_connection_file_gets_no_key(local_user, jupyter_factory, config_dir):  # noqa: F811
    ext = local_user.home / "ext"
    theirs = local_user.start_server(ALLOW, f"--ServerApp.external_connection_dir={ext}")
    _configure("theirs", theirs.url, theirs.token, config_dir)
    root_server = jupyter_factory("rootk")
    kid = root_server.start_kernel()
    conn = root_server.connection_file(kid)
    # The user cannot read root's file, and need not: the name on a command line is enough.
    lure = local_user.popen(SYSTEM_PYTHON, "-c", SLEEP, "-f", str(conn))
    try:
        pid = _naming(lure.pid, str(conn))
        assert psutil.Process(pid).username() == local_user.name
        why = (f"nbtui: pid {pid}: its connection file {conn} is root's, not {local_user.name}'s, who runs "
               f"the process: nbtui reads no key from a file the process's own user does not own")
        for args in (("--to", "theirs", "--yes"), ()):
            assert _one_line(run_nbtui("adopt", f"pid:{pid}", *args)) == why
        assert not os.path.lexists(ext) or list(ext.iterdir()) == []
        assert httpx.get(theirs.url + "api/kernels", headers=theirs.headers, timeout=10).json() == []
    finally:
        lure.kill()
        lure.wait(10)


def test_a_fifo_or_symlink_named_as_connection_file_is_refused_at_once(tmp_path):
    fifo = tmp_path / f"kernel-{uuid.uuid4()}.json"
    os.mkfifo(fifo)  # a read as root would block for ever: no writer comes
    link = tmp_path / f"kernel-{uuid.uuid4()}.json"
    link.symlink_to("/etc/hostname")
    import subprocess
    import sys

    for path, problem in ((fifo, "is not a regular file"),
                          (link, "is a symlink; nbtui does not read through one")):
        p = subprocess.Popen([sys.executable, "-c", SLEEP, "-f", str(path)])
        try:
            r = run_nbtui("adopt", f"pid:{p.pid}", timeout=30)
            assert _one_line(r) == f"nbtui: pid {p.pid}: its connection file {path} {problem}"
        finally:
            p.kill()
            p.wait(10)


def test_a_local_server_listing_roots_kernel_id_does_not_get_its_state(jupyter_factory, config_dir, tmp_path):
    """migrate reaches a kernel of a server on this host over ZMQ, through the connection file
    of the process that names its id. A server that lists another server's kernel id (here
    root's) must not have that kernel's namespace moved for it: the process must be that
    server's own child, else the move goes through the server that listed it."""
    import json
    import subprocess
    import sys

    from tests.jupyter import free_port

    home = jupyter_factory("rootk")
    kid = home.start_kernel()
    home.run_code(kid, "secret_of_root = 'pw-123'")
    dest = jupyter_factory("dest")
    _configure("dest", dest.url, dest.token, config_dir)

    script, log = tmp_path / "script.json", tmp_path / "log.jsonl"
    script.write_text(json.dumps({"kernels": [kid], "paths": [], "terminals": []}))
    port = free_port()
    liar = subprocess.Popen([sys.executable, "-m", "tests.hostile_singleuser", str(script), str(log)],
                            env={**os.environ, "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}/",
                                 "JUPYTERHUB_SERVICE_PREFIX": "/"})
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/api", timeout=2).status_code == 200
                 if liar.poll() is None else True, 30, 0.1, "the lying server")
        with open(config_dir / "servers.toml", "a") as f:
            f.write(f'[servers.liar]\nurl = "http://127.0.0.1:{port}/"\ntoken = "none"\n')
        r = run_nbtui("migrate", f"liar:{kid}", "--to", "dest", "--notebook", "moved.ipynb", "--yes", timeout=120)
        assert r.returncode != 0, r.stdout
        for k in dest.kernels():
            reply = dest.run_code(k["id"], "assert 'secret_of_root' not in globals()")
            assert reply["content"]["status"] == "ok", "root's variable reached the target"
        assert kid in {k["id"] for k in home.kernels()}  # root's kernel is left alone
        # Its own server still reaches it over ZMQ (the fast path); the liar does not.
        from nbtui.migrate.adopt import local_connection_file
        found = local_connection_file(kid, home.url)
        assert found is not None and found[0] == str(home.connection_file(kid))
        assert local_connection_file(kid, f"http://127.0.0.1:{port}/") is None
    finally:
        liar.kill()
        liar.wait(10)
