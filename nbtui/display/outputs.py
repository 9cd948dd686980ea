"""Kernel iopub messages folded into nbformat's output shapes, like a notebook cell does.

Handles stream merging, ``clear_output`` (``wait=True`` clears on the next output),
``update_display_data`` by display id, and text that is not valid UTF-8 or carries
control characters. Pure: no I/O, no screen.
"""

from __future__ import annotations

import re
from typing import Optional

OUTPUT_TYPES = ("stream", "display_data", "execute_result", "error")
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]")


def clean_text(text: str) -> str:
    """Valid UTF-8 (lone surrogates become U+FFFD), control characters other than
    newline, tab, carriage return and ANSI escapes made visible."""
    if not isinstance(text, str):
        text = str(text)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    if _CONTROL_RE.search(text):
        text = _CONTROL_RE.sub(lambda m: "^" + chr(ord(m.group()) ^ 0x40) if m.group() != "\x7f" else "^?", text)
    return text


def strip_ansi(text: str) -> str:
    return ANSI_RE.sub("", text)


def plain_text(data: dict) -> Optional[str]:
    """The text a terminal can show for a mime bundle, or None."""
    if "text/plain" in data:
        value = data["text/plain"]
        return "".join(value) if isinstance(value, list) else str(value)
    return None


def binary_label(data: dict) -> Optional[str]:
    """``[image/png, 12.3 KB]`` for a bundle that only has things a terminal cannot show."""
    from nbtui.core.units import human_bytes
    for mime, value in data.items():
        if mime.startswith(("image/", "application/pdf", "video/", "audio/")) or mime == "application/octet-stream":
            size = len(value) * 3 // 4 if isinstance(value, str) else None
            return f"[{mime}, {human_bytes(size)}]"
    return None


def output_of(msg: dict) -> Optional[dict]:
    """The nbformat output for an iopub message, or None for a message that is no output."""
    header = msg.get("header") or {}
    kind = header.get("msg_type") or msg.get("msg_type")
    c = msg.get("content") or {}
    if kind == "stream":
        return {"output_type": "stream", "name": c.get("name", "stdout"), "text": clean_text(c.get("text", ""))}
    if kind in ("display_data", "execute_result"):
        out = {"output_type": kind, "data": c.get("data") or {}, "metadata": c.get("metadata") or {}}
        if kind == "execute_result":
            out["execution_count"] = c.get("execution_count")
        return out
    if kind == "error":
        return {
            "output_type": "error", "ename": clean_text(c.get("ename", "")), "evalue": clean_text(c.get("evalue", "")),
            "traceback": [clean_text(t) for t in c.get("traceback") or []],
        }
    return None


class Outputs:
    """One cell's outputs as a notebook would keep them."""

    def __init__(self) -> None:
        self.items: list[dict] = []
        self._ids: list[Optional[str]] = []  # display_id of each item, if any
        self._clear_wait = False

    def add(self, msg: dict) -> str:
        """Fold in one iopub message; says what changed: ``append``, ``stream`` (text
        added to the last output), ``reset`` (redraw everything) or ``none``."""
        kind = (msg.get("header") or {}).get("msg_type") or msg.get("msg_type")
        c = msg.get("content") or {}
        if kind == "clear_output":
            if c.get("wait"):
                self._clear_wait = True
                return "none"
            self.clear()
            return "reset"
        if kind == "update_display_data":
            did = (c.get("transient") or {}).get("display_id")
            hit = False
            for i, d in enumerate(self._ids):
                if did and d == did:
                    self.items[i] = dict(self.items[i], data=c.get("data") or {}, metadata=c.get("metadata") or {})
                    hit = True
            return "reset" if hit else "none"
        out = output_of(msg)
        if out is None:
            return "none"
        change = "append"
        if self._clear_wait:
            self.clear()
            change = "reset"
        last = self.items[-1] if self.items else None
        if out["output_type"] == "stream" and last and last["output_type"] == "stream" and last["name"] == out["name"]:
            last["text"] += out["text"]
            return "stream" if change == "append" else change
        self.items.append(out)
        self._ids.append((c.get("transient") or {}).get("display_id"))
        return change

    def clear(self) -> None:
        self.items.clear()
        self._ids.clear()
        self._clear_wait = False
