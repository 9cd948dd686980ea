"""Outside strings in the TUI: the one helper every widget uses.

A server's answer, a process's environment or a file's name is data: it is shown as a
``rich.text.Text`` of :func:`nbtui.core.text.visible` (control and reordering characters as
visible escapes), never parsed as markup. Widgets build cells and labels with
:func:`plain` / :func:`add`; the app's ``notify`` goes through :func:`message`, so a new
toast cannot forget. Kernel output (the console) keeps only its colours: :func:`ansi`.
"""

from __future__ import annotations

from typing import Any, Iterable

from rich.text import Text

from nbtui.core.text import sgr_only, visible


def plain(value: object, style: str = "", **kwargs: Any) -> Text:
    """``value`` as one line of literal text (a newline shows as ``\\n``)."""
    return Text(visible(value), style=style, **kwargs)


def add(t: Text, value: object, style: str = "") -> Text:
    """Append ``value`` to ``t`` as literal text; returns ``t``."""
    t.append(visible(value), style=style)
    return t


def lines(values: Iterable[object]) -> str:
    """Several outside lines for a ``markup=False`` Static: each one ``visible``."""
    return "\n".join(visible(v) for v in values)


def message(value: object) -> str:
    """A notification's text: lines kept, each ``visible`` (shown with markup off)."""
    return lines(str(value).split("\n"))


def ansi(value: str, **kwargs: Any) -> Text:
    """Kernel output as Text: colours (SGR) kept, every other sequence and control dropped."""
    clean = sgr_only(value)
    return Text.from_ansi(clean, **kwargs) if "\x1b" in clean else Text(clean, **kwargs)
