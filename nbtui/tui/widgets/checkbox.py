"""A checkbox that reads without colour: ``[x]`` when on, ``[ ]`` when off.

Textual's own draws an ``X`` either way and tells on from off by colour alone, which
some themes, NO_COLOR and 16-colour terminals make unreadable (a user read "keep the
source" as on when it was off). The label is plain text, never markup.
"""

from __future__ import annotations

from typing import Any

from textual.content import Content
from textual.widgets import Checkbox

ON, OFF = "[x]", "[ ]"


class BoxCheckbox(Checkbox):
    DEFAULT_CSS = """
    BoxCheckbox { border: none; padding: 0 1; height: auto; background: transparent; }
    BoxCheckbox:focus { border: none; background: $block-cursor-background; }
    BoxCheckbox:focus > .toggle--label { color: $block-cursor-foreground; text-style: bold; }
    BoxCheckbox > .toggle--button { background: transparent; color: $foreground; text-style: bold; }
    BoxCheckbox.-on > .toggle--button { background: transparent; color: $foreground; text-style: bold; }
    """

    def __init__(self, label: str = "", value: bool = False, **kw: Any) -> None:
        super().__init__(Content(label), value, **kw)  # Content(str): plain text, not markup

    @property
    def _button(self) -> Content:
        style = self.get_visual_style("toggle--button")
        return Content.assemble((ON if self.value else OFF, style))
