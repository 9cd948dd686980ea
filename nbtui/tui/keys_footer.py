"""The footer of keys: Textual's, recomposed once per refresh however often the keys change.

Textual's Footer recomposes (every key a widget, each styled again) once per change of
the screen's bindings, and a screen's start changes them several times in a row (focus,
the screen stack, the rows' arrival): five recomposes before the first rows were drawn.
One recompose after the refresh reads the keys as they are by then, so it shows the same.
"""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer


class KeysFooter(Footer):
    _queued = False

    def bindings_changed(self, screen: Screen) -> None:
        self._bindings_ready = True
        if not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen and not self._queued:
            self._queued = True
            self.call_after_refresh(self._recompose_once)

    async def _recompose_once(self) -> None:
        self._queued = False  # a change from here on queues the next one
        await self.recompose()
