"""The console's output view on its own: wrapping, sideways scrolling, stderr's style."""

from __future__ import annotations

from textual.app import App, ComposeResult

from nbtui.tui.widgets.console_output import STDERR_STYLE, OutputView


class ViewApp(App):
    def compose(self) -> ComposeResult:
        yield OutputView()


def rows(view: OutputView, n: int) -> list[str]:
    return ["".join(s.text for s in view.render_line(y)).rstrip() for y in range(n)]


async def test_long_lines_wrap_and_a_key_scrolls_them_sideways_instead():
    app = ViewApp()
    async with app.run_test(size=(40, 10)) as pilot:
        view = app.query_one(OutputView)
        width = view.scrollable_content_region.width
        long = "File \"/very/long/path/to/the/module.py\", line 12, in <module>"
        view.write(long)
        view.write("short")
        await pilot.pause()
        assert view.wrap
        shown = rows(view, 4)
        assert "".join(shown[:2]) == long and shown[2] == "short"  # nothing cut: the file name stays
        assert view.virtual_size.width <= width  # no sideways scrolling, so no horizontal scrollbar
        view.wrap = False
        await pilot.pause()
        shown = rows(view, 2)
        assert shown[0] == long[:width] and shown[1] == "short"
        assert view.virtual_size.width > width


async def test_stderr_lines_have_their_own_style_and_never_join_stdout():
    app = ViewApp()
    async with app.run_test(size=(40, 10)) as pilot:
        view = app.query_one(OutputView)
        view.stream("out, no newline yet")
        view.stream("err\n", stderr=True)
        view.stream("more out\n")
        await pilot.pause()
        assert view.plain_lines() == ["out, no newline yet", "err", "more out"]

        def styles(y):
            return {s.style.color.name if s.style and s.style.color else None
                    for s in view.render_line(y) if s.text.strip()}

        assert styles(1) == {STDERR_STYLE.color.name}
        assert STDERR_STYLE.color.name not in styles(0) | styles(2)
        assert all(s.style.italic for s in view.render_line(1) if s.text.strip())  # distinct without colour too
