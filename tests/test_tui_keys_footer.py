"""The footer of keys after bursts of binding changes: it shows the keys as they end up,
recomposed once per burst, and not at all when they did not change."""

from __future__ import annotations

from textual.app import App
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Static

from nbtui.tui.widgets.keys_footer import KeysFooter
from tests.jupyter import until


class _Keys(Screen):
    BINDINGS = [Binding("k", "kill", "Kill"), Binding("m", "migrate", "Migrate")]

    def __init__(self):
        super().__init__()
        self.can_kill = True
        self.recomposes = 0

    def compose(self):
        yield Static("body")
        yield KeysFooter(compact=True, show_command_palette=False)

    def check_action(self, action, parameters):
        return self.can_kill if action == "kill" else True


class _Host(App):
    def on_mount(self):
        self.push_screen(_Keys())


def shown(screen) -> list[str]:
    return [f"{k.key}:{'off' if k.disabled else 'on'}" for k in screen.query("FooterKey")]  # check_action False hides a key


async def test_a_burst_of_changes_ends_with_the_keys_as_they_are_composed_once():
    app = _Host()
    async with app.run_test(size=(80, 10)) as pilot:
        screen = app.screen
        footer = screen.query_one(KeysFooter)
        await until(pilot, lambda: shown(screen) == ["k:on", "m:on"], what="the first keys")
        calls = []
        real = footer.recompose

        async def counted():
            calls.append(1)
            await real()

        footer.recompose = counted  # type: ignore[method-assign]
        for i in range(5):  # five changes in a row, as a screen's start makes them
            screen.can_kill = bool(i % 2)
            screen.refresh_bindings()
        await until(pilot, lambda: shown(screen) == ["k:on", "m:on"] and not footer._queued, what="the keys after the burst")
        screen.can_kill = False
        screen.refresh_bindings()
        await until(pilot, lambda: shown(screen) == ["m:on"], what="the kill key gone")
        assert len(calls) <= 2  # the burst (whose end equals the start: maybe none) and the change
        before = len(calls)
        screen.refresh_bindings()  # nothing changed: nothing composed
        await pilot.pause(0.2)
        assert len(calls) == before and shown(screen) == ["m:on"]
