"""The cursor stays on its row's key through resizes, sorts and refreshes that reorder the
rows, and says so when its row is gone; a sort by a column the width hides is named in
the summary line; toasts of one kind replace each other instead of stacking."""

from __future__ import annotations

import dataclasses

from tests.test_tui_snapshots import app_with, holders, recorded, settle


async def test_the_cursor_keeps_its_kernel_through_resizes_sorts_and_a_reordering_refresh():
    first = recorded(0)
    app = app_with([first])
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.fleet_screen
        table = screen.table
        await pilot.press("down", "down", "down")
        chosen = table.key_at_cursor()
        assert chosen is not None and table.order.index(chosen) == 3
        for size in ((120, 35), (80, 24), (200, 50)):  # each crosses a column breakpoint
            await pilot.resize_terminal(*size)
            await pilot.pause()
            assert table.key_at_cursor() == chosen, size
            assert screen.selected_row is not None and screen.selected_row.key == chosen
        await pilot.press("s", "s")  # by idle, then by GPU
        await pilot.pause()
        assert table.key_at_cursor() == chosen
        # A refresh that puts the chosen kernel first (the fleet's order: its server first).
        reordered = dataclasses.replace(first, kernels=tuple(sorted(first.kernels, key=lambda k: k.key != chosen)))
        await pilot.press("S")  # reversed
        screen.sort_by(None)
        app.apply_snapshot(reordered)
        await pilot.pause()
        assert table.order[0] == chosen and table.key_at_cursor() == chosen


async def test_a_row_that_goes_says_so_and_the_cursor_stays_in_place():
    first = recorded(0)
    app = app_with([first])
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table = app.fleet_screen.table
        await pilot.press("down")
        chosen = table.key_at_cursor()
        nxt = table.order[2]
        app.apply_snapshot(dataclasses.replace(first, kernels=tuple(k for k in first.kernels if k.key != chosen)))
        await pilot.pause()
        assert table.key_at_cursor() == nxt and table.cursor_row == 1
        notes = [n.message for n in app._notifications]
        assert f"gpu1:{chosen.split(':')[1][:8]} is gone; the cursor is on gpu1:{nxt.split(':')[1][:8]}" in notes
        # Hidden by the filter is not gone: nothing said.
        app.clear_notifications()
        await pilot.press("slash", *"lab", "enter")
        await pilot.pause()
        assert not [n.message for n in app._notifications if "gone" in n.message]


def _summary(app) -> str:
    return app.screen._compositor.render_strips()[0].text


async def test_a_sort_by_a_hidden_column_is_named_and_sort_toasts_do_not_stack():
    app = app_with([holders()])
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.fleet_screen
        assert "cpu" not in {c.key for c in screen.table.layout_columns}
        await pilot.press("s", "s", "s", "s")  # idle, gpu, mem, cpu
        await pilot.pause()
        assert screen.sort_key == "cpu"
        assert "sorted by CPU▼ (column hidden)" in _summary(app), _summary(app)
        assert [n.message for n in app._notifications] == ["sorted by cpu"]  # one toast, the last
        await pilot.press("S")
        await pilot.pause()
        assert "sorted by CPU▲" in _summary(app)
        await pilot.resize_terminal(120, 35)  # the column shows: its header has the arrow
        await pilot.pause()
        assert "sorted by" not in _summary(app)
        header = screen.table.render_line(0).text
        assert "CPU▲" in header, header
