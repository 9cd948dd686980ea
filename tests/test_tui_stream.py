"""Rows stream in as each server answers: a hung server never holds back the others, on
the first read or any later one (the runner, without a screen, on a scripted fleet)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

from nbtui.model import Kernel, ServerInfo, Snapshot, Usage
from nbtui.tui import runner as runner_mod
from nbtui.tui.runner import SnapshotRunner

T0 = dt.datetime(2026, 11, 26, 10, 0, 0, tzinfo=dt.timezone.utc)


class Hung:
    """`fast` answers at once; `slow` answers only when released (a hung server)."""

    names = ["fast", "slow"]
    settings = None

    def __init__(self):
        self.release = None
        self.reads = 0

    async def snapshot(self, on_server=None):
        self.reads += 1
        fast = Kernel("fast", f"k{self.reads}", "python3", "idle", 0, None, 5.0)
        release = self.release = asyncio.Event()
        on_server(ServerInfo("fast", "http://f/", "config"), [fast])
        await release.wait()
        slow = Kernel("slow", "s1", "python3", "busy", 1, None, 1.0)
        return Snapshot(T0, servers=(ServerInfo("fast", "http://f/", "config"), ServerInfo("slow", "http://s/", "config")),
                        kernels=(dataclasses.replace(fast, usage=Usage("local", memory_bytes=2**20)), slow))


async def test_the_fast_server_shows_before_the_hung_one_answers(monkeypatch):
    monkeypatch.setattr(runner_mod, "PARTIAL_AFTER", 0.05)
    fleet = Hung()
    r = SnapshotRunner(fleet)
    try:
        reads = r.reads()
        first = await asyncio.wait_for(reads.__anext__(), 10)
        assert first.partial and first.waiting == ("slow",) and list(first.index) == ["fast:k1"]
        r._loop.call_soon_threadsafe(fleet.release.set)
        whole = await asyncio.wait_for(reads.__anext__(), 10)
        assert not whole.partial and set(whole.index) == {"fast:k1", "slow:s1"}

        # A later read: the new fast rows come (with the last read's usage where the kernel
        # was known) while slow still hangs; slow keeps its last rows meanwhile.
        reads = r.reads()
        later = await asyncio.wait_for(reads.__anext__(), 10)
        assert later.partial and later.waiting == () and set(later.index) == {"fast:k2", "slow:s1"}
        r._loop.call_soon_threadsafe(fleet.release.set)
        assert not (await asyncio.wait_for(reads.__anext__(), 10)).partial
    finally:
        r.close()
