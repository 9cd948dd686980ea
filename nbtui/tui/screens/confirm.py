"""A yes/no confirmation for actions that change or destroy something.

``ConfirmScreen(title, lines, yes_label)`` is a ``ModalScreen[bool]``: it dismisses with
True only when the user picks the yes button (or presses ``y``); escape, ``n`` and the
default focus (on No) answer False, so a stray enter never destroys anything.
"""

from __future__ import annotations

from typing import Iterable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from nbtui.core.text import visible
from nbtui.tui.safe import lines


class ConfirmScreen(ModalScreen[bool]):
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > #confirm-box {
        width: auto; min-width: 40; max-width: 90%; height: auto; max-height: 90%;
        border: thick $error; background: $surface; padding: 0 1; scrollbar-size-vertical: 1;
    }
    ConfirmScreen #confirm-title { dock: top; text-style: bold; width: 100%; height: auto; margin-bottom: 1; }
    ConfirmScreen #confirm-lines { width: 100%; height: auto; }
    ConfirmScreen Horizontal { dock: bottom; height: auto; width: 100%; align: right middle; margin-top: 1; }
    ConfirmScreen Button { margin-left: 2; min-width: 10; }
    ConfirmScreen Button:focus { text-style: bold reverse; }
    """

    # The title and the buttons stay in view (docked); a long plan between them scrolls
    # (pageup/pagedown), so the dialog fits 80x24 however many rows it names.
    BINDINGS = [
        Binding("escape,n", "answer(False)", "No"),
        Binding("y", "answer(True)", "Yes"),
        Binding("left,right,tab,shift+tab", "switch", "Switch", show=False),
        Binding("pageup", "scroll(-1)", "Scroll up", show=False),
        Binding("pagedown", "scroll(1)", "Scroll down", show=False),
    ]

    def __init__(self, title: str, lines: Iterable[str] = (), yes_label: str = "Yes") -> None:
        super().__init__()
        self.title_text = title
        self.lines = list(lines)
        self.yes_label = yes_label

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="confirm-box", can_focus=False):
            yield Static(visible(self.title_text), id="confirm-title", markup=False)
            yield Static(lines(self.lines), id="confirm-lines", markup=False)
            with Horizontal():
                yield Button("No", id="no", variant="primary")
                yield Button(self.yes_label, id="yes", variant="error")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()
        # As wide as its longest line (a plan's lines are not wrapped at 40); max-width still holds.
        longest = max([len(self.title_text), *(len(line) for line in self.lines)])
        self.query_one("#confirm-box").styles.width = longest + 5  # padding, border, scrollbar

    def action_switch(self) -> None:
        no, yes = self.query_one("#no", Button), self.query_one("#yes", Button)
        (yes if self.focused is no else no).focus()

    def action_scroll(self, pages: int) -> None:
        box = self.query_one("#confirm-box", VerticalScroll)
        box.scroll_page_up() if pages < 0 else box.scroll_page_down()

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")
