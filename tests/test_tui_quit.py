"""Quitting with a read in flight prints nothing: the runner cancels and waits for every
task of its loop before it closes (asyncio would print "Task was destroyed but it is
pending" or "exception was never retrieved" for what was left)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

# The real app, headless, over a fleet whose read never ends: its requests hang, and one
# fails as it is cancelled (as an HTTP client closed under a request does).
SCRIPT = r'''
import asyncio, gc
from nbtui.tui.app import NbtuiApp
class HungFleet:
    names = ["a", "b"]
    settings = None

    async def snapshot(self, on_server=None, **_):
        async def hang():
            await asyncio.sleep(3600)

        async def fails_when_cancelled():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                raise RuntimeError("the client was closed") from None

        await asyncio.gather(hang(), fails_when_cancelled(), asyncio.gather(hang(), fails_when_cancelled()))

    async def aclose(self):
        pass

async def main():
    app = NbtuiApp(HungFleet())
    async with app.run_test() as pilot:
        await pilot.pause(0.5)
        await pilot.press("q")
    print("quit", flush=True)

asyncio.run(main())
gc.collect()
'''


def test_quitting_during_a_read_prints_nothing():
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("quit")
    for noise in ("Task was destroyed", "never retrieved", "Traceback"):
        assert noise not in r.stderr, r.stderr
