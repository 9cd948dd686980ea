"""Every --json prints one JSON document: indented at a terminal, compact to a pipe or a file
(the same document); never a token nbtui knows, never a raw control code, either way."""

from __future__ import annotations

import io
import json
import sys

import pytest

from nbtui.cli.commands.common import print_json
from nbtui.files.secrets import remember


class _Out(io.TextIOWrapper):
    def __init__(self, tty: bool) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8")
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty

    def text(self) -> str:
        self.flush()
        return self.buffer.getvalue().decode()  # type: ignore[attr-defined]


def _printed(monkeypatch, data: object, tty: bool) -> str:
    out = _Out(tty)
    monkeypatch.setattr(sys, "stdout", out)
    print("before", flush=False)  # a line printed before stays before
    print_json(data)
    return out.text()


DOC = {"kernels": [{"kernel_id": "k1", "path": "a/b.ipynb", "gpus": []}], "n": 2}


@pytest.mark.parametrize("tty", [True, False])
def test_the_same_document_indented_at_a_terminal_compact_elsewhere(monkeypatch, tty):
    text = _printed(monkeypatch, DOC, tty)
    first, rest = text.split("\n", 1)
    assert first == "before" and rest.endswith("\n")
    assert json.loads(rest) == DOC
    assert (rest.count("\n") > 3) is tty  # indented: a line per field; compact: one line
    if not tty:
        assert rest == json.dumps(DOC, separators=(",", ":")) + "\n"


@pytest.mark.parametrize("tty", [True, False])
def test_a_known_token_is_scrubbed_and_control_codes_escaped(monkeypatch, tty):
    token = "tok-" + "9f3a" * 8
    remember(token)
    data = {"path": f"x/{token}.ipynb", "name": "bell\x07 del\x7f c1\x9b flip\u202e"}
    text = _printed(monkeypatch, data, tty).split("\n", 1)[1]
    assert token not in text and "***" in text
    assert not any(c in text for c in "\x07\x7f\x9b\u202e")
    assert json.loads(text)["name"] == data["name"]  # the same string once parsed


def test_a_known_token_inside_a_longer_one_leaves_no_piece_of_either():
    from nbtui.files.secrets import redact

    short = "5h0rt" + "c0de"
    long = "pre-" + short + "-and-more-0f-1t"
    remember(short)  # learnt first: the longer one must still be replaced first
    remember(long)
    remember(short)  # again: known once
    text = redact(f"a={long} b={short}")
    assert text == "a=*** b=***"
