"""A refresh that reorders the fleet table repaints only the rows whose place or cells
changed (issue 25): what the screen shows is still, line for line, the new order."""

from __future__ import annotations

import contextlib
import datetime as dt
import gc

import pytest

from nbtui.core.model import Kernel, ServerInfo, Snapshot
from nbtui.tui.runner import SnapshotRunner
from tests.jupyter import until

T0 = dt.datetime(2026, 11, 26, 10, 0, 0, tzinfo=dt.timezone.utc)
SERVER = ServerInfo("srv", "http://srv/", "config")


@pytest.fixture(autouse=True)
def _clock(still_clock):
    still_clock(T0)


def _kernel(i: int, idle_minutes: int) -> Kernel:
    return Kernel("srv", f"{i:04x}beef-0000-4000-8000-000000000000", "python3", "idle", 0,
                  T0 - dt.timedelta(minutes=idle_minutes))


class _Static:
    names = ("srv",)
    readonly = False
    settings = None

    def __init__(self, snap: Snapshot):
        self.snap = snap

    async def snapshot(self, on_server=None, **_):
        return self.snap

    def palette_commands(self):
        return []


def _ids_on_screen(app) -> list[str]:
    text = [s.text for s in app.screen._compositor.render_strips()]
    return [word[:8] for line in text for word in line.split() if len(word) == 8 and word.endswith("beef")]


async def test_the_rows_on_screen_follow_a_new_order_line_for_line():
    from nbtui.tui.app import NbtuiApp

    # 40 kernels, the longest idle first; a refresh finds the second and the sixth used just
    # now (they go to the end) and the rest as they were: the rows under them move up, the
    # top row (the cursor's) stays.
    kernels = [_kernel(i, 600 - i) for i in range(40)]
    first = Snapshot(T0, servers=(SERVER,), kernels=tuple(kernels))
    fleet = _Static(first)
    runner = SnapshotRunner(fleet)
    app = NbtuiApp(fleet, refresh=3600, runner=runner)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await until(pilot, lambda: app.fleet_screen is not None and app.fleet_screen.is_mounted
                        and len(app.fleet_screen.table.order) == 40, what="the first read on screen")
            await pilot.pause()
            await pilot.press("end", "home")  # the lines below the screen drawn (and cached) once too
            await pilot.pause()
            before = _ids_on_screen(app)
            assert before[:3] == [f"{i:04x}beef" for i in range(3)]
            used = [kernels[1], kernels[5]]
            moved = [k for k in kernels if k not in used] + [
                Kernel(k.server, k.kernel_id, "python3", "idle", 0, T0) for k in used]
            app.apply_snapshot(Snapshot(T0, servers=(SERVER,), kernels=tuple(moved)))
            await pilot.pause()
            table = app.fleet_screen.table
            assert table.order[:2] == ["srv:" + kernels[0].kernel_id, "srv:" + kernels[2].kernel_id]
            shown = _ids_on_screen(app)
            assert shown == [key.split(":")[1][:8] for key in table.order][:len(shown)]
            assert shown[:5] == [f"{i:04x}beef" for i in (0, 2, 3, 4, 6)]
            await pilot.press("end")  # the lines below, where the two used kernels went
            await pilot.pause()
            shown = _ids_on_screen(app)
            ids = [key.split(":")[1][:8] for key in table.order]
            assert shown == ids[len(ids) - len(shown):]
            assert shown[-2:] == ["0001beef", "0005beef"]
    finally:
        runner.close()


def _colour_of(app, word: str):
    """The foreground colours the table draws ``word`` in, in the rows below the cursor's
    (the first row; the header is line 0)."""
    table = app.fleet_screen.table
    return {seg.style.color for y in range(2, 1 + len(table.order)) for seg in table.render_line(y)
            if seg.text.strip() == word and seg.style is not None}


@contextlib.asynccontextmanager
async def _showing(kernels, size: tuple[int, int]):
    """The app on a fleet that always reads ``kernels``, its first read on screen."""
    from nbtui.tui.app import NbtuiApp

    fleet = _Static(Snapshot(T0, servers=(SERVER,), kernels=tuple(kernels)))
    runner = SnapshotRunner(fleet)
    app = NbtuiApp(fleet, refresh=3600, runner=runner)
    try:
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: app.fleet_screen is not None and len(app.fleet_screen.table.order) == len(kernels),
                        what="the first read on screen")
            await pilot.pause()
            yield app, pilot
    finally:
        runner.close()


async def test_cells_that_share_a_style_take_a_new_themes_colours():
    from rich.color import Color

    # Cells whose texts repeat (a state, an idle time) are one styled cell shared by their
    # rows: a theme change must still recolour every one of them, the rows that did not
    # change with the rest.
    busy = tuple(Kernel("srv", f"{i:04x}beef-0000-4000-8000-000000000000", "python3", "busy", 0, T0) for i in range(3))
    async with _showing(busy, (100, 20)) as (app, pilot):
        assert _colour_of(app, "busy") == {Color.parse("#E3C14B")}  # nbtui-dark's warning
        app.theme = "nbtui-light"
        await pilot.pause()
        await pilot.pause()
        assert _colour_of(app, "busy") == {Color.parse("#9A6700")}  # nbtui-light's
        cells = [app.fleet_screen.table.get_cell(key, "state") for key in app.fleet_screen.table.order]
        assert all(c.plain == "busy" for c in cells)
        app.apply_snapshot(Snapshot(T0, servers=(SERVER,), kernels=busy))  # a refresh, nothing changed
        await pilot.pause()
        assert _colour_of(app, "busy") == {Color.parse("#9A6700")}


async def test_a_reorder_leaves_no_cycle_holding_the_tables_rows():
    # DataTable keeps its rows' order (and their offsets) in caches whose entries form a
    # ring; a reorder empties them. Emptied whole, each ring held a list as long as the table
    # until the cycle collector ran: at 5,000 kernels most of the garbage a refresh made.
    kernels = [_kernel(i, 600 - i) for i in range(40)]
    async with _showing(kernels, (100, 30)) as (app, pilot):
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for turn in range(3):  # each refresh finds another kernel used just now: it goes last
                used = kernels[turn]
                kernels = [k for k in kernels if k is not used] + [
                    Kernel(used.server, used.kernel_id, "python3", "idle", 0, T0 + dt.timedelta(seconds=turn))]
                app.apply_snapshot(Snapshot(T0, servers=(SERVER,), kernels=tuple(kernels)))
                await pilot.pause()
            assert app.fleet_screen.table.order[-1].endswith(kernels[-1].kernel_id)
            gc.collect()
            held = [o for o in gc.garbage if isinstance(o, list) and len(o) == 40]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        assert held == []
