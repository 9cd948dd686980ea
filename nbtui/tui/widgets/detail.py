"""The detail pane: everything known about the selected kernel, with usage sparklines."""

from __future__ import annotations

from typing import Optional, Protocol

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll


from nbtui.display import table_rows as tr
from nbtui.core.model import GpuUse, Kernel, ServerInfo, Usage
from nbtui.core.orphans import explain_kernel, explain_process
from nbtui.display.table_rows import Row
from nbtui.core.text import visible
from nbtui.tui.usage_history import History
from nbtui.tui.widgets.textline import TextLines
from nbtui.core.units import human_bytes, human_duration, human_percent, iso


class _Row(Protocol):
    def __call__(self, label: str, value: object, style: str = "") -> None: ...


def _rower(t: Text) -> _Row:
    def row(label: str, value: object, style: str = "") -> None:
        t.append(f"{label:<9}", style="bold")
        t.append(visible(value) + "\n", style=style)  # outside strings: plain, escapes visible
    return row


def describe_row(r: Row, server: Optional[ServerInfo], error_style: str = "bold red") -> Text:
    """What the pane says about a row of any kind: what the kind is, then its facts."""
    if r.kind == tr.KERNEL:
        return describe(r.item, server, error_style)
    t = Text()
    row = _rower(t)
    if r.kind == tr.TERMINAL:
        term = r.item
        t.append("A Jupyter terminal: a shell of the server and every job started in it "
                 "(a job lives on after its tab closes). k ends it through the server, then "
                 "what survives of its jobs.\n\n", style="italic")
        row("terminal", f"{term.server}/{term.name}")
        if r.reasons:
            row("orphan", ", ".join(r.reasons), error_style)
        row("server", f"{term.server}  {server.url if server else '—'}")
        row("user", term.user or "—")
        if term.process_user and term.process_user != term.user:
            row("os user", term.process_user)
        row("idle", f"{human_duration(term.idle_seconds)} · active {iso(term.last_activity) or '—'}")
        _usage_rows(row, term.usage, term.pid)
    else:
        p = r.item
        if r.kind == tr.LEFTOVER:
            t.append("A leftover process: it belongs to Jupyter (a kernel's child or a kernel "
                     "whose server is gone) but no live kernel holds it; it keeps its memory "
                     "until it is freed. k signals it and its children, after a confirmation.\n\n",
                     style="italic")
        else:
            t.append("A Jupyter process outside every listed kernel, most likely of a server that "
                     "could not be read; not an orphan until that server is read.\n\n", style="italic")
        row("pid", f"{p.pid}  (user {p.user or '—'})")
        if p.orphan_reasons:
            row("orphan", ", ".join(p.orphan_reasons), error_style)
            row("why", explain_process(p))
        row("command", p.cmdline or "—")
        row("notebook", p.notebook or "—")
        row("kernel", p.kernel_id or "—")
        row("server", (f"{r.server} (pid {p.server_pid})" if r.server else
                       f"pid {p.server_pid}" if p.server_pid is not None else "—"))
        row("usage", f"CPU {human_percent(p.cpu_percent)}  MEM {human_bytes(p.memory_bytes)}  "
                     f"GPU {human_bytes(p.gpu_memory_bytes)}")
        for g in p.gpus:
            row("", _gpu(g))
        return t
    return t


def _usage_rows(row: _Row, u: Optional[Usage], pid: Optional[int] = None) -> None:
    if u is None:
        row("process", f"pid {pid if pid is not None else '—'}")
        row("usage", "— (not measured)")
        return
    row("process", f"pid {u.pid if u.pid is not None else pid if pid is not None else '—'} on {u.host or '—'}"
                   f"  (source {u.source})")
    row("usage", f"CPU {human_percent(u.cpu_percent)}  MEM {human_bytes(u.memory_bytes)}  "
                 f"GPU {human_bytes(u.gpu_memory_bytes)}  GPU% {human_percent(u.gpu_percent)}")
    children = [p for p in u.pids if p != u.pid]
    if children:
        shown = ", ".join(str(p) for p in children[:8]) + (" …" if len(children) > 8 else "")
        row("children", f"{len(children)}: {shown}")


def describe(k: Kernel, server: Optional[ServerInfo], error_style: str = "bold red") -> Text:
    t = Text()
    row = _rower(t)

    row("kernel", k.kernel_id)
    if k.orphan_reasons:  # first: why it is flagged is what the pane is opened for
        row("orphan", ", ".join(k.orphan_reasons), error_style)
        row("why", explain_kernel(k).split(": ", 1)[-1])
    row("server", f"{k.server}  {server.url if server else '—'}")
    if k.session:
        row("notebook", k.session.path or "—")
        row("session", f"{k.session.id}  ({k.session.type})")
    else:
        row("notebook", "(no session)")
    row("spec", k.kernel_name)
    if k.user:
        row("user", k.user)
    if k.process_user and k.process_user != k.user:  # a hub's servers often all run as root
        row("os user", k.process_user)
    conns = "—" if k.connections is None else k.connections
    row("state", f"{k.state} · {conns} conn · {tr.activity_text(k)}")
    row("active", iso(k.last_activity) or "—")
    u = k.usage
    if u is None:
        row("usage", "— (no usage source for this server)")
    else:
        row("process", f"pid {u.pid if u.pid is not None else '—'} on {u.host or '—'}  (source {u.source})")
        row("usage", f"CPU {human_percent(u.cpu_percent)}  MEM {human_bytes(u.memory_bytes)}  "
                     f"GPU {human_bytes(u.gpu_memory_bytes)}  GPU% {human_percent(u.gpu_percent)}")
        for g in u.gpus:
            row("", _gpu(g))
        children = [p for p in u.pids if p != u.pid]
        if children:
            shown = ", ".join(str(p) for p in children[:8]) + (" …" if len(children) > 8 else "")
            row("children", f"{len(children)}: {shown}")
        if u.note:
            row("note", u.note, "italic")
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
    DetailPane:focus { border-left: heavy $accent; }
    DetailPane #detail-text { height: auto; }
    DetailPane #detail-spark { height: auto; margin-top: 1; }
    """

    def compose(self) -> ComposeResult:
        yield TextLines("", id="detail-text")
        yield TextLines("", id="detail-spark")

    def show(self, r: Row | Kernel | None, server: Optional[ServerInfo], history: History,
             error_style: str = "bold red") -> None:
        """``r``: a table row (any kind) or a Kernel."""
        text = self.query_one("#detail-text", TextLines)
        spark_lines = self.query_one("#detail-spark", TextLines)
        if isinstance(r, Kernel):
            r = tr.kernel_row(r)
        if r is None:
            text.show(Text("Nothing selected."))
            spark_lines.show(Text(""))
            return
        text.show(describe_row(r, server, error_style))
        if r.kind != tr.KERNEL:
            spark_lines.show(Text(""))
            return
        k = r.item
        width = max(8, self.size.width - 13)
        lines = []
        for i, (label, fmt, top) in enumerate((("CPU", human_percent, 100.0), ("MEM", human_bytes, None),
                                               ("GPU", human_bytes, None))):
            data = history.series(k.key, i)
            last = fmt(data[-1]) if data and data[-1] is not None else "—"
            lines.append(f"{label:<4}{last:>6} {spark(data, width, top) if data else ''}")
        spark_lines.show(Text("\n".join(lines)))


def _gpu(g: GpuUse) -> str:
    """One GPU of a row: ``GPU 0/1/0 MIG-1234abcd  2.0G  —`` (a MIG instance by its own id and uuid)."""
    sim = " (simulated)" if g.simulated else ""
    return f"GPU {g.label}{sim} {visible(g.uuid[:12])}  {human_bytes(g.memory_bytes)}  {human_percent(g.sm_percent)}"
