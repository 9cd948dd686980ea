"""The fleet screen's first read in a child process (nbtui.forked_read), on a real server.

The runner is driven in a fresh Python process of its own (a test worker runs threads,
and nbtui forks only while no thread runs): its first rows come from the child before
the process opens a fleet of its own; the child reads no hub; once the screen is drawn
the process reads for itself, and after that whole read the child is ended and reaped. The
child reads no hub and runs no token command (they are read, and run, once: by the process)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.conftest import ROOT

SCRIPT = r"""
import asyncio, json, os, sys, time
from nbtui.config import ServerConfig, Settings
from nbtui.forked_read import ForkedRead
from nbtui.tui import runner as R

URL, TOKEN, HUB, TOKEN_CMD = sys.argv[1:5]

def open_fleet():
    from nbtui.fleet import Fleet
    return Fleet([ServerConfig("srv", URL, token_source="discovered", token=TOKEN),
                  ServerConfig("hub", HUB, token_source="none", hub=True),
                  ServerConfig("vault", HUB + "vault/", token_source="cmd", token_cmd=TOKEN_CMD)],
                 Settings(timeout=10))

opened = []
def open_here():
    opened.append(sys.modules.get("httpx") is not None)
    return open_fleet()

first = ForkedRead.start(open_fleet)
print(json.dumps({"forked": first is not None, "httpx_here": "httpx" in sys.modules}), flush=True)
R.SCREEN_WAIT = 120.0
r = R.SnapshotRunner(R.OpenOnce(open_here, names=["srv", "hub", "vault"], settings=Settings()), first=first)
r.prefetch()

async def main():
    reads = r.reads()
    part = await asyncio.wait_for(reads.__anext__(), 60)
    while not first.ended:  # the child has read every server it reads
        await asyncio.sleep(0.02)
    print(json.dumps({"partial": part.partial, "keys": sorted(part.index), "waiting": list(part.waiting),
                      "opened": len(opened)}), flush=True)
    sys.stdin.readline()  # the test has counted the hub's requests
    r.screen_shown()
    whole = part
    async for whole in reads:
        pass
    try:
        os.waitpid(first.pid or -1, os.WNOHANG)
        reaped = first.pid == 0
    except ChildProcessError:
        reaped = True
    print(json.dumps({"partial": whole.partial, "keys": sorted(whole.index), "opened": len(opened),
                      "reaped": reaped, "child_pid_cleared": first.pid == 0}), flush=True)

asyncio.run(main())
r.close()
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


def test_the_first_rows_come_from_a_child_that_reads_no_hub_and_is_reaped(shared_jupyter, tmp_path):
    kid = shared_jupyter.start_kernel()
    ran = tmp_path / "token-cmd-ran"  # a line per run of the token command
    token_cmd = f"{sys.executable} -c \"open({str(ran)!r}, 'a').write('ran\\n'); print('tok')\""
    hub = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    hub.paths = []  # type: ignore[attr-defined]
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, shared_jupyter.url, shared_jupyter.token,
         f"http://127.0.0.1:{hub.server_address[1]}/", token_cmd],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        start = json.loads(proc.stdout.readline() or "{}")
        assert start == {"forked": True, "httpx_here": False}, proc.stderr.read()
        child = json.loads(proc.stdout.readline() or "{}")
        assert child, proc.stderr.read()
        # The first rows: the child's, before this process opened any fleet; the hub and the
        # server whose token comes from a command are still waited for: the child asked the
        # hub nothing and never ran the command.
        assert child["partial"] and f"srv:{kid}" in child["keys"] and child["opened"] == 0
        assert sorted(child["waiting"]) == ["hub", "vault"]
        assert hub.paths == [] and not ran.exists()  # type: ignore[attr-defined]
        proc.stdin.write("go\n")
        proc.stdin.flush()
        whole = json.loads(proc.stdout.readline() or "{}")
        assert whole, proc.stderr.read()
        assert not whole["partial"] and f"srv:{kid}" in whole["keys"] and whole["opened"] == 1
        assert whole["reaped"] and whole["child_pid_cleared"]
        assert hub.paths  # the process's own read asked the hub  # type: ignore[attr-defined]
        assert ran.read_text() == "ran\n"  # and ran the token command, once
        assert proc.wait(30) == 0, proc.stderr.read()
        assert proc.stdout.read() == ""  # nothing else came out: the child wrote nothing
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        hub.shutdown()
        hub.server_close()
        shared_jupyter.shutdown_kernel(kid)
