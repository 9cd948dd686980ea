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

    r = run_nbtui("ls", "--json", "--no-discover")
    assert r.returncode == 0, r.stderr
    reasons = {k["kernel_id"]: k["orphan_reasons"] for k in json.loads(r.stdout)["kernels"]}
    missing = {path for path, kid in ids.items() if "notebook-missing" in reasons[kid]}
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

    server = jupyter_factory("nbp", extra_args=("--ServerApp.log_level=DEBUG",))
    paths = ["ana/p1/a.ipynb", "ana/p2/b.ipynb", "ana/p3/c.ipynb"]
    for p in paths:
        server.write_notebook(p)
    now = [0.0]
    checks = NotebookChecks(ttl=60, clock=lambda: now[0])
    client = ServerClient("nbp", server.url, server.token)

    async def round_() -> list[str]:
        before = len(_contents_requests(server))
        await checks.refresh("nbp", paths, lambda: client, limit=asyncio.Semaphore(4), timeout=10)
        now[0] += 61
        return sorted(_contents_requests(server)[before:])

    try:
        first = await round_()
        assert first == [f"/api/contents/{p}?content=0" for p in paths]  # a one-shot read asks what it did
        second = await round_()
        assert second == sorted(["/api/contents/ana?content=1", *first])  # the stamps are taken
        assert await round_() == ["/api/contents/ana?content=1"]  # nothing moved: one request
        assert [checks.get("nbp", p) for p in paths] == [True, True, True]

        (server.root_dir / "ana" / "p2" / "b.ipynb").unlink()
        assert await round_() == ["/api/contents/ana/p2/b.ipynb?content=0", "/api/contents/ana?content=1"]
        assert [checks.get("nbp", p) for p in paths] == [True, False, True]
        # a folder with a missing file is asked each time (a file made there may be the one)
        assert await round_() == ["/api/contents/ana/p2/b.ipynb?content=0", "/api/contents/ana?content=1"]
    finally:
        await client.aclose()
