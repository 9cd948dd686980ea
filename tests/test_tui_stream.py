"""Rows stream in as each server answers: a hung server never holds back the others, on
the first read or any later one (the runner, without a screen, on a scripted fleet)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import threading

from nbtui.files.config import ServerConfig
from nbtui.service.fleet import Fleet
from nbtui.host.local import LocalHost
from nbtui.core.model import Kernel, ServerInfo, Snapshot, Usage
from nbtui.service import service as service_mod
from nbtui.tui.runner import SnapshotRunner
T0 = dt.datetime(2026, 11, 26, 10, 0, 0, tzinfo=dt.timezone.utc)


class Hung:
    """`fast` answers at once; `slow` answers only when released (a hung server)."""

    names = ["fast", "slow"]
    settings = None

    def __init__(self):
        self.release = None
        self.reads = 0

    async def snapshot(self, on_server=None, **_):
        self.reads += 1
        fast = Kernel("fast", f"k{self.reads}", "python3", "idle", 0, None)
        release = self.release = asyncio.Event()
        on_server(ServerInfo("fast", "http://f/", "config"), [fast])
        await release.wait()
        slow = Kernel("slow", "s1", "python3", "busy", 1, None)
        return Snapshot(T0, servers=(ServerInfo("fast", "http://f/", "config"), ServerInfo("slow", "http://s/", "config")),
                        kernels=(dataclasses.replace(fast, usage=Usage("local", memory_bytes=2**20)), slow))


async def _set(event: asyncio.Event) -> None:
    event.set()  # on the fleet service's loop, where the read waits for it


async def test_the_fast_server_shows_before_the_hung_one_answers(monkeypatch):
    monkeypatch.setattr(service_mod, "PARTIAL_AFTER", 0.05)
    fleet = Hung()
    r = SnapshotRunner(fleet)
    try:
        reads = r.reads()
        first = await asyncio.wait_for(reads.__anext__(), 10)
        assert first.partial and first.waiting == ("slow",) and list(first.index) == ["fast:k1"]
        r.service.submit(lambda _fleet: _set(fleet.release))
        whole = await asyncio.wait_for(reads.__anext__(), 10)
        assert not whole.partial and set(whole.index) == {"fast:k1", "slow:s1"}

        # A later read: the new fast rows come (with the last read's usage where the kernel
        # was known) while slow still hangs; slow keeps its last rows meanwhile.
        reads = r.reads()
        later = await asyncio.wait_for(reads.__anext__(), 10)
        assert later.partial and later.waiting == () and set(later.index) == {"fast:k2", "slow:s1"}
        r.service.submit(lambda _fleet: _set(fleet.release))
        assert not (await asyncio.wait_for(reads.__anext__(), 10)).partial
    finally:
        r.close()


class _Watched(LocalHost):
    """The real local host view, noting when the fleet first samples it."""

    def __init__(self):
        super().__init__()
        self.primed = threading.Event()

    def prime(self):
        self.primed.set()
        return super().prime()


def _prefetched(server) -> tuple[Fleet, SnapshotRunner, _Watched]:
    """A fleet of the one real server on a watched host, its runner's first read begun."""
    host = _Watched()
    fleet = Fleet([ServerConfig("srv", server.url, token_source="discovered", token=server.token,
                                pid=server.pid)], host=host)
    r = SnapshotRunner(fleet)
    r.prefetch()
    return fleet, r, host


async def test_the_read_begun_before_the_screen_samples_the_host_once_it_is_drawn(shared_jupyter, monkeypatch):
    # A real server and kernel: the prefetched read hands its rows over at once, but the
    # process scan and NVML wait for the screen's first paint (they would take the CPU
    # from it), then the whole read comes with the kernel's usage.
    monkeypatch.setattr(service_mod, "SCREEN_WAIT", 60.0)
    kid = shared_jupyter.start_kernel()
    _, r, host = _prefetched(shared_jupyter)
    try:
        reads = r.reads()
        first = await asyncio.wait_for(reads.__anext__(), 30)
        assert first.partial and f"srv:{kid}" in first.index
        await asyncio.sleep(0.3)  # what it would have had the time to start, it has not
        assert not host.primed.is_set()
        r.screen_shown()
        whole = await asyncio.wait_for(reads.__anext__(), 30)
        assert not whole.partial and host.primed.is_set()
        usage = whole.index[f"srv:{kid}"].kernel.usage
        assert usage is not None and usage.pid == shared_jupyter.kernel_pid(kid)
    finally:
        r.close()
        shared_jupyter.shutdown_kernel(kid)


async def test_without_a_screen_the_prefetched_read_samples_the_host_after_its_wait(shared_jupyter, monkeypatch):
    monkeypatch.setattr(service_mod, "SCREEN_WAIT", 0.2)
    _, r, host = _prefetched(shared_jupyter)
    try:
        whole = await asyncio.wait_for(r.read(), 30)
        assert not whole.partial and host.primed.is_set()
    finally:
        r.close()


async def test_the_screen_says_when_it_is_drawn_so_usage_follows_at_once(shared_jupyter, monkeypatch):
    # The TUI as `nbtui` starts it: the runner's first read begins before the app, the
    # screen's first paint releases its host sample (SCREEN_WAIT would be a minute).
    from nbtui.tui.app import NbtuiApp
    from tests.jupyter import until

    monkeypatch.setattr(service_mod, "SCREEN_WAIT", 60.0)
    kid = shared_jupyter.start_kernel()
    fleet, r, host = _prefetched(shared_jupyter)
    app = NbtuiApp(fleet, refresh=30, runner=r)
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            await until(pilot, lambda: app.snapshots_seen >= 1, timeout=30, what="the first whole read")
            kernel = next(k for k in app.snapshot.kernels if k.kernel_id == kid)
            assert host.primed.is_set() and kernel.usage is not None
    finally:
        r.close()
        shared_jupyter.shutdown_kernel(kid)


def _started(fleet):
    """The app as `nbtui` starts it: the runner's first read begun before the app exists."""
    from nbtui.tui.app import NbtuiApp
    r = SnapshotRunner(fleet)
    r.prefetch()
    return NbtuiApp(fleet, refresh=30, runner=r), r


class _Recorded:
    """A fleet whose every read is one recorded snapshot (one server, one kernel)."""

    names = ("srv",)
    readonly = False
    settings = None

    async def snapshot(self, on_server=None, **_):
        k = Kernel("srv", "k-recorded", "python3", "idle", 0, None)
        return Snapshot(T0, servers=(ServerInfo("srv", "http://s/", "config"),), kernels=(k,))

    def palette_commands(self):
        return []


async def test_the_first_frame_with_rows_is_drawn_after_textual_s_start_not_dropped_in_it(monkeypatch):
    # Textual renders and then drops every frame inside its startup batch: a fleet screen
    # drawn there would show its rows only on a later refresh. The first frame that holds
    # the rows must be one that reaches the terminal.
    from textual.app import App

    from nbtui.tui.app import NbtuiApp
    from tests.jupyter import until

    frames: list[tuple[int, int]] = []  # (rows in the table, batch depth) per frame drawn
    display = App._display

    def watched(self, screen, renderable):
        if renderable is not None:
            try:
                rows = screen.query_one("#kernels").row_count
            except Exception:
                rows = 0
            frames.append((rows, self._batch_count))
        return display(self, screen, renderable)

    monkeypatch.setattr(App, "_display", watched)
    app, r = _started(_Recorded())
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: any(rows for rows, _ in frames), timeout=30, what="a frame with the row")
            first = next(depth for rows, depth in frames if rows)
            assert first == 0, f"the first frame with rows was drawn inside Textual's start (batch {first})"
    finally:
        r.close()


class _BFirst:
    """Server b answers first; the whole read puts a's kernel above b's."""

    names = ["a", "b"]
    readonly = False
    settings = None

    def __init__(self):
        self.release = threading.Event()

    async def snapshot(self, on_server=None, **_):
        kb = Kernel("b", "kb", "python3", "idle", 0, None)
        ka = Kernel("a", "ka", "python3", "idle", 0, None)
        if on_server is not None:
            on_server(ServerInfo("b", "http://b/", "config"), [kb])
        while not self.release.is_set():
            await asyncio.sleep(0.02)
        return Snapshot(T0, servers=(ServerInfo("a", "http://a/", "config"), ServerInfo("b", "http://b/", "config")),
                        kernels=(ka, kb))

    def palette_commands(self):
        return []


async def test_the_cursor_stays_on_the_top_row_while_the_first_rows_stream_in():
    # b's row comes first (at the top, under the cursor); the whole read puts a's above it.
    # Nobody moved the cursor: it is on the top row, a's, not on b's wherever that went.
    from nbtui.tui.app import NbtuiApp
    from tests.jupyter import until

    fleet = _BFirst()
    app, r = _started(fleet)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.fleet_screen is not None and app.fleet_screen.is_mounted
                        and app.fleet_screen.table.order == ["b:kb"], what="b's row alone")
            table = app.fleet_screen.table
            assert table.key_at_cursor() == "b:kb"
            layout = table.layout_columns
            await pilot.resize_terminal(200, 30)  # the table rebuilt meanwhile: the cursor still nobody's
            await until(pilot, lambda: table.layout_columns != layout and table.order == ["b:kb"], what="the resize")
            fleet.release.set()
            await until(pilot, lambda: table.order == ["a:ka", "b:kb"], what="the whole read")
            assert table.key_at_cursor() == "a:ka"
            await pilot.press("down")  # once moved, the cursor follows its kernel
            assert table.key_at_cursor() == "b:kb"
            app.apply_snapshot(Snapshot(T0, servers=app.snapshot.servers, kernels=(
                Kernel("a", "k0", "python3", "idle", 0, None), Kernel("a", "ka", "python3", "idle", 0, None),
                Kernel("b", "kb", "python3", "idle", 0, None))))
            await pilot.pause()
            assert table.key_at_cursor() == "b:kb"
    finally:
        r.close()
