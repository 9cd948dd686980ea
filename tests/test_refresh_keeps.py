"""A refresh costs what changed (issue 25): a fleet read again keeps each kernel no server
changed as the very object it was (so its row and cells are not built again), and still shows
every change at once: a renamed notebook, a state, a verdict that time alone brings."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

import pytest

from nbtui.core import model, orphans
from nbtui.display import table_rows as tr
from nbtui.files.config import ServerConfig, Settings
from nbtui.service.fleet import Fleet


def _fleet(server) -> Fleet:
    fleet = Fleet([ServerConfig("srv", server.url, token_source="discovered", token=server.token)],
                  Settings(orphan_idle=3600))
    fleet.checks_notebooks = False  # this test's files are no concern: one read, no checks
    return fleet


def _mine(snap: model.Snapshot, ids: set[str]) -> dict[str, model.Kernel]:
    return {k.kernel_id: k for k in snap.kernels if k.kernel_id in ids}


def test_an_unchanged_kernel_is_kept_and_a_changed_one_is_shown_changed(jupyter, monkeypatch):
    still = jupyter.start_kernel()
    renamed = jupyter.create_session("work/before.ipynb")
    ids = {still, renamed["kernel"]["id"]}
    for kid in ids:  # started and idle: a starting kernel's own messages move its last activity
        jupyter.run_code(kid, "1")
    fleet = _fleet(jupyter)
    memo = tr.RowMemo()

    async def reads():
        first = await fleet.snapshot()
        second = await fleet.snapshot()  # the second read keeps what it built
        rows = tr.rows_of(second, memo=memo)
        jupyter.api("PATCH", f"api/sessions/{renamed['id']}", json={"path": "work/after.ipynb"}).raise_for_status()
        third = await fleet.snapshot()
        return first, second, rows, third, tr.rows_of(third, memo=memo)

    first, second, rows, third, rows_again = asyncio.run(reads())
    assert set(_mine(first, ids)) == ids
    before, after = _mine(second, ids), _mine(third, ids)
    # the notebook renamed on the server reads renamed at once
    assert after[renamed["kernel"]["id"]].session.path == "work/after.ipynb"
    assert before[renamed["kernel"]["id"]].session.path == "work/before.ipynb"
    # the kernel nobody touched is the same object, and so is its row
    assert after[still] is before[still]
    row_of = {r.key: r for r in rows}
    again = {r.key: r for r in rows_again}
    assert again[after[still].key] is row_of[before[still].key]
    assert again[after[renamed["kernel"]["id"]].key] is not row_of[before[renamed["kernel"]["id"]].key]
    assert tr.text(again[after[renamed["kernel"]["id"]].key], "notebook") == "work/after.ipynb"


def test_a_kept_kernel_still_turns_idle_as_time_passes(jupyter, monkeypatch):
    """An unchanged kernel is kept, but its idle time and the verdicts that follow from it
    are as of each read: two hours on, with no client, it is a disconnected-idle orphan."""
    kid = jupyter.create_session("work/a.ipynb")["kernel"]["id"]
    jupyter.run_code(kid, "1")  # used once, then left: idle, not "never used"
    fleet = _fleet(jupyter)

    async def reads():
        await fleet.snapshot()
        now = await fleet.snapshot()
        real = model.clock()
        monkeypatch.setattr(model, "clock", lambda: real + 2 * 3600)
        return now, await fleet.snapshot()

    now, later = asyncio.run(reads())
    k_now, k_later = _mine(now, {kid})[kid], _mine(later, {kid})[kid]
    assert k_now.connections == 0 and k_later.connections == 0
    assert orphans.DISCONNECTED_IDLE not in k_now.orphan_reasons
    assert k_later.orphan_reasons == (orphans.DISCONNECTED_IDLE,)
    assert k_later.idle_seconds is not None and k_later.idle_seconds >= 2 * 3600
    assert tr.idle_text(tr.kernel_row(k_later)) == "2h"


@pytest.mark.parametrize("said", [1, True])
def test_a_count_that_turns_into_true_is_not_the_last_reads_count(said):
    """The join compares what a server said with what it said last; ``true`` equals 1 in
    Python, yet a count of ``true`` is no count (unknown), whatever came before."""
    from nbtui.jupyter.join import join_kernels

    raw = {"id": "k1", "name": "python3", "last_activity": dt.datetime.now(dt.timezone.utc).isoformat(),
           "execution_state": "idle", "connections": 1}
    (first,) = join_kernels("srv", [raw], {}, {})
    (k,) = join_kernels("srv", [dict(raw, connections=said)], {}, {first.key: first})
    assert k.connections == (None if said is True else 1)
    assert (k is first) == (said is not True)


def test_a_list_where_a_name_belongs_is_read_anew_each_time():
    from nbtui.jupyter.join import join_kernels

    raw = {"id": "k1", "name": ["python3"], "last_activity": None, "execution_state": "idle", "connections": 0}
    (first,) = join_kernels("srv", [raw], {}, {})
    (again,) = join_kernels("srv", [raw], {}, {first.key: first})
    assert again is not first and again.kernel_name == first.kernel_name == "['python3']"


def test_a_joined_kernel_is_the_models_own_kernel_field_for_field():
    """The join sets a kernel's and a session's values itself (not through the frozen
    ``__init__``): what it makes is what the model's constructors make, every field of them
    (a field added to the model is one the join sets too), its idle time and key included."""
    from nbtui.jupyter.join import join_kernels

    when = "2026-12-01T10:00:00.123456Z"
    raw = {"id": "k1", "name": "python3", "last_activity": when, "execution_state": "busy", "connections": 2}
    (k,) = join_kernels("srv", [raw], {"k1": ("s1", "proj/a.ipynb", None, "notebook")})
    made = model.Kernel(server="srv", kernel_id="k1", kernel_name="python3", state="busy", connections=2,
                        last_activity=dt.datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=dt.timezone.utc),
                        session=model.Session("s1", "proj/a.ipynb", "a.ipynb", "notebook"))
    assert k == made and vars(k.session) == vars(made.session)
    assert {n: v for n, v in vars(k).items() if n not in ("session", "read_digest")} == \
        {n: v for n, v in vars(made).items() if n not in ("session", "read_digest")}
    assert k.seen_at == made.seen_at == made.last_activity.timestamp() and k.key == "srv:k1"
    (bare,) = join_kernels("srv", [{"id": "k2", "last_activity": "not a time"}], {})
    assert (bare.kernel_name, bare.state, bare.last_activity, bare.seen_at, bare.session) == \
        ("?", "unknown", None, None, None)


def test_a_fleet_a_service_reads_on_keeps_its_first_reads_kernels(jupyter):
    """A fleet service (the TUI, the exporter) reads again: its first read's kernels are
    already the ones the second keeps (an exporter's second read builds no kernel anew); a
    one-shot fleet (``ls``) keeps none, and builds the second read's anew."""
    from nbtui.service.service import FleetService

    kid = jupyter.start_kernel()
    jupyter.run_code(kid, "1")
    service = FleetService(_fleet(jupyter), partials=False, hold_back=None)
    try:
        first, second = (_mine(asyncio.run(service.read()).snapshot, {kid})[kid] for _ in range(2))
    finally:
        service.close(10)
    assert second is first
    once = _fleet(jupyter)

    async def reads():
        return [_mine(await once.snapshot(), {kid})[kid] for _ in range(2)]

    a, b = asyncio.run(reads())
    # the same kernel, built anew (its usage is measured again: a live kernel's RSS may move)
    assert dataclasses.replace(a, usage=None) == dataclasses.replace(b, usage=None) and a is not b


def test_a_server_that_answers_as_before_is_not_parsed_again_and_its_change_is_read_at_once(monkeypatch):
    """Unchanged answers are skipped end to end: a fleet read again parses no answer of a
    server that said the very same thing (its kernels are the objects of the last read), and
    reads its next change at once; a server that then fails is shown failed, not as before."""
    from nbtui.jupyter import rest
    from tests.fakehttp import FakeHTTP

    parsed: list[str] = []
    real_parse = rest.parse_json

    def counting(server: str, path: str, body: bytes | bytearray):
        parsed.append(path.split("?", 1)[0])
        return real_parse(server, path, body)

    monkeypatch.setattr(rest, "parse_json", counting)
    with FakeHTTP("liar", kernels=["k1", "k2"], paths={"k1": "a.ipynb"}) as fake:
        fleet = Fleet([ServerConfig("srv", fake.url, token_source="none")], Settings(orphan_idle=3600))
        fleet.checks_notebooks = False
        fleet.reads_again = True

        async def reads():
            first = await fleet.snapshot(hold_back=5.0)
            n_first = len(parsed)
            second = await fleet.snapshot(hold_back=5.0)
            n_second = len(parsed) - n_first
            fake.httpd.kernels.append("k3")  # type: ignore[attr-defined]
            third = await fleet.snapshot(hold_back=5.0)
            fake.httpd.mode = "500"  # type: ignore[attr-defined]
            fourth = await fleet.snapshot(hold_back=5.0)
            await fleet.aclose()
            return first, n_first, second, n_second, third, fourth

        first, n_first, second, n_second, third, fourth = asyncio.run(reads())
    assert {"api/kernels", "api/sessions", "api/terminals"} <= set(parsed[:n_first])
    assert n_second == 0  # nothing of the same answers parsed again
    assert [k.kernel_id for k in second.kernels] == [k.kernel_id for k in first.kernels]
    assert all(a is b for a, b in zip(first.kernels, second.kernels))
    assert {k.kernel_id for k in third.kernels} == {"k1", "k2", "k3"}
    assert {k.kernel_id: k.session.path if k.session else None for k in third.kernels}["k1"] == "a.ipynb"
    assert not fourth.kernels and not fourth.servers[0].ok


class _Server:
    """A Jupyter-shaped server on loopback whose one kernel's state, answer delay and
    /api/kernels status the test sets as it goes."""

    def __init__(self) -> None:
        import threading
        import time
        from http.server import ThreadingHTTPServer

        from tests.fakehttp import _Handler

        me = self
        self.delay, self.state, self.last = 0.0, "idle", "2026-01-01T00:00:00Z"
        self.kernels_status, self.sessions_hang = 200, False
        self.session_path: str | None = None  # k1's session's notebook (None: no session)
        self.others = 0  # sessions that name kernels the server does not list

        class Handler(_Handler):  # (its quiet log and its JSON answer)
            def do_GET(self):
                path = self.path.split("?", 1)[0]
                if path in ("/api/kernels", "/api/sessions") and me.delay:
                    time.sleep(me.delay)
                if path == "/api/sessions" and me.sessions_hang:
                    time.sleep(30)
                    return
                if path == "/api/kernels":
                    if me.kernels_status != 200:
                        self._json({"message": "forbidden"}, me.kernels_status)
                        return
                    self._json([{"id": "k1", "name": "python3", "last_activity": me.last,
                                 "execution_state": me.state, "connections": 0}])
                elif path == "/api/sessions" and me.session_path is not None:
                    self._json([{"id": "s1", "path": me.session_path, "name": "nb", "type": "notebook",
                                 "kernel": {"id": "k1"}}]
                               + [{"id": f"x{i}", "path": "x" * 1000, "kernel": {"id": f"ghost{i}"}}
                                  for i in range(me.others)])
                else:
                    self._json([] if path in ("/api/sessions", "/api/terminals") else {"version": "2.14.0"})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _read_on(**servers: _Server) -> Fleet:
    """A fleet read on and on (as a screen's) of these servers, by name; no notebook checks."""
    fleet = Fleet([ServerConfig(name, s.url, token_source="none") for name, s in servers.items()],
                  Settings(orphan_idle=3600))
    fleet.checks_notebooks = False
    fleet.reads_again = True
    return fleet


def test_a_read_that_outlasts_a_refresh_is_not_taken_for_the_one_after():
    """A slow server's read runs past a refresh (hold_back), which shows its last answer;
    when that read ends, the next refresh hears the same answer again: it shows what the
    server says now, not the objects of the refresh before (the same answer, not the same
    kernel)."""
    fast, slow = _Server(), _Server()
    fleet = _read_on(fast=fast, slow=slow)

    def state(snap: model.Snapshot) -> tuple[str, str]:
        (k,) = [k for k in snap.kernels if k.server == "slow"]
        return k.state, k.last_activity.isoformat() if k.last_activity else ""

    async def reads():
        first = await fleet.snapshot(hold_back=0.3)
        slow.delay, slow.state, slow.last = 1.0, "busy", "2026-06-01T00:00:00Z"
        held = await fleet.snapshot(hold_back=0.3)  # the slow read goes on without this refresh
        running = fleet._reading.get("slow")
        assert running is not None and "slow" in fleet.still_reading
        await asyncio.wait_for(asyncio.shield(running), 20)
        slow.delay = 0.0
        after = [await fleet.snapshot(hold_back=5.0) for _ in range(2)]
        await fleet.aclose()
        return first, held, after

    try:
        first, held, after = asyncio.run(reads())
    finally:
        fast.close()
        slow.close()
    assert state(first) == state(held) == ("idle", "2026-01-01T00:00:00+00:00")
    assert [state(s) for s in after] == [("busy", "2026-06-01T00:00:00+00:00")] * 2


def test_a_refused_listing_fails_the_read_at_once_not_at_the_timeout():
    """/api/kernels refused while /api/sessions hangs: the read fails with the refusal
    (auth-failed, which a hub answers with a new token), not later as a timeout."""
    srv = _Server()
    srv.kernels_status, srv.sessions_hang = 403, True
    fleet = Fleet([ServerConfig("x", srv.url, token_source="none", timeout=10)], Settings())
    fleet.checks_notebooks = False
    fleet.reads_again = True

    async def read():
        snap = await fleet.snapshot()
        await fleet.aclose()
        return snap

    try:
        snap = asyncio.run(read())
    finally:
        srv.close()
    assert (snap.servers[0].status, snap.servers[0].error_kind) == (model.AUTH_FAILED, "auth-failed")


def test_a_screen_asks_sessions_and_terminals_at_their_pace_a_new_kernels_at_once_and_all_by_hand(jupyter, monkeypatch):
    """A fleet read on and on (the TUI) asks /api/kernels every read, /api/sessions and
    /api/terminals once their answer is PACED_MAX_AGE old (here: not within the test), the
    sessions at once when a kernel is new to them (and at the next read, for a session made
    just after its kernel), and everything when a refresh is asked for by hand."""
    from nbtui.jupyter.rest import ServerClient
    from nbtui.service import fleet as fleet_mod

    monkeypatch.setattr(fleet_mod, "PACED_MAX_AGE", 3600.0)
    asked: list[str] = []
    for what in ("sessions_listing", "terminals_listing"):
        real = getattr(ServerClient, what)

        def counting(self, digest=False, _real=real, _what=what):
            asked.append(_what.split("_")[0])
            return _real(self, digest)

        monkeypatch.setattr(ServerClient, what, counting)
    first_session = jupyter.create_session("work/a.ipynb")
    k1 = first_session["kernel"]["id"]
    fleet = _fleet(jupyter)
    fleet.reads_again = True
    terminal = None

    def paths(snap: model.Snapshot) -> dict[str, str | None]:
        return {k.kernel_id: k.session.path if k.session else None for k in snap.kernels}

    async def reads():
        nonlocal terminal
        out = {"first": (await fleet.snapshot(), list(asked))}
        jupyter.api("PATCH", f"api/sessions/{first_session['id']}", json={"path": "work/b.ipynb"})
        terminal = jupyter.api("POST", "api/terminals").json()["name"]
        for name in ("paced", "new", "soon", "later", "by hand"):
            if name == "new":
                out["k2"] = jupyter.create_session("work/c.ipynb")["kernel"]["id"]
            if name == "by hand":
                fleet.read_whole_next()
            del asked[:]
            out[name] = (await fleet.snapshot(), list(asked))
        await fleet.aclose()
        return out

    try:
        out = asyncio.run(reads())
    finally:
        if terminal:
            jupyter.api("DELETE", f"api/terminals/{terminal}")
    k2 = out["k2"]
    first, paced, new, soon, later, by_hand = (out[n] for n in ("first", "paced", "new", "soon", "later", "by hand"))
    assert sorted(first[1]) == ["sessions", "terminals"] and paths(first[0])[k1] == "work/a.ipynb"
    # not asked yet: the rename and the new terminal wait for their pace
    assert paced[1] == [] and paths(paced[0])[k1] == "work/a.ipynb" and not paced[0].terminals
    # a new kernel: the sessions asked at once (the rename comes with them), and again next time
    assert new[1] == ["sessions"] and paths(new[0])[k2] == "work/c.ipynb" and paths(new[0])[k1] == "work/b.ipynb"
    assert soon[1] == ["sessions"] and later[1] == []
    assert paths(later[0]) == paths(new[0])
    # by hand: everything, the terminal too
    assert sorted(by_hand[1]) == ["sessions", "terminals"]
    assert [t.name for t in by_hand[0].terminals] == [terminal]


def test_a_refresh_by_hand_reaches_a_server_whose_read_was_under_way(monkeypatch):
    """R while a slow server's paced read runs on past the refresh: that server's next
    read asks everything too, so its renamed notebook shows then (not 10 s later)."""
    from nbtui.service import fleet as fleet_mod

    monkeypatch.setattr(fleet_mod, "PACED_MAX_AGE", 3600.0)
    fast, slow = _Server(), _Server()
    fast.session_path = slow.session_path = "a.ipynb"
    fleet = _read_on(fast=fast, slow=slow)

    def paths(snap: model.Snapshot) -> dict[str, str | None]:
        return {k.server: k.session.path if k.session else None for k in snap.kernels}

    async def reads():
        first = await fleet.snapshot(hold_back=0.3)
        slow.delay = 1.0
        fast.session_path = slow.session_path = "renamed.ipynb"
        await fleet.snapshot(hold_back=0.3)  # a timer's refresh: the slow read goes on past it
        running = fleet._reading.get("slow")
        assert running is not None
        fleet.read_whole_next()  # R
        by_hand = await fleet.snapshot(hold_back=0.3)
        await asyncio.wait_for(asyncio.shield(running), 20)
        slow.delay = 0.0
        after = await fleet.snapshot(hold_back=5.0)
        await fleet.aclose()
        return first, by_hand, after

    try:
        first, by_hand, after = asyncio.run(reads())
    finally:
        fast.close()
        slow.close()
    assert paths(first) == {"fast": "a.ipynb", "slow": "a.ipynb"}
    assert paths(by_hand)["fast"] == "renamed.ipynb"
    assert paths(after) == {"fast": "renamed.ipynb", "slow": "renamed.ipynb"}


def test_a_screen_keeps_no_session_of_a_kernel_its_server_does_not_list():
    """A lying server names 500 kernels it does not list in its sessions: a fleet read on
    and on keeps the one session of the kernel it lists, not the answer's other half-MB."""
    srv = _Server()
    srv.session_path, srv.others = "a.ipynb", 500
    fleet = _read_on(x=srv)

    async def read():
        snap = await fleet.snapshot(hold_back=5.0)
        await fleet.aclose()
        return snap

    try:
        snap = asyncio.run(read())
    finally:
        srv.close()
    assert [(k.kernel_id, k.session.path if k.session else None) for k in snap.kernels] == [("k1", "a.ipynb")]
    assert list(fleet._servers["x"].sessions or {}) == ["k1"]
