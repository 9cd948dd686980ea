"""The fleet screen's first read in a child process (nbtui.service.forked_read), on a real server.

The runner is driven in a fresh Python process of its own (a test worker runs threads,
and nbtui forks only while no thread runs). Its first rows come from the child before the
process opens a fleet of its own; once the screen is drawn the process reads for itself,
and after that whole read the child is ended and reaped. A server the child read but the
process's own read is held back on keeps the child's rows in that whole read. The child
runs no token command (run once, by the process), and reads nothing where a hub is
configured (a hub user's server found on this host must be read as the hub's)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil

from tests.conftest import ROOT
from tests.fakehttp import FakeHTTP
from tests.jupyter import wait_for

SCRIPT = r"""
import asyncio, json, os, sys, time
from nbtui.files.config import ServerConfig, Settings
from nbtui.service.forked_read import ForkedRead
from nbtui.tui import runner as R
from nbtui.service import service as S
MODE, URL, TOKEN, OTHER, TOKEN_CMD = sys.argv[1:6]

def open_fleet():
    from nbtui.service.fleet import Fleet
    servers = [ServerConfig("srv", URL, token_source="discovered", token=TOKEN)]
    if MODE == "hub":
        servers.append(ServerConfig("hub", OTHER, token_source="none", hub=True))
    else:
        servers += [ServerConfig("slow", OTHER, token_source="none"),
                    ServerConfig("vault", URL, token_source="cmd", token_cmd=TOKEN_CMD)]
    return Fleet(servers, Settings(timeout=60))

opened = []
def open_here():
    opened.append(1)
    return open_fleet()

first = ForkedRead.start(open_fleet)
child = first.pid if first else 0
print(json.dumps({"forked": first is not None, "child": child, "httpx_here": "httpx" in sys.modules}), flush=True)
S.SCREEN_WAIT = 120.0
r = R.SnapshotRunner(R.OpenOnce(open_here, names=["srv", "x"], settings=Settings()), first=first)
r.prefetch()

async def main():
    while not first.ended:  # the child has read every server it reads
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)  # its last frame handed over, if any
    got = r.arrived()
    print(json.dumps({"keys": sorted(got.index) if got else None, "partial": got.partial if got else None,
                      "waiting": sorted(got.waiting) if got else None, "opened": len(opened)}), flush=True)
    sys.stdin.readline()  # the test has looked at what the servers were asked
    r.screen_shown()
    whole = await r.read()
    print(json.dumps({"partial": whole.partial, "keys": sorted(whole.index), "waiting": sorted(whole.waiting),
                      "opened": len(opened)}), flush=True)

asyncio.run(main())
r.close(timeout=1.0)
"""


class _Recorder(BaseHTTPRequestHandler):
    """A "hub" that only notes what it is asked (and answers 404)."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


def _drive(mode: str, server, other_url: str, token_cmd: str = "true"):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, mode, server.url, server.token, other_url, token_cmd],
                            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def line() -> dict:
        got = json.loads(proc.stdout.readline() or "{}")
        if not got:
            proc.kill()
            raise AssertionError(proc.stderr.read())
        return got

    def go() -> None:
        proc.stdin.write("go\n")
        proc.stdin.flush()

    return proc, line, go


def _gone(pid: int) -> bool:
    return not psutil.pid_exists(pid)  # a zombie (not reaped) still exists


def test_the_first_rows_come_from_a_child_whose_rows_stay_while_the_process_s_read_is_held_back(
        shared_jupyter, tmp_path):
    kid = shared_jupyter.start_kernel()
    ran = tmp_path / "token-cmd-ran"  # a line per run of the token command
    token_cmd = f"{sys.executable} -c \"open({str(ran)!r}, 'a').write('ran\\n'); print('tok')\""
    # "slow" answers its first kernel listing (the child's) at once and drips every later
    # one (the process's own read, which is then held back and goes on at its own pace).
    with FakeHTTP("drip-recheck", kernels=["slowkernel-1"]) as slow:
        proc, line, go = _drive("plain", shared_jupyter, slow.url, token_cmd)
        try:
            start = line()
            assert start["forked"] and not start["httpx_here"]
            child = line()
            # The child's answers, before this process opened any fleet; the server whose
            # token comes from a command is still waited for, and the command never ran.
            assert child["partial"] and child["opened"] == 0
            assert f"srv:{kid}" in child["keys"] and "slow:slowkernel-1" in child["keys"]
            assert child["waiting"] == ["vault"] and not ran.exists()
            go()
            whole = line()
            assert not whole["partial"] and whole["opened"] == 1
            assert f"srv:{kid}" in whole["keys"]
            assert "slow:slowkernel-1" in whole["keys"] and "slow" not in whole["waiting"]  # kept
            assert ran.read_text() == "ran\n"  # run once, by this process
            wait_for(lambda: _gone(start["child"]), 30, 0.05, "the child to be ended and reaped")
            assert proc.wait(30) == 0, proc.stderr.read()
            assert proc.stdout.read() == ""  # nothing else came out: the child wrote nothing
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            shared_jupyter.shutdown_kernel(kid)


def test_with_a_hub_configured_the_child_reads_nothing(shared_jupyter):
    hub = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    hub.paths = []  # type: ignore[attr-defined]
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    proc, line, go = _drive("hub", shared_jupyter, f"http://127.0.0.1:{hub.server_address[1]}/")
    try:
        start = line()
        assert start["forked"]
        child = line()
        assert child["keys"] is None and child["opened"] == 0  # no row came from the child
        assert hub.paths == []  # type: ignore[attr-defined]
        go()
        whole = line()
        assert not whole["partial"] and whole["opened"] == 1
        assert hub.paths  # this process's own read asked the hub  # type: ignore[attr-defined]
        assert proc.wait(30) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        hub.shutdown()
        hub.server_close()
