"""notebook-missing is learnt one folder at a time (nbtui.jupyter.notebooks): a server is
asked for each folder of its sessions once, not for each session (a folder of one session's
file: that file alone), and a file its listing leaves out is asked for on its own before it is
ever called missing."""

from __future__ import annotations

import json
import re
import shutil

from tests.conftest import add_server, run_nbtui
from tests.jupyter import JupyterServer


def _contents_requests(server: JupyterServer) -> list[str]:
    """The contents URLs the server logged a GET of (its DEBUG access log: one line a
    request, with its time; a 404 also gets a second line, with its reason, not counted)."""
    return re.findall(r"\d{3} GET (/api/contents\S*) \([^)]*\) [\d.]+ms", server.log_path.read_text(errors="replace"))


def test_one_listing_per_folder_and_missing_only_when_the_file_is_not_there(jupyter_factory):
    # The listing of "work/a b" leaves out hidden-*.ipynb (the server's hide_globs), though the
    # server still serves that file: it exists, and nbtui must not call it missing.
    server = jupyter_factory("nb", extra_args=("--ServerApp.log_level=DEBUG",
                                               "--ContentsManager.hide_globs=hidden-*"))
    folder = "work/a b"
    for name in ("keep1.ipynb", "keep2.ipynb", "lost.ipynb", "hidden-1.ipynb"):
        server.write_notebook(f"{folder}/{name}")
    server.write_notebook("gone/n.ipynb")
    ids = {path: server.create_session(path)["kernel"]["id"]
           for path in (f"{folder}/keep1.ipynb", f"{folder}/keep2.ipynb", f"{folder}/lost.ipynb",
                        f"{folder}/hidden-1.ipynb", "gone/n.ipynb")}
    (server.root_dir / folder / "lost.ipynb").unlink()
    shutil.rmtree(server.root_dir / "gone")
    add_server("nb", server)
    before = len(_contents_requests(server))

    # A plain listing does not wait for notebook checks: it asks none and says so.
    plain = run_nbtui("ls", "--no-discover")
    assert plain.returncode == 0, plain.stderr
    assert "notebook-missing: not checked" in plain.stdout and "--orphans" in plain.stdout
    r = run_nbtui("ls", "--json", "--no-discover")
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    assert listed["notebooks_checked"] is False
    assert not any("notebook-missing" in k["orphan_reasons"] for k in listed["kernels"])
    assert _contents_requests(server)[before:] == []

    r = run_nbtui("ls", "--json", "--orphans", "--no-discover")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["notebooks_checked"] is True
    reasons = {k["kernel_id"]: k["orphan_reasons"] for k in json.loads(r.stdout)["kernels"]}
    missing = {path for path, kid in ids.items() if "notebook-missing" in reasons.get(kid, [])}
    assert missing == {f"{folder}/lost.ipynb", "gone/n.ipynb"}

    asked = _contents_requests(server)[before:]
    listings = [u for u in asked if "content=1" in u]
    assert listings == ["/api/contents/work/a%20b?content=1"]  # "gone" holds one session's file: asked alone
    one_by_one = sorted(u for u in asked if "content=0" in u)  # and what the listing did not show
    assert one_by_one == ["/api/contents/gone/n.ipynb?content=0",
                          "/api/contents/work/a%20b/hidden-1.ipynb?content=0",
                          "/api/contents/work/a%20b/lost.ipynb?content=0"]


async def test_a_recheck_looks_at_project_folders_through_their_parent_and_asks_only_the_one_that_moved(
        jupyter_factory):
    # A user's three project folders, one notebook each. The first re-check lists their parent
    # once (and asks each file as before); the next asks nothing but that listing; once a file is
    # removed, its folder's stamp moves and that folder alone is asked again, and says missing.
    import asyncio

    from nbtui.jupyter.notebooks import NotebookChecks
    from nbtui.jupyter.rest import ServerClient

    server = jupyter_factory("nbp")
    paths = ["ana/p1/a.ipynb", "ana/p2/b.ipynb", "ana/p3/c.ipynb"]
    for p in paths:
        server.write_notebook(p)
    now = [0.0]
    checks = NotebookChecks(ttl=60, clock=lambda: now[0])
    client = ServerClient("nbp", server.url, server.token)
    asked: list[str] = []

    class Recorded:  # the real client, each request it is asked for written down
        async def request(self, method: str, url: str, **kw):
            asked.append(url)
            return await client.request(method, url, **kw)

        async def contents_exists(self, path: str) -> bool:
            asked.append(f"{path} exists?")
            return await client.contents_exists(path)

    async def round_(checks: NotebookChecks = checks, stamp_first: bool = False) -> list[str]:
        del asked[:]
        await checks.refresh("nbp", paths, lambda: Recorded(), limit=asyncio.Semaphore(4), timeout=10,
                             stamp_first=stamp_first)
        now[0] += 61
        return sorted(asked)

    try:
        first = await round_()
        assert first == [f"{p} exists?" for p in paths]  # a one-shot read asks what it did
        second = await round_()
        assert second == sorted(["api/contents/ana?content=1", *first])  # the stamps are taken
        assert await round_() == ["api/contents/ana?content=1"]  # nothing moved: one request

        # A fleet that reads again (the TUI) lists the parent at the first check too: its first
        # re-check is then that listing alone, not every folder again.
        again = NotebookChecks(ttl=60, clock=lambda: now[0])
        assert await round_(again, True) == sorted(["api/contents/ana?content=1", *first])
        assert await round_(again, True) == ["api/contents/ana?content=1"]
        assert [again.get("nbp", p) for p in paths] == [True, True, True]
        assert [checks.get("nbp", p) for p in paths] == [True, True, True]

        (server.root_dir / "ana" / "p2" / "b.ipynb").unlink()
        assert await round_() == ["ana/p2/b.ipynb exists?", "api/contents/ana?content=1"]
        assert [checks.get("nbp", p) for p in paths] == [True, False, True]
        # a folder with a missing file is asked each time (a file made there may be the one)
        assert await round_() == ["ana/p2/b.ipynb exists?", "api/contents/ana?content=1"]
    finally:
        await client.aclose()


async def test_re_checks_spread_over_refreshes_the_longest_unchecked_first():
    # 60 one-notebook folders checked together fall due together: each later call re-checks
    # at most RECHECKS_PER_CALL of them, so no refresh carries the whole minute's requests.
    import asyncio

    from nbtui.jupyter.notebooks import RECHECKS_PER_CALL, NotebookChecks

    asked: list[str] = []

    class Server:  # answers every file as there; its root lists no folder, so none is stamped
        async def contents_exists(self, path: str) -> bool:
            asked.append(path)
            return True

        async def request(self, method: str, url: str) -> dict:
            return {"type": "directory", "content": []}

    paths = [f"u{i}/nb.ipynb" for i in range(60)]
    now = [0.0]
    checks = NotebookChecks(ttl=60, clock=lambda: now[0])

    async def call() -> list[str]:
        del asked[:]
        await checks.refresh("s", paths, lambda: Server(), limit=asyncio.Semaphore(4), timeout=5)  # type: ignore
        return sorted(asked)

    assert len(await call()) == 60  # a first check asks everything at once
    now[0] = 61
    first = await call()
    now[0] = 62
    second = await call()
    now[0] = 63
    third = await call()
    assert len(first) == len(second) == RECHECKS_PER_CALL and len(third) == 60 - 2 * RECHECKS_PER_CALL
    assert not set(first) & set(second) and set(first) | set(second) | set(third) == set(paths)
    now[0] = 64
    assert await call() == []  # all answered within the minute
    now[0] = 61 + 60
    assert await call() == first  # and due again in the order they were asked


async def test_a_session_that_comes_between_refreshes_has_its_file_asked_at_once():
    # A refresh with the same sessions as the last is grouped as before; one more session
    # (in a folder checked already, and in a new one) is asked at the next call, not a minute on.
    import asyncio

    from nbtui.jupyter.notebooks import NotebookChecks

    asked: list[str] = []

    class Server:
        async def contents_exists(self, path: str) -> bool:
            asked.append(path)
            return path != "p/gone.ipynb"

        async def request(self, method: str, url: str) -> dict:
            asked.append(url)
            return {"type": "directory", "content": [{"name": "a.ipynb"}, {"name": "b.ipynb"}]}

    now = [0.0]
    checks = NotebookChecks(ttl=60, clock=lambda: now[0])

    async def call(paths: list[str]) -> list[str]:
        del asked[:]
        await checks.refresh("s", paths, lambda: Server(), limit=asyncio.Semaphore(4), timeout=5)  # type: ignore
        return sorted(asked)

    first = ["p/a.ipynb", "q/x.ipynb"]
    assert await call(first) == ["p/a.ipynb", "q/x.ipynb"]
    now[0] = 1
    assert await call(list(first)) == []  # the same sessions: nothing due
    now[0] = 2
    assert await call([*first, "p/gone.ipynb", "r/y.ipynb"]) == ["api/contents/p?content=1", "p/gone.ipynb",
                                                                 "r/y.ipynb"]
    assert checks.get("s", "p/gone.ipynb") is False and checks.get("s", "p/a.ipynb") is True
    assert checks.get("s", "r/y.ipynb") is True


async def test_what_is_kept_follows_the_sessions_and_the_fleet():
    # A screen left open for weeks on a busy server: each session's file is learnt, and what
    # the sessions no longer name is forgotten as they change (a closed notebook, a folder no
    # one works in any more); a server that leaves the fleet takes its answers with it.
    import asyncio

    from nbtui.jupyter.notebooks import NotebookChecks

    class Server:  # every file there; each folder lists two project folders (stamped) and two notebooks
        async def contents_exists(self, path: str) -> bool:
            return True

        async def request(self, method: str, url: str) -> dict:
            folders = [{"name": n, "type": "directory", "last_modified": "t"} for n in ("x", "y")]
            return {"type": "directory", "last_modified": "t",
                    "content": [*folders, {"name": "a.ipynb"}, {"name": "b.ipynb"}]}

    checks = NotebookChecks(ttl=60, clock=lambda: 0.0)

    async def call(server: str, paths: list[str]) -> None:
        await checks.refresh(server, paths, lambda: Server(), limit=asyncio.Semaphore(4), timeout=5,  # type: ignore
                             stamp_first=True)

    await call("s", ["p/a.ipynb", "p/b.ipynb", "q/x.ipynb"])
    await call("t", ["p/a.ipynb"])
    assert [checks.get("s", p) for p in ("p/a.ipynb", "p/b.ipynb", "q/x.ipynb")] == [True, True, True]
    await call("s", ["q/x.ipynb"])  # the notebooks in p closed
    assert [checks.get("s", p) for p in ("p/a.ipynb", "p/b.ipynb", "q/x.ipynb")] == [None, None, True]
    for day in range(500):  # sessions come and go, each day in project folders of their own
        await call("s", [f"day{day}/x/a.ipynb", f"day{day}/y/b.ipynb"])
    assert checks.get("s", "day0/x/a.ipynb") is None and checks.get("s", "day499/y/b.ipynb") is True
    kept = checks._servers["s"]  # what the last day's two sessions need: their files and their folders' stamps
    assert len(kept.files) == 2 and len(kept.stamps) == 2 and len(kept.folders) == 0, \
        (len(kept.files), len(kept.stamps), len(kept.folders))

    checks.forget("t")  # "t" left the fleet
    assert checks.get("t", "p/a.ipynb") is None and list(checks._servers) == ["s"]
    checks.forget("s")  # its sessions all closed
    assert checks.get("s", "day499/y/b.ipynb") is None and not checks._servers


async def test_a_root_notebook_named_with_a_leading_slash_is_checked_as_its_own_file():
    # A session may name a notebook in the server's root "/gone.ipynb" (the API takes it): its
    # file is asked for as "gone.ipynb", and the answer is the session's (missing), not unknown.
    import asyncio

    from nbtui.jupyter.notebooks import NotebookChecks

    asked: list[str] = []

    class Server:
        async def contents_exists(self, path: str) -> bool:
            asked.append(path)
            return path != "gone.ipynb"

        async def request(self, method: str, url: str) -> dict:
            return {"type": "directory", "content": []}

    checks = NotebookChecks(ttl=60, clock=lambda: 0.0)
    paths = ["/gone.ipynb", "/here.ipynb"]
    await checks.refresh("s", paths, lambda: Server(), limit=asyncio.Semaphore(4), timeout=5)  # type: ignore
    assert sorted(asked) == ["gone.ipynb", "here.ipynb"]
    assert [checks.get("s", p) for p in paths] == [False, True]


def test_a_refresh_with_nothing_due_looks_at_no_folder_until_one_falls_due(jupyter, monkeypatch):
    """A screen refreshes every 2 s; its sessions' folders fall due once a minute. A call
    with the same paths before the first is due looks at none of them (4,000 folders over a
    fleet were looked at every refresh); once one is due, it is checked."""
    import asyncio

    from nbtui.jupyter.notebooks import NotebookChecks
    from nbtui.jupyter.rest import ServerClient

    for path in ("p/a.ipynb", "p/b.ipynb", "q/c.ipynb", "q/d.ipynb"):
        jupyter.write_notebook(path)
    now = [1000.0]
    checks = NotebookChecks(ttl=60, clock=lambda: now[0])
    looked: list[str] = []
    real = NotebookChecks._due_at

    def counting(self, st, folder, names):
        looked.append(folder)
        return real(self, st, folder, names)

    monkeypatch.setattr(NotebookChecks, "_due_at", counting)
    paths = ["p/a.ipynb", "p/b.ipynb", "q/c.ipynb"]

    async def calls():
        client = ServerClient("srv", jupyter.url, token=jupyter.token)
        limit, out = asyncio.Semaphore(4), []
        try:
            for at in (1000.0, 1030.0, 1059.0, 1061.0, 1062.0, 1063.0, 1064.0):
                now[0] = at
                if at == 1064.0:  # a new session's file: its folder is due at once
                    paths.append("q/d.ipynb")
                del looked[:]
                checked = await checks.refresh("srv", list(paths), lambda: client, limit=limit, timeout=10)
                out.append((at, checked, sorted(looked)))
        finally:
            await client.aclose()
        return out

    out = asyncio.run(calls())
    assert out[0] == (1000.0, 2, ["p", "q"])  # the first call checks both folders
    assert out[1] == (1030.0, 0, ["p", "q"])  # (after a check, the next call looks once more)
    assert out[2] == (1059.0, 0, [])  # none due: none looked at
    assert out[3] == (1061.0, 2, ["p", "q"])  # due: checked again
    assert out[4] == (1062.0, 0, ["p", "q"]) and out[5] == (1063.0, 0, [])
    assert out[6] == (1064.0, 1, ["p", "q"])
    assert [checks.get("srv", p) for p in paths] == [True, True, True, True]


class _Recording:
    """A server that has every file asked for and answers each listing with ``listing(url)``;
    each request written down."""

    def __init__(self, listing) -> None:
        self.listing = listing
        self.asked: list[str] = []

    async def contents_exists(self, path: str) -> bool:
        self.asked.append(path)
        return True

    async def request(self, method: str, url: str) -> dict:
        self.asked.append(url)
        return self.listing(url)


def _calls(checks, server: _Recording, now: list[float]):
    """``at(t, paths)``: a TUI's refresh at time ``t``; what it asked, sorted."""
    import asyncio

    async def at(t: float, paths: list[str]) -> list[str]:
        now[0] = t
        del server.asked[:]
        await checks.refresh("s", paths, lambda: server, limit=asyncio.Semaphore(4), timeout=5,
                             stamp_first=True)
        return sorted(server.asked)

    return at


async def test_a_quiet_folder_is_re_checked_less_often_until_it_moves_or_r_is_pressed():
    # Two project folders under one parent, stamped by its listing. Each re-check that finds
    # nothing moved doubles the wait (1, 2, then 4 minutes at most); a folder whose stamp moves
    # is asked again and waits a minute; a refresh by hand (hurry) brings every wait back.
    from nbtui.jupyter.notebooks import QUIET_MAX, NotebookChecks

    assert QUIET_MAX == 4
    stamps = {"p1": "t0", "p2": "t0"}
    server = _Recording(lambda url: {"type": "directory", "content": [
        {"type": "directory", "name": n, "last_modified": m} for n, m in stamps.items()]})
    paths = ["u/p1/a.ipynb", "u/p2/b.ipynb"]
    now = [0.0]
    checks = NotebookChecks(ttl=60, clock=lambda: now[0])
    call = _calls(checks, server, now)

    async def at(t: float) -> list[str]:
        return await call(t, paths)

    parent = "api/contents/u?content=1"
    assert await at(0) == [parent, *paths]
    assert await at(61) == [parent]  # nothing moved: kept, next in 2 minutes
    assert await at(122) == []
    assert await at(181) == [parent]  # kept again: next in 4 minutes, and no longer after that
    assert await at(420) == []
    assert await at(421) == [parent]
    assert await at(660) == []
    stamps["p2"] = "t1"  # a file made, removed or renamed in p2
    assert await at(661) == [parent, "u/p2/b.ipynb"]
    assert await at(721) == [parent]  # p2 a minute later (p1 comes along with the listing)
    assert await at(782) == []  # p2 waits 2 minutes now
    checks.hurry()
    assert await at(782) == [parent]  # R: a minute since the last check is enough again
    assert [checks.get("s", p) for p in paths] == [True, True]


async def test_a_folder_left_with_one_session_is_not_listed_again_at_every_refresh():
    # p1 held two sessions' notebooks (answered by its listing); one session closes. Its other
    # file is then asked for on its own when due, not at every refresh through the parent.
    from nbtui.jupyter.notebooks import NotebookChecks

    def listing(url: str) -> dict:
        if url.startswith("api/contents/u/p1?"):
            return {"type": "directory", "last_modified": "t0",
                    "content": [{"type": "notebook", "name": n} for n in ("a.ipynb", "b.ipynb")]}
        return {"type": "directory", "content": [{"type": "directory", "name": n, "last_modified": "t0"}
                                                 for n in ("p1", "p2")]}

    now = [0.0]
    checks = NotebookChecks(ttl=60, clock=lambda: now[0])
    at = _calls(checks, _Recording(listing), now)
    both = ["u/p1/a.ipynb", "u/p1/b.ipynb", "u/p2/c.ipynb"]
    assert await at(0, both) == ["api/contents/u/p1?content=1", "api/contents/u?content=1", "u/p2/c.ipynb"]
    one = ["u/p1/a.ipynb", "u/p2/c.ipynb"]
    await at(2, one)
    assert [await at(t, one) for t in (4, 6, 8)] == [[], [], []]
    assert [checks.get("s", p) for p in one] == [True, True]
