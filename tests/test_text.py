"""The one sanitiser every outside string goes through before a terminal sees it."""

import pytest

from nbtui.core.text import one_line, sgr_only, visible


@pytest.mark.parametrize(
    "raw, shown",
    [
        ("work/train.ipynb", "work/train.ipynb"),
        ("dir[/]x.ipynb", "dir[/]x.ipynb"),  # markup-looking text stays as it is
        ("[bold]x[/]", "[bold]x[/]"),
        ("/x/\x1b]0;pwned\x07\x1b[2J.ipynb", "/x/\\x1b]0;pwned\\x07\\x1b[2J.ipynb"),
        ("a\nb", "a\\nb"),  # a newline never splits a row
        ("a\r\tb", "a\\r\\tb"),
        ("\x9b31m", "\\x9b31m"),  # C1 CSI
        ("\x7f", "\\x7f"),
        ("evil\u202egnp.exe", "evil\\u202egnp.exe"),  # right-to-left override
        ("a\u200bb\u2066c\u2069", "a\\u200bb\\u2066c\\u2069"),
        ("tag\U000e0041", "tag\\U000e0041"),
        ("ünïcödé 数据 🚀", "ünïcödé 数据 🚀"),
        (42, "42"),
    ],
)
def test_visible(raw, shown):
    assert visible(raw) == shown


def test_one_line_cuts_after_escaping():
    assert one_line("a\nb", 10) == "a\\nb"
    assert one_line("x" * 50, 10) == "x" * 9 + "…"


@pytest.mark.parametrize(
    "raw, kept",
    [
        ("plain\n", "plain\n"),
        ("\x1b[31mred\x1b[0m", "\x1b[31mred\x1b[0m"),
        ("\x1b[1;38;5;208mx\x1b[m", "\x1b[1;38;5;208mx\x1b[m"),
        ("\x1b]0;pwned\x07title", "title"),  # window title
        ("\x1b]52;c;ZXZpbA==\x1b\\clip", "clip"),  # OSC 52 clipboard write
        ("\x1b[2J\x1b[Hclear", "clear"),  # clear + home
        ("\x1b[10;10Hmove", "move"),
        ("\x1bPq#0;1;2\x1b\\dcs", "dcs"),
        ("\x1b7save\x1b8", "save"),
        ("bell\x07", "bell"),
        ("10%\r50%\r100%\n", "10%\r50%\r100%\n"),  # progress bars keep their \r
        ("tab\there", "tab\there"),
        ("\x1b[?1049h alt screen", " alt screen"),
        ("unterminated \x1b]0;title", "unterminated "),
        ("\u202eflip", "flip"),
    ],
)
def test_sgr_only(raw, kept):
    assert sgr_only(raw) == kept


def test_visible_stream_escapes_every_write_and_keeps_newlines():
    import io

    from nbtui.core.text import VisibleStream, raw_stream
    buf = io.StringIO()
    s = VisibleStream(buf)
    print("a\x1b]0;t\x07b", file=s)
    s.write("x\u202ey\nz")
    assert buf.getvalue() == "a\\x1b]0;t\\x07b\nx\\u202ey\nz"
    assert raw_stream(s) is buf and raw_stream(buf) is buf


def test_json_text_keeps_the_strings_and_hides_what_a_terminal_acts_on():
    import json

    from nbtui.core.text import json_text
    value = {"p": "a\x9b2J\u202e\x7f\U000e0041 ok"}
    out = json_text(json.dumps(value, ensure_ascii=False))
    assert json.loads(out) == value
    assert not any(0x7f <= ord(c) <= 0x9f or c in "\u202e\U000e0041" for c in out)
