"""SVG snapshots of the fleet screen, fed with recorded snapshots (fixed ids and times).

Stored in snapshots/test_tui_snapshots/; after an intended change to the screen, look at
them and update with `pytest tests/test_tui_snapshots.py --snapshot-update`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from nbtui.files.config import Settings
from nbtui.core.model import GpuUse, Kernel, Process, ServerInfo, Session, Snapshot, Terminal, Usage
from nbtui.tui.app import NbtuiApp


T0 = dt.datetime(2026, 11, 26, 10, 0, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(autouse=True)
def _clock(still_clock):
    still_clock(T0)  # idle times are as of when asked: the hand-built kernels' stay as named


GiB = 2**30


def _k(server, kid, path, state="idle", idle=60.0, conns=1, usage=None, reasons=(), name="python3"):
    session = None if path is None else Session(id="5e55" + kid[:4], path=path, name=path.rsplit("/", 1)[-1],
                                                 type="notebook")
    return Kernel(server=server, kernel_id=kid, kernel_name=name, state=state, connections=conns,
                  last_activity=None if idle is None else T0 - dt.timedelta(seconds=idle),
                  session=session, usage=usage, orphan_reasons=tuple(reasons))


def _u(pid, cpu, mem, gpu=None, gpu_pct=None, children=()):
    gpus = () if gpu is None else (GpuUse(0, "GPU-6f1e2c3a-0000", gpu, gpu_pct),)
    return Usage(source="local", pid=pid, host="gpu1", cpu_percent=cpu, memory_bytes=mem,
                 gpu_memory_bytes=gpu, gpu_percent=gpu_pct, gpus=gpus, pids=(pid, *children))


def recorded(step: int = 0) -> Snapshot:
    """Two servers up, one down; busy, idle, orphaned and odd kernels."""
    servers = (
        ServerInfo("gpu1", "http://127.0.0.1:8888/", "config", version="2.21.1", latency_ms=3.2, local=True,
                   usage_source="local"),
        ServerInfo("lab", "https://lab.example.org/", "config", version="2.14.0", latency_ms=41.0),
        ServerInfo("old-box", "http://10.0.0.7:8888/", "config", status="unreachable", error_kind="unreachable",
                   error="server old-box: cannot connect to http://10.0.0.7:8888/: connection refused"),
    )
    cpu = [12.0, 48.0, 95.0, 60.0][step % 4]
    kernels = (
        _k("gpu1", "80442938-1a2b-4c3d-9e8f-000000000001", "ana/train-resnet.ipynb", "busy", 2, 1,
           _u(4531, cpu, 3 * GiB + step * 50 * 2**20, 10 * GiB, 87.0, (4540, 4541, 4542))),
        _k("gpu1", "1f00dd11-aaaa-4bbb-8ccc-000000000002", "bob/eda.ipynb", "idle", 3 * 3600 + 600, 0,
           _u(4600, 0.0, 900 * 2**20, 4 * GiB, 0.0), ["disconnected-idle"]),
        _k("gpu1", "2c2c2c2c-bbbb-4ccc-8ddd-000000000003", None, "starting", 4 * 86400, 0,
           _u(4700, 0.0, 51 * 2**20), ["no-session", "disconnected-idle"]),
        _k("lab", "3d3d3d3d-cccc-4ddd-8eee-000000000004",
           "projects/very/long/path/that/goes/on/and/on/experiments/2026/ablation-final-v7.ipynb", "idle", 300),
        _k("lab", "4e4e4e4e-dddd-4eee-8fff-000000000005", "données/étude-über-naïve.ipynb", "unknown", None,
           None),
        _k("lab", "5f5f5f5f-eeee-4fff-8000-000000000006", "reports/weekly.ipynb", "idle", 45, 2, name="ir"),
    )
    return Snapshot(generated_at=T0, servers=servers, kernels=kernels, idle_threshold=3600.0)


HUB = "hub/alice/gpu-large"
LONG = "projects/vision/2026/experiments/ablations/resnet-finetune.ipynb"


def holders() -> Snapshot:
    """Every kind of holder with its owner: kernels on a hub-style server with a long name
    and a long notebook path, an orphan, a terminal job, and a crashed server's leftover."""
    base = recorded(0)
    hub = ServerInfo(HUB, "http://127.0.0.1:8000/user/alice/gpu-large/", "hub", version="2.21.1",
                     latency_ms=7.0, hub="hub", user="alice", server_name="gpu-large")
    kernels = (
        dataclasses.replace(base.kernels[0], user="ana"),
        dataclasses.replace(base.kernels[1], user="bob"),
        _k(HUB, "6a6a6a6a-ffff-4aaa-8bbb-000000000007", LONG, "idle", 2 * 3600, 0,
           _u(5100, 0.0, 2 * GiB, 6 * GiB, 0.0), ["disconnected-idle"]),
        dataclasses.replace(_k(HUB, "7b7b7b7b-1111-4ccc-8ddd-000000000008", "scratch.ipynb", "busy", 1, 1),
                            user="alice"),
        base.kernels[3],
    )
    kernels = tuple(k if k.user or k.server != HUB else dataclasses.replace(k, user="alice") for k in kernels)
    terminal = Terminal("gpu1", "1", T0 - dt.timedelta(seconds=900), pid=4800, user="ana",
                        usage=_u(4800, 98.0, 5 * GiB, 12 * GiB, 99.0, (4801,)))
    leftover = Process(4711, "bob", "python -c 'import torch; train()'", 1764150000.0,
                       notebook="/home/bob/gpu.ipynb", kernel_id="80442938-dead", server_pid=420,
                       cpu_percent=0.0, memory_bytes=700 * 2**20, gpu_memory_bytes=1542 * 2**20,
                       gpus=(GpuUse(0, "GPU-6f1e2c3a-0000", 1542 * 2**20, 0.0),),
                       orphan_reasons=("server-gone",))
    return dataclasses.replace(base, servers=(base.servers[0], hub, base.servers[1], base.servers[2]),
                               kernels=kernels, terminals=(terminal,), processes=(leftover,))


class Recorded:
    """Stands in for the fleet: each read returns the next recorded snapshot."""

    names = ()

    def __init__(self, snapshots):
        self.snapshots = list(snapshots)
        self.reads = 0
        self.settings = Settings()

    async def snapshot(self, on_server=None, **_):
        snap = self.snapshots[min(self.reads, len(self.snapshots) - 1)]
        self.reads += 1
        return snap


def app_with(snapshots=None, **kw) -> NbtuiApp:
    return NbtuiApp(Recorded(snapshots or [recorded(i) for i in range(4)]), live=False, **kw)


async def settle(pilot) -> None:
    """Read every recorded snapshot (for the sparklines), then let the screen settle."""
    app = pilot.app
    fleet = app.fleet
    while fleet.reads < len(fleet.snapshots) or app.snapshots_seen < len(fleet.snapshots):
        if not app._reading:
            app.refresh_now()
        await pilot.pause(0.02)
    await pilot.pause()


@pytest.fixture
def colour(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)


def test_fleet_two_servers_one_down(snap_compare, colour):
    assert snap_compare(app_with(), terminal_size=(110, 24), run_before=settle)


def test_fleet_80x24(snap_compare, colour):
    assert snap_compare(app_with(), terminal_size=(80, 24), run_before=settle)


def test_fleet_filter_active(snap_compare, colour):
    async def run(pilot):
        await settle(pilot)
        await pilot.press("slash", *"gpu1 idle", "enter")
        await pilot.pause()

    assert snap_compare(app_with(), terminal_size=(80, 24), run_before=run)


def test_fleet_details_open(snap_compare, colour):
    assert snap_compare(app_with(), terminal_size=(140, 32), run_before=settle)


def test_fleet_details_below_when_narrow(snap_compare, colour):
    async def run(pilot):
        await settle(pilot)
        await pilot.press("down", "d")
        await pilot.pause()

    assert snap_compare(app_with(), terminal_size=(80, 30), run_before=run)


def test_help_screen(snap_compare, colour):
    async def run(pilot):
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(app_with(), terminal_size=(80, 24), run_before=run)


def test_light_theme(snap_compare, colour):
    assert snap_compare(app_with(theme="nbtui-light"), terminal_size=(110, 24), run_before=settle)


def test_high_contrast_theme(snap_compare, colour):
    assert snap_compare(app_with(theme="nbtui-high-contrast"), terminal_size=(110, 24), run_before=settle)


def test_ansi_theme(snap_compare, colour):
    # The terminal's own 16 colours: what a 16-colour terminal shows (Rich styles built from
    # the theme take its ANSI colours too).
    assert snap_compare(app_with(theme="nbtui-ansi"), terminal_size=(110, 24), run_before=settle)


def test_no_color_readonly(snap_compare):
    # NO_COLOR is set by the test harness: the screen must still read (marks, state, orphans).
    assert snap_compare(app_with(readonly=True), terminal_size=(80, 24), run_before=settle)


def test_tiny_terminal_degrades(snap_compare, colour):
    async def run(pilot):
        await settle(pilot)
        await pilot.press("d", "question_mark")  # details and help at 60x20: no crash
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()

    assert snap_compare(app_with(), terminal_size=(60, 20), run_before=run)


def test_every_server_down(snap_compare, colour):
    down = Snapshot(generated_at=T0, servers=tuple(
        ServerInfo(n, f"http://10.0.0.{i}:8888/", "config", status=s, error_kind=s, error=f"server {n}: {e}")
        for i, (n, s, e) in enumerate([("a", "unreachable", "connection refused"),
                                       ("b", "timeout", "timed out after 5 s"),
                                       ("c", "auth-failed", "token refused (403)")])))
    assert snap_compare(app_with([down]), terminal_size=(80, 24), run_before=settle)


async def test_a_cell_changed_in_place_is_repainted():
    """Cells updated in place (no full re-render) still reach the screen, and only they change."""
    first = recorded(0)
    k0 = first.kernels[3]
    second = dataclasses.replace(first, kernels=(*first.kernels[:3], dataclasses.replace(k0, state="busy"),
                                                 *first.kernels[4:]))
    app = app_with([first, second])
    async with app.run_test(size=(110, 24)) as pilot:
        await settle(pilot)
        table = app.fleet_screen.table
        app.apply_snapshot(first)
        await pilot.pause()
        row = table.order.index(k0.key) + 1  # line 0 is the header
        before = [table.render_line(y).text for y in range(len(table.order) + 1)]
        assert " idle " in before[row]
        written = app.fleet_screen.render_rows()
        assert written == 0
        app.apply_snapshot(second)
        await pilot.pause()
        after = [table.render_line(y).text for y in range(len(table.order) + 1)]
        assert " busy " in after[row] and " idle " not in after[row]
        assert [a for i, a in enumerate(after) if i != row] == [b for i, b in enumerate(before) if i != row]


@pytest.mark.parametrize("size", [(80, 24), (120, 35), (200, 50)], ids=["80x24", "120x35", "200x50"])
def test_fleet_every_holder(snap_compare, colour, size):
    """Kernels, a terminal and a leftover in one table; at 80 columns every row keeps
    SERVER, KERNEL, NOTEBOOK (file name whole), STATE, IDLE, MEM and GPU."""
    assert snap_compare(app_with([holders()]), terminal_size=size, run_before=settle)


async def test_every_holder_is_a_row_with_its_owner_at_each_width():
    for size in ((80, 24), (120, 35), (200, 50)):
        app = app_with([holders()])
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            screen = app.fleet_screen
            table = screen.table
            keys = [c.key for c in table.layout_columns]
            assert {"server", "kernel", "notebook", "state", "idle", "mem", "gpu"} <= set(keys), (size, keys)
            assert "terminal:gpu1/1" in table.order and "pid:4711" in table.order
            lines = [table.render_line(y).text for y in range(len(table.order) + 1)]
            text = "\n".join(lines)
            assert "…/resnet-finetune.ipynb" in text or LONG in text, text
            assert " 4711 " in text and "term:1" in text
            if size[0] >= 120:
                assert {"user", "pid", "gpu%"} <= set(keys)
                assert " bob " in text and " alice " in text
            if size[0] >= 200:
                assert "reason" in keys and "server-gone" in text
            # o keeps the leftover (an orphan) and drops what is not one
            await pilot.press("o")
            await pilot.pause()
            assert "pid:4711" in table.order and "terminal:gpu1/1" not in table.order
            await pilot.press("o", "s")  # sorted by idle, then GPU: the terminal job's 12G leads
            await pilot.press("s")
            await pilot.pause()
            assert screen.sort_key == "gpu" and table.order[0] == "terminal:gpu1/1"


async def test_keys_home_end_escape_and_unmark_all():
    app = app_with([holders()])
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.fleet_screen
        table = screen.table
        await pilot.press("end")
        assert table.cursor_row == len(table.order) - 1
        await pilot.press("home")
        assert table.cursor_row == 0
        await pilot.press("space", "space")
        assert len(screen.marked_keys) == 2
        await pilot.press("escape")
        assert not screen.marked_keys
        await pilot.press("space", "space", "u")
        assert not screen.marked_keys


async def test_readonly_keys_say_so_once():
    app = app_with([holders()], readonly=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("k", "k", "m", "i", "r")
        await pilot.pause()
        notes = [n.message for n in app._notifications]
        for what in ("kill", "migrate", "interrupt", "restart"):
            assert notes.count(f"readonly: {what} is off") == 1, notes


@pytest.mark.parametrize("theme", ["nbtui-dark", "nbtui-light", "nbtui-high-contrast", "nbtui-ansi"])
def test_details_pane_at_200x50(snap_compare, colour, theme):
    """At 200x50 the details (below the table, which keeps every column) take the room the
    table leaves: an orphan's reasons first, its process and sparklines whole, no 8-line box."""
    async def run(pilot):
        await settle(pilot)
        await pilot.press("down", "down")  # the hub user's orphaned kernel
        await pilot.pause()

    assert snap_compare(app_with([holders()], theme=theme), terminal_size=(200, 50), run_before=run)


async def test_details_take_the_room_there_is_and_scroll_at_80x24():
    app = app_with([holders()])
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot)
        screen = app.fleet_screen
        pane = screen.query_one("#detail")
        assert pane.display and screen.table.size.height == len(screen.table.order) + 1  # no empty rows
        assert pane.size.height > 30
        await pilot.resize_terminal(80, 24)
        await pilot.press("d", "down", "down")
        await pilot.pause()
        text = "\n".join(s.text for s in app.screen._compositor.render_strips())
        assert "orphan   disconnected-idle" in text, text  # the reasons come first
        await pilot.press("tab")  # the pane takes the focus and scrolls: PID and sparklines are reachable
        assert app.focused is pane
        await pilot.press("end")
        await pilot.pause()
        text = "\n".join(s.text for s in app.screen._compositor.render_strips())
        assert "pid 5100" in text and "MEM   2.0G" in text, text
