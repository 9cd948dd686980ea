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
