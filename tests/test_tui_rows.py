"""Pure pieces of the fleet screen: cells, paths, filter words, sort order, cell cache."""

import subprocess
import sys

from nbtui.model import Kernel, Session, Usage
from nbtui.tui import rows
from tests.conftest import ROOT


def k(kid, path=None, idle=None, cpu=None, state="idle", server="s"):
    return Kernel(server, kid, "python3", state, 0, None, idle,
                  Session("x", path, path.rsplit("/", 1)[-1], "notebook") if path else None,
                  Usage("local", cpu_percent=cpu) if cpu is not None else None)


def test_path_cell_keeps_the_file_name():
    assert rows.path_cell("a/b.ipynb", 20) == "a/b.ipynb"
    assert rows.path_cell("projects/deep/nested/train.ipynb", 20) == "project…/train.ipynb"
    assert rows.path_cell("projects/deep/nested/train.ipynb", 12) == "…train.ipynb"
    assert len(rows.path_cell("x/" + "é" * 50 + ".ipynb", 16)) == 16


def test_unknown_is_a_dash_and_sorts_last_both_ways():
    ks = [k("a", idle=None, cpu=None), k("b", idle=10, cpu=5.0), k("c", idle=99, cpu=1.0)]
    cols = rows.visible_columns(200)
    cells = rows.cells(ks[0], cols, 20, marked=True)
    assert cells[0] == rows.MARK + " "  # marked, not an orphan
    by = dict(zip([c.key for c in cols], cells))
    assert by["idle"] == by["cpu"] == by["mem"] == by["gpu"] == "—"
    assert [x.kernel_id for x in rows.order(ks, "idle", False)] == ["c", "b", "a"]
    assert [x.kernel_id for x in rows.order(ks, "idle", True)] == ["b", "c", "a"]
    assert [x.kernel_id for x in rows.order(ks, "cpu", False)] == ["b", "c", "a"]
    assert [x.kernel_id for x in rows.order(ks, None, False)] == ["a", "b", "c"]


def test_filter_words_all_match_any_field():
    x = k("80442938", "ana/train.ipynb", state="busy", server="gpu1")
    assert rows.matches(x, "gpu1 train")
    assert rows.matches(x, "BUSY 8044")
    assert not rows.matches(x, "gpu1 eda")
    assert rows.matches(k("z"), "no session")


def test_cell_cache_recomputes_only_what_changed():
    cols = rows.visible_columns(120)
    cache = rows.CellCache()
    a, b = k("a", "x.ipynb", idle=30, cpu=1.0), k("b", "y.ipynb", idle=30, cpu=1.0)
    layout, first = cache.rows([a, b], cols, 20)
    b2 = k("b", "y.ipynb", idle=90, cpu=50.0)
    a2 = k("a", "x.ipynb", idle=95, cpu=1.0)  # only the idle time moved
    _, second = cache.rows([a2, b2], cols, 20)
    idle = [c.key for c in cols].index("idle")
    cpu = [c.key for c in cols].index("cpu")
    assert first["s:a"][idle] == "30s" and second["s:a"][idle] == "1m" and second["s:a"][cpu] == "1%"
    assert second["s:b"][cpu] == "50%"
    assert rows.cells(b2, cols, 20, False) == second["s:b"]
    assert rows.with_mark(second["s:b"], cols)[0] == rows.MARK + " "
    assert layout == rows.layout_of(cols, 20)


def test_the_first_read_starts_before_textual_loads():
    code = "import sys, nbtui.commands.tui, nbtui.tui.runner; print('textual' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.stdout.strip() == "False", r.stderr
