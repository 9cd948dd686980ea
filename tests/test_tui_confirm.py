"""The confirmation modal answers no unless the user clearly says yes."""

import pytest
from textual.app import App

from nbtui.tui.screens.confirm import ConfirmScreen


class _Host(App):
    def __init__(self):
        super().__init__()
        self.answers: list[bool] = []

    def on_mount(self) -> None:
        self.push_screen(ConfirmScreen("Restart kernel?", ["srv:1234abcd  work/a.ipynb"], "Restart"),
                         self.answers.append)


@pytest.mark.parametrize("keys, expected", [
    (["enter"], False),  # focus starts on No
    (["escape"], False),
    (["n"], False),
    (["y"], True),
    (["right", "enter"], True),
    (["tab", "tab", "enter"], False),
])
async def test_confirm_answers(keys, expected):
    app = _Host()
    async with app.run_test() as pilot:
        await pilot.pause()
        assert "Restart kernel?" in str(app.screen.query_one("#confirm-title").render())
        for k in keys:
            await pilot.press(k)
        await pilot.pause()
    assert app.answers == [expected]


class _LongPlan(App):
    def on_mount(self) -> None:
        self.push_screen(ConfirmScreen("Kill 30 kernels?", [f"gpu1:{i:08x}  nb{i}.ipynb" for i in range(30)], "Kill"))


async def test_a_long_plan_scrolls_at_80x24_with_its_question_and_buttons_in_view():
    app = _LongPlan()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        for selector in ("#confirm-title", "#no", "#yes"):
            region = screen.query_one(selector).region
            assert region.height and screen.region.contains_region(region), selector
        box = screen.query_one("#confirm-box")
        assert box.max_scroll_y > 0
        await pilot.press("pagedown", "pagedown", "pagedown")
        await pilot.pause()
        text = "\n".join(s.text for s in screen._compositor.render_strips())
        assert "nb29.ipynb" in text and "Kill 30 kernels?" in text and " No " in text, text
        assert app.focused is screen.query_one("#no")  # still No: scrolling answers nothing
