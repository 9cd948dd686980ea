"""The detail pane: everything known about the selected kernel, with usage sparklines."""

from __future__ import annotations

from typing import Optional

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll


from nbtui.model import Kernel, ServerInfo
from nbtui.orphans import explain_kernel
from nbtui.report import iso
from nbtui.tui.history import History
from nbtui.text import visible
from nbtui.tui.textline import TextLines
from nbtui.units import human_bytes, human_duration, human_percent



def describe(k: Kernel, server: Optional[ServerInfo], error_style: str = "bold red") -> Text:
    t = Text()

    def row(label: str, value: str, style: str = "") -> None:
        t.append(f"{label:<9}", style="bold")
        t.append(visible(value) + "\n", style=style)

    row("kernel", k.kernel_id)
    row("server", f"{k.server}  {server.url if server else '—'}")
    if k.session:
        row("notebook", k.session.path or "—")
        row("session", f"{k.session.id}  ({k.session.type})")
    else:
        row("notebook", "(no session)")
    row("spec", k.kernel_name)
    conns = "—" if k.connections is None else k.connections
    row("state", f"{k.state} · {conns} conn · idle {human_duration(k.idle_seconds)}")
    row("active", iso(k.last_activity) or "—")
    u = k.usage
    if u is None:
        row("usage", "— (no usage source for this server)")
    else:
        row("process", f"pid {u.pid if u.pid is not None else '—'} on {u.host or '—'}  (source {u.source})")
        row("usage", f"CPU {human_percent(u.cpu_percent)}  MEM {human_bytes(u.memory_bytes)}  "
                     f"GPU {human_bytes(u.gpu_memory_bytes)}  GPU% {human_percent(u.gpu_percent)}")
        for g in u.gpus:
            row("", f"GPU {g.index} {g.uuid[:12]}  {human_bytes(g.memory_bytes)}  {human_percent(g.sm_percent)}")
        children = [p for p in u.pids if p != u.pid]
        if children:
            shown = ", ".join(str(p) for p in children[:8]) + (" …" if len(children) > 8 else "")
            row("children", f"{len(children)}: {shown}")
        if u.note:
            row("note", u.note, "italic")
    if k.orphan_reasons:
        row("orphan", ", ".join(k.orphan_reasons), error_style)
        row("why", explain_kernel(k).split(": ", 1)[-1])
    return t


BLOCKS = " ▁▂▃▄▅▆▇█"


def spark(values: list[Optional[float]], width: int, top: Optional[float] = None) -> str:
    """The last ``width`` values as block characters scaled 0..top (a gap where unknown)."""
    values = values[-width:] if width > 0 else []
    known = [v for v in values if v is not None]
    top = max([top or 0.0] + known)
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        elif top <= 0:
            out.append(BLOCKS[1])
        else:
            out.append(BLOCKS[max(1, min(8, round(v / top * 8)))])
    return "".join(out)


class DetailPane(VerticalScroll):
    DEFAULT_CSS = """
    DetailPane { padding: 0 1; border-left: vkey $panel; }
    DetailPane #detail-text { height: auto; }
    DetailPane #detail-spark { height: auto; margin-top: 1; }
    """

    def compose(self) -> ComposeResult:
        yield TextLines("", id="detail-text")
        yield TextLines("", id="detail-spark")

    def show(self, k: Optional[Kernel], server: Optional[ServerInfo], history: History,
             error_style: str = "bold red") -> None:
        text = self.query_one("#detail-text", TextLines)
        spark_lines = self.query_one("#detail-spark", TextLines)
        if k is None:
            text.show(Text("No kernel selected."))
            spark_lines.show(Text(""))
            return
        text.show(describe(k, server, error_style))
        width = max(8, self.size.width - 13)
        lines = []
        for i, (label, fmt, top) in enumerate((("CPU", human_percent, 100.0), ("MEM", human_bytes, None),
                                               ("GPU", human_bytes, None))):
            data = history.series(k.key, i)
            last = fmt(data[-1]) if data and data[-1] is not None else "—"
            lines.append(f"{label:<4}{last:>6} {spark(data, width, top) if data else ''}")
        spark_lines.show(Text("\n".join(lines)))
