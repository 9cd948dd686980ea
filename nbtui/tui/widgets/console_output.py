"""The console's output log: bounded, line-based, styled lazily, with a live current cell.

Lines are kept as they arrive (raw text with the kernel's ANSI colours, or styled
``Text``/pre-rendered ``Strip``s) in a bounded deque: only the newest ``max_lines`` stay,
and a first line says how many were dropped, so memory and frame time stay flat however
much a kernel prints. A line becomes segments only when it is drawn.

The current cell's outputs start at a known line; ``clear_output`` and
``update_display_data`` redraw from there, and ``\\r`` rewrites the open line in place
(progress bars redraw one line, as in a terminal).

Long lines wrap at the view's width (a traceback keeps its file names); ``wrap = False``
scrolls sideways instead. Lines the kernel wrote to stderr are drawn in their own style.
"""

from __future__ import annotations

import bisect
from collections import deque
from typing import Any, Iterable, Optional, Union

from rich.cells import cell_len
from rich.console import RenderableType
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from nbtui.tui.safe import ansi
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

Line = Union[str, Text, Strip]
DEFAULT_MAX_LINES = 5000
MAX_LINE_CHARS = 20_000  # longer lines are cut for display (a 10 MB line must not freeze a frame)
STDERR_STYLE = Style(color="red", italic=True)  # italic: still distinct without colour


def cut_line(line: str) -> str:
    if len(line) <= MAX_LINE_CHARS:
        return line
    return line[:MAX_LINE_CHARS] + f"\x1b[2m … ({len(line) - MAX_LINE_CHARS:,} more characters not shown)\x1b[0m"


class OutputView(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    OutputView { height: 1fr; background: $surface; overflow-x: hidden; overflow-y: auto;
                 scrollbar-gutter: stable; }
    OutputView.-scroll-sideways { overflow-x: auto; }
    """

    def __init__(self, max_lines: int = DEFAULT_MAX_LINES, **kw: Any) -> None:
        super().__init__(**kw)
        self.max_lines = max_lines
        self._lines: deque[Line] = deque()
        self._first = 0  # absolute index of _lines[0]; lines before it were dropped
        self._widest = 0
        self._cache: dict[int, Strip] = {}
        self._open = False  # the last line is an open stream line (no newline yet)
        self._cr = False  # the open line ended with '\r': the next text replaces it
        self.cell_start = 0  # absolute index where the current cell's outputs begin
        self.lines_received = 0  # every line ever appended (for the benchmark and tests)
        self._err: set[int] = set()  # absolute indices of lines the kernel wrote to stderr
        self._open_err = False  # the open stream line is stderr's
        self._cells: deque[int] = deque()  # each line's width in cells (for wrapping)
        self._wrap = True
        self._wrap_width = 80  # the width the row counts below were made for
        self._rows_total = 0  # rows every kept line takes at that width
        self._starts: Optional[list[int]] = None  # first row of each line (built when drawn)
        self._frame: Optional[tuple[Style, int, int]] = None  # per frame: style, width, wrap width

    # -- wrapping ------------------------------------------------------------------------

    @property
    def wrap(self) -> bool:
        """Long lines wrap at the view's width (True) or scroll sideways (False)."""
        return self._wrap

    @wrap.setter
    def wrap(self, on: bool) -> None:
        self._wrap = bool(on)
        self.set_class(not self._wrap, "-scroll-sideways")
        if not self._wrap:
            self.scroll_to(x=0, animate=False, immediate=True)
        self._relayout()

    def _width_for_rows(self) -> int:
        return max(1, self.scrollable_content_region.width or self.size.width or 80)

    def _rows_of(self, cells: int) -> int:
        w = self._wrap_width or 1
        return max(1, -(-cells // w))

    def _relayout(self) -> None:
        self._wrap_width = self._width_for_rows()
        self._rows_total = sum(self._rows_of(c) for c in self._cells)
        self._starts = None
        self._cache.clear()
        self._changed()

    # -- reading (tests, snapshots) ------------------------------------------------------

    @property
    def dropped(self) -> int:
        return self._first

    @property
    def end(self) -> int:
        return self._first + len(self._lines)

    def last_line(self) -> str | None:
        """The newest line as plain text (None when there is none)."""
        if not self._lines:
            return None
        item = self._lines[-1]
        if isinstance(item, str):
            return item
        return item.plain if isinstance(item, Text) else "".join(s.text for s in item)

    def plain_lines(self) -> list[str]:
        from nbtui.display.outputs import strip_ansi
        out = []
        for item in self._lines:
            if isinstance(item, str):
                out.append(strip_ansi(item))
            elif isinstance(item, Text):
                out.append(item.plain)
            else:
                out.append("".join(s.text for s in item))
        return out

    # -- writing -------------------------------------------------------------------------

    def _push(self, items: list[Line], err: bool = False) -> None:
        if not items:
            return
        for i, item in enumerate(items):
            if isinstance(item, str):
                if len(item) > MAX_LINE_CHARS:
                    items[i] = cut_line(item)
            elif isinstance(item, Text) and len(item) > MAX_LINE_CHARS + 200:
                cut = item[:MAX_LINE_CHARS]
                cut.append(f" … ({len(item) - MAX_LINE_CHARS:,} more characters not shown)", style="dim")
                items[i] = cut
        self.lines_received += len(items)
        if len(items) >= self.max_lines:
            skip = len(items) - self.max_lines
            self._first += len(self._lines) + skip
            self._lines.clear()
            self._cells.clear()
            self._rows_total = 0
            items = items[skip:]
            self._cache.clear()
        else:
            over = len(self._lines) + len(items) - self.max_lines
            if over > 0:
                for _ in range(over):
                    self._lines.popleft()
                    self._rows_total -= self._rows_of(self._cells.popleft())
                self._first += over
        start = self._first + len(self._lines)
        self._lines.extend(items)
        cells = [_width(i) for i in items]
        self._cells.extend(cells)
        self._rows_total += sum(self._rows_of(c) for c in cells)
        if err:
            self._err.update(range(start, start + len(items)))
        if len(self._err) > 2 * self.max_lines:
            self._err = {i for i in self._err if i >= self._first}
        widest = max(cells, default=0)
        if widest > self._widest:
            self._widest = widest
        self._changed()

    def write(self, line: Line) -> None:
        self.close_line()
        self._push([line])

    def write_lines(self, lines: Iterable[Line]) -> None:
        self.close_line()
        self._push(list(lines))

    def write_renderable(self, renderable: RenderableType) -> None:
        """Render something rich (markdown) at the current width and append its lines."""
        width = max(20, (self.size.width or 80) - 2)
        console = self.app.console
        options = console.options.update(width=width, height=None)
        lines = console.render_lines(renderable, options, pad=False)
        self.write_lines([Strip(Segment.simplify(line)) for line in lines])

    def close_line(self) -> None:
        self._open = False
        self._cr = False

    def stream(self, text: str, stderr: bool = False) -> None:
        """Append stream text: newlines end lines, ``\\r`` rewrites the open line.
        stderr's lines are their own (never joined to stdout's) and drawn in STDERR_STYLE."""
        if not text:
            return
        if self._open and self._open_err != stderr:
            self.close_line()
        self._open_err = stderr
        segments = text.split("\n")
        ends_open = not text.endswith("\n")
        if not ends_open:
            segments.pop()
        if len(segments) > self.max_lines + 1:  # only the tail can stay on screen
            self._first += len(segments) - self.max_lines - 1
            self.lines_received += len(segments) - self.max_lines - 1
            segments = segments[-self.max_lines - 1:]
            self.close_line()  # the open line was completed by a line now dropped
        items: list[Line] = []
        for i, seg in enumerate(segments):
            if i == 0 and self._open and self._lines:
                cur = self._lines.pop()
                self._rows_total -= self._rows_of(self._cells.pop())
                self.lines_received -= 1
                self._cache.pop(self.end, None)
                self._err.discard(self.end)
                seg = seg if self._cr else (cur if isinstance(cur, str) else "") + seg
            if "\r" in seg:
                self._cr = seg.endswith("\r")
                parts = [p for p in seg.split("\r") if p]
                seg = parts[-1] if parts else ""
            else:
                self._cr = False
            items.append(seg if len(seg) <= MAX_LINE_CHARS else cut_line(seg))
        self._push(items, err=stderr)
        self._open = ends_open
        if not ends_open:
            self._cr = False

    def truncate(self, absolute: int) -> None:
        """Drop every line from absolute index ``absolute`` on (a cell being redrawn)."""
        keep = max(0, absolute - self._first)
        while len(self._lines) > keep:
            self._lines.pop()
            self._rows_total -= self._rows_of(self._cells.pop())
        self._err = {i for i in self._err if i < absolute}
        self._cache.clear()
        self.close_line()
        self._changed()

    def clear(self) -> None:
        self._lines.clear()
        self._cells.clear()
        self._rows_total = 0
        self._err.clear()
        self._first = 0
        self._widest = 0
        self._cache.clear()
        self.cell_start = 0
        self.close_line()
        self._changed()

    def _changed(self) -> None:
        follow = self.is_vertical_scroll_end or self.scroll_y >= self.max_scroll_y - 1
        self._starts = None
        if self._wrap:
            rows = self._rows_total + (1 if self._first else 0)
            self.virtual_size = Size(self._wrap_width or 1, rows)
        else:
            rows = len(self._lines) + (1 if self._first else 0)
            self.virtual_size = Size(self._widest + 1, rows)
        if follow:
            self.scroll_end(animate=False, immediate=False, x_axis=False)
        self.refresh()

    # -- drawing -------------------------------------------------------------------------

    def render_lines(self, crop: Region) -> list[Strip]:
        # What every line of one frame shares, computed once for the frame: the widget's
        # style walks its ancestors and the content region its scrollbars, which cost more
        # than drawing a cached line (at 40 rows, most of a frame while a kernel streams).
        self._frame = (self.rich_style, self.scrollable_content_region.width, self._width_for_rows())
        try:
            return super().render_lines(crop)
        finally:
            self._frame = None

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        row = scroll_y + y
        if self._frame is not None:
            style, width, rows_width = self._frame
        else:
            style, width, rows_width = self.rich_style, self.scrollable_content_region.width, self._width_for_rows()
        if self._first:
            if row == 0:
                text = Text(f"⋯ {self._first:,} earlier lines not kept (the newest {self.max_lines:,} are)",
                            style="italic dim")
                return Strip(text.render(self.app.console)).crop_extend(scroll_x, scroll_x + width, style).apply_style(style)
            row -= 1
        part = 0
        if self._wrap:
            if self._wrap_width != rows_width:
                self._relayout()  # the width changed since: lay the rows out again
            if self._starts is None:
                starts, at = [], 0
                for c in self._cells:
                    starts.append(at)
                    at += self._rows_of(c)
                self._starts = starts
            if row < 0 or row >= self._rows_total:
                return Strip.blank(width, style)
            line = bisect.bisect_right(self._starts, row) - 1
            part, row = row - self._starts[line], line
        if row >= len(self._lines) or row < 0:
            return Strip.blank(width, style)
        key = self._first + row
        strip = self._cache.get(key)
        if strip is None:
            strip = self._to_strip(self._lines[row], key in self._err)
            if len(self._cache) > 4000:
                self._cache.clear()
            self._cache[key] = strip
        if self._wrap:
            w = self._wrap_width
            return strip.crop_extend(part * w, part * w + width, style).apply_style(style)
        return strip.crop_extend(scroll_x, scroll_x + width, style).apply_style(style)

    def _to_strip(self, item: Line, err: bool = False) -> Strip:
        if isinstance(item, Strip):
            return item
        if isinstance(item, str):
            text = ansi(item, end="")  # colours kept; moves, clears, titles, OSC 52 dropped
            if err:  # under the kernel's own colours (a span: Text.render ignores a base style)
                text.stylize_before(STDERR_STYLE)
        else:
            text = item
        if "\t" in text.plain:
            text = text.copy()
            text.expand_tabs(8)
        segments = [s for s in text.render(self.app.console) if s.text != "\n"]
        return Strip(segments)

    def on_resize(self) -> None:
        self._cache.clear()
        if self._wrap:
            self._relayout()


def _width(item: Line) -> int:
    """The line's width in cells, as drawn (tabs at 8, wide characters twice)."""
    if isinstance(item, str):
        if "\x1b" in item:
            from nbtui.display.outputs import strip_ansi
            item = strip_ansi(item)
        if "\t" in item:
            item = item.expandtabs(8)
        return len(item) if item.isascii() else cell_len(item)
    return item.cell_len if isinstance(item, Text) else item.cell_length


def styled(text: str, style: str | Style) -> Text:
    return Text(text, style=style, end="")
