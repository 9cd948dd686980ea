"""The footer of keys: Textual's, composed again only when the keys it shows changed.

Textual's Footer recomposes (every key a widget, each styled again) on each change of the
screen's bindings, and a screen's start changes them several times in a row (focus, the
screen stack, the rows' arrival): five recomposes before the first rows were drawn, and
one more at each focus change after. Here: at most one per refresh, reading the bindings
as they are by then, and none when they are what is on screen.
"""

from __future__ import annotations

from typing import Optional

from textual.screen import Screen
from textual.widgets import Footer


class KeysFooter(Footer):
    _queued = False
    _shown: Optional[tuple] = None  # the bindings as last composed

    def bindings_changed(self, screen: Screen) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen and not self._queued:
            self._queued = True
            self.call_after_refresh(self._recompose_once)

    def _active_keys(self) -> tuple:
        """What compose reads: every active binding with whether it is enabled, and its tooltip."""
        return tuple((b, enabled, tooltip) for (_, b, enabled, tooltip) in self.screen.active_bindings.values())

    async def _recompose_once(self) -> None:
        self._queued = False  # a change from here on queues the next one
        if not self.is_attached or self._pruning:
            return
        bindings = self._active_keys()
        if bindings == self._shown:
            return
        self._shown = bindings
        await self.recompose()
