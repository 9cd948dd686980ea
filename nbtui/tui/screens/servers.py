"""Every server as a row (``v`` on the fleet screen): configured and discovered servers,
each hub, and under it every user's single-user server, however many (the servers strip
collapses a hub's many servers to a count; here each one is a row).

``k`` on a hub user's server stops it through its hub: the readonly gate, the plan, a
confirmation, the re-check right before acting and the audit lines of the palette's stop
(nbtui.service.actions.hubservers: plan_stop_server / stop_servers). ``enter`` shows that server's rows on the
fleet screen; escape goes back. The rows follow every refresh.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Optional

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable

from nbtui.core.model import ServerInfo, Snapshot
from nbtui.files.secrets import redact
from nbtui.core.text import visible
from nbtui.tui.safe import plain
from nbtui.tui.widgets.textline import TextLines
from nbtui.tui.widgets.keys_footer import KeysFooter
from nbtui.tui.widgets.table import RowTable
from nbtui.core.units import human_duration, middle_truncate
if TYPE_CHECKING:
    from nbtui.tui.app import NbtuiApp
NAME_MAX = 36  # a longer server name is cut in its middle (the detail pane has it whole)
COLUMNS = (("name", "SERVER"), ("user", "USER"), ("state", "STATE"), ("route", "ROUTE"),
           ("kernels", "KERNELS"), ("started", "STARTED"), ("active", "HUB ACTIVE"))
DASH = "—"


def ordered(servers: tuple[ServerInfo, ...] | list[ServerInfo]) -> list[ServerInfo]:
    """The snapshot's order, each hub's user servers right after their hub (by name)."""
    hubs = {s.name for s in servers if s.source == "hub" and s.user is None}
    users: dict[str, list[ServerInfo]] = {}
    for s in servers:
        if s.source == "hub" and s.user is not None and s.hub in hubs:
            users.setdefault(s.hub or "", []).append(s)
    out: list[ServerInfo] = []
    for s in servers:
        if s.source == "hub" and s.user is not None and s.hub in hubs:
            continue
        out.append(s)
        out += sorted(users.get(s.name, []), key=lambda x: x.name)
    return out


def is_user_server(s: Optional[ServerInfo]) -> bool:
    return s is not None and s.source == "hub" and s.user is not None


def is_hub(s: Optional[ServerInfo]) -> bool:
    """A hub's own row (its users' servers are the rows under it)."""
    return s is not None and s.source == "hub" and s.user is None


HUB_NOTE = ("A JupyterHub: its users' servers are the rows under it; k on one of them stops that "
            "server through the hub (after a confirmation); enter shows every kernel of its users.")


def _ago(now: Optional[dt.datetime], then: Optional[dt.datetime]) -> str:
    if now is None or then is None:
        return DASH
    return human_duration(max(0.0, (now - then).total_seconds())) + " ago"


def _state(s: ServerInfo) -> str:
    if s.pending == "spawn":
        return "starting…"
    if s.pending == "stop":
        return "stopping…"
    if s.status == "skipped":  # read through the proxy by another nbtui within proxy_interval
        return "skipped"
    return "ok" if s.ok else (s.error_kind or s.status)


def cells(s: ServerInfo, snap: Snapshot, hubs: set[str]) -> tuple[str, ...]:
    """The row's plain cells (every outside string through visible())."""
    name = visible(s.name)
    if is_user_server(s) and s.hub in hubs:
        name = "  " + name  # under its hub
    name = middle_truncate(name, NAME_MAX)
    kernels = sum(1 for k in snap.kernels if k.server == s.name)
    if s.source == "hub" and s.user is None:
        count = sum(1 for k in snap.kernels if k.server.startswith(s.name + "/"))
        kernels_cell = str(count) if s.ok else DASH  # on all its users' servers
    else:
        kernels_cell = str(kernels) if s.ok and not s.pending else DASH
    route = s.route or DASH  # how a hub user's server is read (direct | proxy)
    return (name, visible(s.user) if s.user else DASH, visible(_state(s)), visible(route), kernels_cell,
            _ago(snap.generated_at, s.started), _ago(snap.generated_at, s.hub_last_activity))


class ServersScreen(Screen):
    if TYPE_CHECKING:
        app: NbtuiApp

    DEFAULT_CSS = """
    ServersScreen { layout: vertical; }
    ServersScreen #servers-title { height: auto; background: $panel; padding: 0 1; }
    ServersScreen DataTable { height: 1fr; }
    ServersScreen #servers-note { height: auto; max-height: 50%; padding: 0 1; color: $text-muted; }
    ServersScreen #servers-note.error { color: $text; }
    """

    BINDINGS = [
        Binding("k", "stop", "Stop server"),
        Binding("enter", "show", "Its rows"),
        Binding("escape,v", "back", "Back"),
        Binding("R", "refresh", "Refresh", show=False),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._shown: Optional[Snapshot] = None
        self._order: list[str] = []
        self._text: dict[str, tuple[str, ...]] = {}
        self._said = 0.0

    def compose(self) -> ComposeResult:
        yield TextLines("Servers", id="servers-title")
        yield RowTable(id="server-table", cursor_type="row", zebra_stripes=False)
        yield TextLines("", id="servers-note")
        yield KeysFooter(compact=True, show_command_palette=False)

    @property
    def table(self) -> DataTable:
        return self.query_one("#server-table", DataTable)

    @property
    def snapshot(self) -> Optional[Snapshot]:
        return self.app.snapshot

    def on_mount(self) -> None:
        for key, label in COLUMNS:
            self.table.add_column(label, key=key)
        self.render_rows()
        self.table.focus()
        self.set_interval(0.25, self._follow)

    def _follow(self) -> None:
        if self.app.snapshot is not self._shown:
            self.render_rows()

    # -- rows ----------------------------------------------------------------------------

    @property
    def selected(self) -> Optional[ServerInfo]:
        snap = self.snapshot
        t = self.table
        if snap is None or not self._order or t.cursor_row < 0 or t.cursor_row >= len(self._order):
            return None
        name = self._order[t.cursor_row]
        return next((s for s in snap.servers if s.name == name), None)

    def select(self, name: str) -> bool:
        if name not in self._order:
            return False
        self.table.move_cursor(row=self._order.index(name), animate=False)
        return True

    def render_rows(self) -> None:
        snap = self.snapshot
        self._shown = snap
        servers = ordered(snap.servers) if snap is not None else []
        hubs = {s.name for s in servers if s.source == "hub" and s.user is None}
        keep = self.selected.name if self.selected is not None else None
        new = {s.name: cells(s, snap, hubs) for s in servers} if snap is not None else {}
        order = list(new)
        t = self.table
        if order != self._order:
            t.clear()
            for name in order:
                t.add_row(*self._styled(name, new[name], snap), key=name)
            self._order = order
            if keep in order:
                t.move_cursor(row=order.index(keep), animate=False)
        else:
            for name in order:
                if new[name] != self._text.get(name):
                    for (key, _), cell in zip(COLUMNS, self._styled(name, new[name], snap)):
                        t.update_cell(name, key, cell)
        self._text = new
        self._title(servers)

    def _styled(self, name: str, row: tuple[str, ...], snap: Optional[Snapshot]) -> list[Text]:
        theme = self.app.current_theme
        s = next((x for x in snap.servers if x.name == name), None) if snap is not None else None
        out = []
        for (key, _), text in zip(COLUMNS, row):
            style = ""
            if key == "name":
                style = "bold" if s is not None and not is_user_server(s) else ""
            elif key == "state" and s is not None:
                style = (theme.error or "") if not s.ok else ((theme.warning or "") if s.pending else "")
            elif key == "route" and text == "proxy":
                style = theme.warning or ""
            out.append(plain(text, style=style))
        return out

    def _title(self, servers: list[ServerInfo]) -> None:
        users = [s for s in servers if is_user_server(s)]
        proxied = sum(1 for s in users if s.route == "proxy")
        t = Text()
        t.append("Servers", style="bold")
        t.append(f"  {len(servers)} row{'s' if len(servers) != 1 else ''}")
        if users:
            t.append(f", {len(users)} hub user server{'s' if len(users) != 1 else ''}")
            if proxied:
                t.append(f" ({proxied} read through the proxy, which marks them active)")
        self.query_one("#servers-title", TextLines).show(t)
        s = self.selected
        note = Text(no_wrap=False)  # wrapped: an error is read whole here (the fleet screen cuts it to a line)
        if s is None:
            note.append("No servers yet." if not servers else "")
        elif s.error:
            note.append(visible(redact(s.error)))
        elif is_user_server(s):
            note.append("k stops this user's server through the hub (after a confirmation); "
                        "enter shows its kernels.")
        elif is_hub(s):
            note.append(HUB_NOTE)
        else:
            note.append("enter shows this server's rows; k stops hub users' servers only.")
        if is_user_server(s) and s is not None and s.route_note:
            note.append("\n" + visible(s.route_note))
        notes = self.query_one("#servers-note", TextLines)
        notes.set_class(bool(s is not None and s.error), "error")
        notes.show(note)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._title(ordered(self.snapshot.servers) if self.snapshot is not None else [])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_show()

    # -- keys ----------------------------------------------------------------------------

    def action_stop(self) -> None:
        from nbtui.service.actions.gate import Readonly, require_writable
        try:
            require_writable(self.app, "stopping servers")
        except Readonly as e:
            self.notify(e.short, severity="warning", timeout=4)
            return
        s = self.selected
        if s is None:
            return
        if not is_user_server(s):
            if is_hub(s):
                self.notify(f"{visible(s.name)} is a hub: nbtui does not stop a hub. {HUB_NOTE}",
                            severity="warning", timeout=6)
            else:
                self.notify(f"{visible(s.name)} is not a hub user's server: k stops a hub user's "
                            "single-user server (the rows under a hub)", severity="warning", timeout=4)
            return
        from nbtui.tui.hub import confirm_stop
        confirm_stop(self, self.snapshot, s)

    def action_show(self) -> None:
        s = self.selected
        self.app.pop_screen()
        fleet = self.app.fleet_screen
        if s is not None and fleet is not None:
            fleet.show_server(s.name, hub=is_hub(s))

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_refresh(self) -> None:
        self.app.refresh_now()
