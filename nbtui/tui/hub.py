"""A hub's users' servers in the TUI: the servers strip (collapsed to a count per hub when
there are many) and stopping a user's server through its hub (confirmed, audited)."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, Optional

from nbtui.core.model import ServerInfo, Snapshot
from nbtui.files.secrets import redact
from nbtui.core.text import visible
from nbtui.tui.screens.confirm import ConfirmScreen

if TYPE_CHECKING:
    from nbtui.service.actions.hubservers import ServerStep
    from nbtui.tui.screens.fleet import FleetScreen
STRIP_MAX = 4  # a hub's user servers shown one by one up to this many, then as a count


def strip_entries(servers: list[ServerInfo]) -> list[tuple[str, str]]:
    """(name, what follows it) for each readable server of the strip, in order; a hub's
    user servers follow their hub, or collapse into its entry when there are many."""
    users: dict[str, list[ServerInfo]] = defaultdict(list)
    for s in servers:
        if s.source == "hub" and s.user is not None and s.hub:
            users[s.hub].append(s)
    hubs = {s.name for s in servers if s.source == "hub" and s.user is None}
    out = []
    for s in servers:
        if s.source == "hub" and s.user is not None and s.hub in hubs:
            continue  # shown with its hub
        out.append(_entry(s))
        if s.name in hubs:
            mine = users.get(s.name, [])
            if len(mine) > STRIP_MAX:
                proxied = sum(1 for x in mine if x.route == "proxy")
                pending = sum(1 for x in mine if x.pending)
                name, extra = out[-1]
                words = [f"{len(mine)} user servers"] + ([f"{proxied} via proxy"] if proxied else []) + (
                    [f"{pending} pending"] if pending else [])
                out[-1] = (name, f"{extra} ({', '.join(words)})".strip())
            else:
                out.extend(_entry(x) for x in mine)
    return out


def _entry(s: ServerInfo) -> tuple[str, str]:
    if s.pending:
        return visible(s.name), "starting…" if s.pending == "spawn" else "stopping…"
    extra = " ".join(x for x in (s.version and f"v{visible(s.version)}",
                                 s.latency_ms is not None and f"{s.latency_ms:.0f}ms") if x)
    if s.route == "proxy":
        extra += " via proxy (marks activity)"
    return visible(s.name), extra.strip()


def hub_server_of(screen: FleetScreen, server_name: str) -> Optional[ServerInfo]:
    snap = screen.snapshot
    s = next((x for x in (snap.servers if snap else ()) if x.name == server_name), None)
    return s if s is not None and s.source == "hub" and s.user is not None else None


def stop_server(screen: FleetScreen) -> None:
    """Stop the selected kernel's single-user server through its hub, after a confirmation."""
    k = screen.selected_kernel
    s = hub_server_of(screen, k.server) if k is not None else None
    if s is None:
        screen.notify("select a kernel of a hub user's server first (or v: every server as a row)",
                      severity="warning")
        return
    confirm_stop(screen, screen.snapshot, s)


def confirm_stop(screen: Any, snapshot: Optional[Snapshot], s: ServerInfo) -> None:
    """The plan of stopping ``s``, a confirmation, then the stop (re-checked and audited by
    nbtui.service.actions.hubservers.stop_servers); ``screen`` shows the outcome."""
    from nbtui.service.actions.hubservers import plan_stop_server  # on first use: the servers strip above is on the way to the first paint

    if snapshot is None:
        return
    step = plan_stop_server(snapshot, s)
    if step.refusal:
        screen.notify(f"{visible(s.name)}: {step.refusal}", severity="warning")
        return
    lines = [step.describe(), "", "Every kernel of this server stops; the user can start it again from the hub."]

    def answered(yes: bool | None) -> None:
        if yes:
            _run(screen, step)

    screen.app.push_screen(ConfirmScreen(f"Stop {visible(s.name)}?", lines, "Stop"), answered)


def _run(screen: Any, step: ServerStep) -> None:
    from nbtui.service.actions.hubservers import stop_servers

    async def go() -> None:
        try:
            (outcome,) = await screen.app.act(lambda fleet: stop_servers(fleet, [step], action="stop-server"))
        except Exception as e:  # one line, never a token
            screen.notify(f"stop failed: {redact(str(e)).splitlines()[0] if str(e) else type(e).__name__}",
                          severity="error", timeout=6)
            return
        screen.notify(redact(outcome.describe()), severity="information" if outcome.ok else "error", timeout=5)
        screen.app.refresh_now()

    screen.app.run_worker(go(), group="actions")  # the app's: the screen may close meanwhile
