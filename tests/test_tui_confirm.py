"""The confirmation modal answers no unless the user clearly says yes."""

import pytest
from textual.app import App

from nbtui.tui.confirm import ConfirmScreen


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
