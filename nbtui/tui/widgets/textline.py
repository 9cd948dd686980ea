"""A Static that repaints only when its text changes, and asks for a new layout only when
its height may change (a live header would otherwise re-lay-out the screen each refresh)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static


class TextLines(Static):
    def __init__(self, text: str | Text = "", **kw: Any) -> None:
        super().__init__(text, **kw)
        self._shown: Text = Text(text) if isinstance(text, str) else text

    def show(self, text: Text) -> None:
        if text == self._shown:
            return
        old, self._shown = self._shown, text
        self.update(text, layout=self._height_may_change(old, text))

    def _height_may_change(self, old: Text, new: Text) -> bool:
        if old.plain.count("\n") != new.plain.count("\n"):
            return True
        width = self.content_size.width or 0
        longest = max(len(line) for line in (old.plain + "\n" + new.plain).split("\n"))
        return width == 0 or longest >= width  # wrapping could differ
