"""The fleet screen's summary line and servers strip, fitted to the width.

At 80 columns they keep their key words: the summary shortens its parts (and drops the
least important) instead of losing its end; an error line keeps the server's name, the
kind of failure and the URL, drops the repeated ``server NAME:`` prefix and cuts only
the detail. Every outside string is shown as plain ``Text`` through ``visible``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from rich.text import Text

from nbtui.core import summary
from nbtui.core.model import ServerInfo, Snapshot
from nbtui.files.secrets import redact
from nbtui.core.text import visible
from nbtui.core.units import human_bytes, human_duration, middle_truncate

if TYPE_CHECKING:
    from textual.theme import Theme

# (text, short text or None to drop, style, rank): rank 0 is kept longest.
Part = tuple[str, Optional[str], str, int]


def fit_parts(head: list[tuple[str, str]], parts: list[Part], width: int, sep: str = " · ") -> Text:
    """``head`` whole, then the parts joined by ``sep``; when too wide, the lowest-ranked
    parts take their short form first, then are dropped, until the line fits."""
    parts = list(parts)

    def length(ps: list[Part]) -> int:
        return sum(len(t) for t, _ in head) + sum(len(sep) + len(p[0]) for p in ps) + (2 if ps else 0)

    ranks = sorted({p[3] for p in parts if p[3] > 0}, reverse=True)
    for rank in ranks:  # first the short forms, least important first
        if length(parts) <= width:
            break
        parts = [(p[1], p[1], p[2], p[3]) if p[3] == rank and p[1] is not None else p for p in parts]
    for rank in ranks:  # then drop parts, least important first
        if length(parts) <= width:
            break
        parts = [p for p in parts if p[3] != rank]
    if length(parts) > width:  # last, the key words' own short forms
        parts = [(p[1], p[1], p[2], p[3]) if p[1] is not None else p for p in parts]
    t = Text(no_wrap=True, overflow="ellipsis")
    for text, style in head:
        t.append(text, style=style)
    for i, (text, _short, style, _rank) in enumerate(parts):
        t.append("  " if i == 0 else sep)
        t.append(text, style=style)
    return t


def summary_text(snap: Optional[Snapshot], width: int, *, theme: Theme, readonly: bool, shown: int, total: int,
                 filtered: bool, orphans_only: bool, marked: int, frees: str, waiting: tuple[str, ...] = (),
                 sort: Optional[str] = None, counts: Optional[summary.Counts] = None) -> Text:
    """The summary line; ``sort``: a sort by a column the width hides (``CPU▼``), named here."""
    head = [("nbtui", "bold")]
    if readonly:
        head.append(("  READONLY", "bold reverse"))
    if snap is None:
        return fit_parts(head, [("reading the servers…", "reading…", "", 0)], width)
    error = theme.error or ""
    c = counts if counts is not None else summary.count(snap)  # as `ls` counts (the one idle rule)
    up = c.servers_read
    n_servers = c.servers + len([w for w in waiting if w not in {s.name for s in snap.servers}])
    idle_gpu = c.idle_gpu_bytes
    parts: list[Part] = [
        (f"servers {up}/{n_servers}", f"{up}/{n_servers} srv", "" if up == n_servers else "bold", 0)]
    if waiting:
        parts.append((f"reading {len(waiting)}…", None, "italic", 1))
    if filtered:
        parts.append((f"{shown}/{total} shown" + (" (orphans)" if orphans_only else ""), f"{shown}/{total}", "bold", 0))
    parts.append((f"{c.kernels} kernel{'s' if c.kernels != 1 else ''}", f"{c.kernels} k", "", 0))
    if c.terminals:
        parts.append((f"{c.terminals} terminal{'s' if c.terminals != 1 else ''}", f"{c.terminals} term", "", 2))
    parts.append((f"{c.busy} busy", None, "", 4))
    parts.append((f"{c.idle} idle >{human_duration(snap.idle_threshold)}",
                  f"{c.idle} idle>{human_duration(snap.idle_threshold)}", "", 2))
    sim = " (simulated)" if any(g.simulated for g in snap.gpus) else ""
    parts.append((f"idle GPU{sim} {human_bytes(idle_gpu) if idle_gpu is not None else '—'}",
                  f"idle GPU {human_bytes(idle_gpu)}" if idle_gpu is not None else None, "", 3))
    if c.leftovers:
        held = c.leftover_gpu_bytes
        parts.append((f"{c.leftovers} leftover" + (f" ({human_bytes(held)} GPU)" if held else ""),
                      f"{c.leftovers} leftover", f"bold {error}", 1))
    if snap.stale_files:  # runtime files of servers gone (one that died this session too)
        parts.append((f"{len(snap.stale_files)} stale", None, "dim", 5))
    if sort:
        parts.append((f"sorted by {sort} (column hidden)", f"by {sort}", "bold", 0))
    if marked:
        parts.append((f"marked {marked}" + (f" ({frees})" if frees else ""), f"marked {marked}", "bold", 0))
    return fit_parts(head, parts, width)


def _detail(s: ServerInfo) -> str:
    """The error without what the line says already: the ``server NAME:`` prefix and the URL."""
    text = redact(s.error or "").replace("\n", " ").strip()
    prefix = f"server {s.name}: "
    if text.startswith(prefix):
        text = text[len(prefix):]
    for url in sorted({s.url, s.url.rstrip("/")}, key=len, reverse=True):
        if url:
            text = text.replace(f" to {url}", "").replace(f" at {url}", "").replace(url, "")
    text = text.replace(" :", ":").replace("  ", " ").strip(" :")
    return text


def server_lines(snap: Snapshot, width: int, *, theme: Theme, waiting: tuple[str, ...] = (),
                 expand_others: bool = False) -> Text:
    """One line of the servers that answered, then one line per server that did not. Other
    users' discovered servers (root's discovery) are one entry per user, or each its own
    entry with its owner where ``expand_others`` (the fleet screen's ``x``)."""
    t = Text(no_wrap=False, overflow="ellipsis")
    from nbtui.display.server_groups import split_others
    own, others = split_others(snap.servers)  # root: other users' discovered servers, one entry each
    if expand_others:
        own, others = list(snap.servers), []
    ok = [s for s in own if s.ok]
    bad = [s for s in own if not s.ok]
    owners = {s.name: s.owner for s in snap.servers if s.source == "discovered" and s.owner}
    from nbtui.tui.hub import strip_entries
    for i, (name, extra) in enumerate(strip_entries(ok)):  # a hub's many servers: one count
        if i:
            t.append("   ")
        t.append("● ", style=theme.success or "")
        t.append(visible(name), style="bold")
        t.append(f" {visible(extra)}" if extra else "")
        if expand_others and (owner := owners.get(name)):
            t.append(f" (user {visible(owner)})", style="dim")
    for g in others:
        if len(t):
            t.append("   ")
        t.append("● " if not g.unread else "◐ ", style=(theme.success if not g.unread else theme.warning) or "")
        t.append(f"user {visible(g.owner)}", style="bold")
        t.append(f" {g.summary()}")
    known = {s.name for s in snap.servers}
    for name in (w for w in waiting if w not in known):
        if len(t):
            t.append("   ")
        t.append("◌ ", style=theme.warning or "")
        t.append(visible(name), style="bold")
        t.append(" reading…", style="italic")
    for s in bad:
        if len(t):
            t.append("\n")
        t.append_text(error_line(s, width, theme))
    from nbtui.display.report import gpu_lines  # the GPU strip: one line per GPU (a MIG instance is one)

    for line in gpu_lines(snap, width):
        if len(t):
            t.append("\n")
        t.append(line, style="dim" if "simulated" in line else "")
    _holder_lines(t, snap, width, theme)
    return t


def _holder_lines(t: Text, snap: Snapshot, width: int, theme: Theme) -> None:
    """Below the servers: the GPUs whose used memory NVML names no process for, and the
    processes found holding their device node (the lines of ``nbtui ls``, fitted to the width;
    a GPU where none was found is left to ``ls``)."""
    from nbtui.display.report import holder_lines
    for line in holder_lines(snap, most=3, width=width, found_only=True):
        if len(t):
            t.append("\n")
        t.append(line, style="bold" if not line.startswith(" ") else "")


def error_line(s: ServerInfo, width: int, theme: Theme) -> Text:
    """``✗ NAME KIND URL: detail``, the detail cut first (then the URL's middle)."""
    t = Text(no_wrap=True, overflow="ellipsis")
    name = visible(s.name)
    kind = s.error_kind or s.status
    t.append("✗ ", style=f"bold {theme.error or ''}")
    t.append(name, style="bold")
    t.append(f" {visible(kind)}", style=f"bold {theme.error or ''}")
    used = 2 + len(name) + 1 + len(kind)
    url = visible(s.url)
    room = width - used - 1
    url = middle_truncate(url, max(12, min(len(url), room - 12 if room > 30 else room)))
    t.append(f" {url}")
    used += 1 + len(url)
    detail = visible(_detail(s))
    if detail and width - used - 2 >= 8:
        room = width - used - 2
        t.append(": " + (detail if len(detail) <= room else detail[: room - 1] + "…"))
    return t
