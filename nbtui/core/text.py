"""Outside strings made safe to show: the one place that decides what reaches a terminal.

Whatever a server answers, a process carries or a file is named is hostile until shown as
plain text. Three renderings, each a pure function:

- ``visible(s)``: for human output (CLI tables, messages, TUI cells, metric labels).
  Control characters (C0, DEL, C1) and the Unicode characters that reorder or hide text
  (bidi overrides and isolates, zero-width and invisible format characters, line and
  paragraph separators) become visible escapes (``\\x1b``, ``\\n``, ``\\u202e``); a newline
  never splits a row. Printable text, markup-looking brackets included, is unchanged:
  the TUI shows it as ``rich.text.Text``, never parsed as markup.
- ``sgr_only(s)``: for a kernel's output written to a terminal (``nbtui exec``): keeps
  colours and styles (SGR, ``ESC [ … m``) and plain ``\\n``, ``\\r``, ``\\t``; drops every
  other escape sequence (cursor moves, clears, titles, OSC 52 clipboard writes, DCS …)
  and every other control character.
- ``one_line(s, limit)``: ``visible`` and cut to ``limit`` characters with an ellipsis,
  for labels that must stay short (metric label values, dialog titles).

JSON output keeps the exact strings: JSON's own escaping suffices there.
"""

from __future__ import annotations

import re
from typing import Any, TextIO

# Characters that reorder or hide text without being control characters:
# bidi marks, embeddings, overrides and isolates; zero-width and invisible format
# characters; line/paragraph separators; the BOM; interlinear annotation; tag characters.
_INVISIBLE = (
    "\u00ad\u061c\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f"
    "\ufeff\ufff9-\ufffb"
    "\U000e0000-\U000e007f"
)
# Lone surrogates: what JSON's "\ud800" decodes to, and what undecodable bytes of a process's
# command line or environment become (surrogateescape). No UTF-8 stream can write them (an
# internal error), and a stream that writes them back as bytes writes raw C1 controls.
_SURROGATES = "\ud800-\udfff"
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{_INVISIBLE}{_SURROGATES}]")

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(m: re.Match[str]) -> str:
    ch = m.group(0)
    named = _NAMED.get(ch)
    if named:
        return named
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(value: object) -> str:
    """``value`` as one line of plain text: unsafe characters as visible escapes."""
    s = value if isinstance(value, str) else str(value)
    return _UNSAFE.sub(_escape, s) if _UNSAFE.search(s) else s


_NAME_UNSAFE = re.compile(f"[%/:\\s\x00-\x1f\x7f-\x9f{_INVISIBLE}{_SURROGATES}]")


def name_part(value: str) -> str:
    """An outside name (a hub's user or server name) as ONE part of a name nbtui builds
    (``HUB/USER/SERVER``, which begins a TARGET): ``%``, ``/``, ``:``, white space and the
    characters ``visible`` escapes are percent-escaped (their UTF-8 bytes). So no name can
    pose as another user's server (user ``alice/x`` is not alice's server ``x``) or split a
    TARGET, and what is shown is what can be typed back."""
    return _NAME_UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group(0).encode("utf-8", "surrogatepass")), value)


def one_line(value: object, limit: int = 200) -> str:
    """``visible(value)`` cut to at most ``limit`` characters (an ellipsis marks the cut)."""
    s = visible(value)
    return s if len(s) <= limit else s[: max(0, limit - 1)] + "…"


# ESC-introduced sequences, per ECMA-48: CSI (ESC [ params intermediates final),
# OSC/DCS/SOS/PM/APC strings (ended by BEL or ST), and two-character escapes.
_SEQUENCE = re.compile(
    r"""
    \x1b\[ (?P<csi_params>[0-?]*) (?P<csi_inter>[ -/]*) (?P<csi_final>[@-~])
  | \x9b   (?P<c1_params>[0-?]*)  [ -/]* (?P<c1_final>[@-~])
  | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]) .*? (?:\x07|\x1b\\|\x9c|$)
  | \x1b [ -/]* [0-~]?
    """,
    re.VERBOSE | re.DOTALL,
)
_OTHER_CONTROLS = re.compile(f"[\x00-\x08\x0b-\x0c\x0e-\x1a\x1c-\x1f\x7f-\x9f{_INVISIBLE}]")


def _keep_sgr(m: re.Match[str]) -> str:
    if m.group("csi_final") == "m" and not m.group("csi_inter"):
        params = m.group("csi_params")
        if all(c.isdigit() or c in ";:" for c in params):
            return m.group(0)
    return ""


def sgr_only(s: str) -> str:
    """Terminal output with colours kept and every other sequence and control removed."""
    if "\x1b" not in s and not _OTHER_CONTROLS.search(s):
        return s
    return _OTHER_CONTROLS.sub("", _SEQUENCE.sub(_keep_sgr, s))


class VisibleStream:
    """A text stream for human output: every write is shown through ``visible`` line by
    line (its ``\\n`` kept), so no path that prints can put a control code on the terminal.
    JSON and ``exec --raw`` write to :func:`raw_stream` instead."""

    def __init__(self, stream: TextIO) -> None:
        self._nbtui_raw = stream

    def write(self, s: str) -> int:
        self._nbtui_raw.write("\n".join(visible(part) for part in s.split("\n")))
        return len(s)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._nbtui_raw, name)


def raw_stream(stream: Any) -> Any:
    """The stream under a :class:`VisibleStream` (or the stream itself)."""
    return getattr(stream, "_nbtui_raw", stream)


_JSON_UNSAFE = re.compile(f"[\x7f-\x9f{_INVISIBLE}{_SURROGATES}]")


def json_text(dumped: str) -> str:
    """A JSON document (``json.dumps(..., ensure_ascii=False)``) with DEL, C1 and the
    reordering/invisible characters written as ``\\uXXXX``: the same strings once parsed,
    but nothing a terminal acts on (json escapes C0 itself)."""
    def esc(m: re.Match[str]) -> str:
        code = ord(m.group(0))
        if code <= 0xFFFF:
            return f"\\u{code:04x}"
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"

    if dumped.isascii() and "\x7f" not in dumped:  # nothing to escape: the usual case, at C speed
        return dumped
    return _JSON_UNSAFE.sub(esc, dumped)
