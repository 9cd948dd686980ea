"""Pure pieces of the fleet table: the width rule, cells, paths, filter words, sort order,
the cell cache; rows of every kind (kernels, terminals, leftover processes)."""

import datetime as dt
import subprocess
import sys

import pytest

from nbtui.display import columns, table_rows as tr
from nbtui.core.model import Kernel, Process, Session, Terminal, Usage
from nbtui.tui import rows
from tests.conftest import ROOT


T0 = dt.datetime(2026, 11, 26, 10, 0, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(autouse=True)
def _clock(still_clock):
    still_clock(T0)  # idle times are as of when asked: the hand-built kernels' stay as named


def ago(seconds):
    return None if seconds is None else T0 - dt.timedelta(seconds=seconds)


def k(kid, path=None, idle=None, cpu=None, state="idle", server="s", user=None):
    return Kernel(server, kid, "python3", state, 0, ago(idle),
                  Session("x", path, path.rsplit("/", 1)[-1], "notebook") if path else None,
                  Usage("local", cpu_percent=cpu) if cpu is not None else None, user=user)


def r(*a, **kw):
    return tr.kernel_row(k(*a, **kw))


def test_path_cell_keeps_the_file_name():
    assert rows.path_cell("a/b.ipynb", 20) == "a/b.ipynb"
    assert rows.path_cell("projects/deep/nested/train.ipynb", 20) == "project…/train.ipynb"
    assert rows.path_cell("projects/deep/nested/train.ipynb", 12) == "…train.ipynb"
    assert rows.path_cell("work/vision/resnet-finetune.ipynb", 23) == "…/resnet-finetune.ipynb"
    assert len(rows.path_cell("x/" + "é" * 50 + ".ipynb", 16)) == 16
    assert columns.cut_name("hub/alice/gpu-large", 12) == "h…/gpu-large"


def test_the_width_rule():
    natural = {"server": len("hub/alice/gpu-large"), "state": columns.STATE_SHORT}  # what the TUI passes
    at80 = columns.fit(80, natural, reserve=2)
    keys = columns.keys_of(at80)
    assert keys == ("flags", "server", "kernel", "notebook", "state", "idle", "mem", "gpu")
    assert dict((c.key, w) for c, w in at80)["notebook"] >= columns.NOTEBOOK_AT_80
    assert columns.width_of(at80) <= 78
    at120 = columns.keys_of(columns.fit(120, natural, reserve=2))
    assert {"user", "pid", "gpu%"} <= set(at120)
    at200 = columns.fit(200, natural, reserve=2)
    assert columns.is_full(at200)
    widths = dict((c.key, w) for c, w in at200)
    assert widths["notebook"] <= 60 and widths["server"] <= 24  # nothing eats the rest
    assert widths["server"] == len("hub/alice/gpu-large")
    # ls knows its rows: a short notebook column stays short
    tight = dict((c.key, w) for c, w in columns.fit(200, {"notebook": 14, "server": 4, "reason": 0}))
    assert tight["notebook"] == 14 and tight["server"] == 8


def test_unknown_is_a_dash_and_sorts_last_both_ways():
    ks = [r("a", idle=None, cpu=None), r("b", idle=10, cpu=5.0), r("c", idle=99, cpu=1.0)]
    layout = rows.layout_for(200)
    cells = rows.cells(ks[0], layout, marked=True)
    assert cells[0] == rows.MARK + " "  # marked, not an orphan
    by = dict(zip([c.key for c, _ in layout], cells))
    assert by["idle"].strip() == by["cpu"].strip() == by["mem"].strip() == by["gpu"].strip() == "—"
    ids = lambda xs: [x.item.kernel_id for x in xs]  # noqa: E731
    assert ids(rows.order(ks, "idle", False)) == ["c", "b", "a"]
    assert ids(rows.order(ks, "idle", True)) == ["b", "c", "a"]
    assert ids(rows.order(ks, "cpu", False)) == ["b", "c", "a"]
    assert ids(rows.order(ks, None, False)) == ["a", "b", "c"]


def test_filter_words_all_match_any_field():
    x = r("80442938", "ana/train.ipynb", state="busy", server="gpu1", user="ana")
    assert rows.matches(x, "gpu1 train")
    assert rows.matches(x, "BUSY 8044")
    assert rows.matches(x, "ana kernel")
    assert not rows.matches(x, "gpu1 eda")
    assert rows.matches(r("z"), "no session")


def test_every_kind_is_a_row():
    p = Process(4711, "bob", "python train.py", 1.0, notebook="/home/bob/gpu.ipynb", server_pid=420,
                gpu_memory_bytes=2**30, orphan_reasons=("server-gone",))
    t = Terminal("gpu1", "3", ago(60.0), pid=512, user="ana", usage=Usage("local", memory_bytes=2**20))
    left, term = tr.process_row(p), tr.terminal_row(t)
    assert (left.kind, left.key, left.ident, left.user) == (tr.LEFTOVER, "pid:4711", "4711", "bob")
    assert tr.text(left, "server") == "(gone)" and tr.text(left, "reason") == "server-gone"
    assert (term.kind, term.key, term.ident, term.pid, term.mem) == (tr.TERMINAL, "terminal:gpu1/3", "term:3",
                                                                     512, 2**20)
    assert tr.order([term, left], "gpu", False)[0] is left
    assert tr.text(tr.process_row(Process(9, None, "x\x1b[2J", 1.0)), "notebook") == "x\\x1b[2J"


def test_cell_cache_recomputes_only_what_changed():
    layout = rows.layout_for(160)
    cache = rows.CellCache()
    a, b = r("a", "x.ipynb", idle=30, cpu=1.0), r("b", "y.ipynb", idle=30, cpu=1.0)
    key, first = cache.rows([a, b], layout)
    b2 = r("b", "y.ipynb", idle=90, cpu=50.0)
    a2 = r("a", "x.ipynb", idle=95, cpu=1.0)  # only the idle time moved
    _, second = cache.rows([a2, b2], layout)
    idle = [c.key for c, _ in layout].index("idle")
    cpu = [c.key for c, _ in layout].index("cpu")
    assert first["s:a"][idle].strip() == "30s" and second["s:a"][idle].strip() == "1m"
    assert second["s:a"][cpu].strip() == "1%" and second["s:b"][cpu].strip() == "50%"
    assert rows.cells(b2, layout, False) == second["s:b"]
    assert rows.with_mark(second["s:b"], layout)[0] == rows.MARK + " "
    assert key == rows.layout_of(layout)


def test_the_first_read_starts_before_textual_loads():
    code = "import sys, nbtui.cli.commands.tui, nbtui.tui.runner; print('textual' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.stdout.strip() == "False", r.stderr


def test_the_fleet_screen_starts_without_the_fleet_httpx_s_command_line_or_the_actions():
    # On the way to the first paint: neither the fleet nor httpx nor psutil is loaded (the
    # first read runs in a child, the fleet opens once the screen is drawn), nor the actions
    # (the hub strip used to pull them in); httpx as nbtui loads it never brings its
    # command-line client (click, pygments, rich.progress).
    pytest.importorskip("click", reason="httpx loads its command line only where click is installed")
    code = ("import sys, nbtui.cli, nbtui.cli.commands.tui, nbtui.service.forked_read, nbtui.tui.runner, nbtui.tui.app, "
            "nbtui.tui.fleet_header, nbtui.tui.hub\n"
            "print(sorted(m for m in ('nbtui.service.fleet', 'httpx', 'psutil', 'nbtui.service.actions') if m in sys.modules))\n"
            "import nbtui.jupyter, httpx; assert callable(httpx.AsyncClient)\n"
            "print(sorted(m for m in ('click', 'pygments', 'rich.progress') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["[]", "[]"]


def test_an_unchanged_row_s_idle_and_state_cells_still_move_with_the_clock(still_clock):
    """A kept row (its kernel unchanged, the same object) is not compared again, yet its idle
    cell turns from `59s` to `1m` and a starting kernel nobody used turns `never used` as the
    clock passes the minute."""
    layout = rows.layout_for(200)
    keys = [c.key for c, _ in layout]
    cache = rows.CellCache()
    used, never = tr.kernel_row(k("a", "x.ipynb", idle=59)), tr.kernel_row(k("b", "y.ipynb", idle=59, state="starting"))
    _, first = cache.rows([used, never], layout)
    assert first["s:a"][keys.index("idle")].strip() == "59s"
    assert "never used" not in first["s:b"][keys.index("state")]
    still_clock(T0 + dt.timedelta(seconds=0.5))  # within the same second: the same cells
    _, same = cache.rows([used, never], layout)
    assert same["s:a"] is first["s:a"]
    still_clock(T0 + dt.timedelta(seconds=2))
    _, later = cache.rows([used, never], layout)
    assert later["s:a"][keys.index("idle")].strip() == "1m"
    assert "never used" in later["s:b"][keys.index("state")]


def test_the_cell_cache_shows_what_cells_made_afresh_show_through_any_run_of_changes(still_clock):
    """Whatever changes between reads (a state, a usage, a path, reasons, a user, a server's
    rows coming and going, a kernel listed twice, the clock, the width), the cached cells are
    the cells made from scratch: the cache makes again only the cells a change reaches, and
    the idle cells whose time has come."""
    import random

    rng = random.Random(11)
    at = T0

    def kernel(kid):
        busy = rng.random() < 0.2
        usage = None if rng.random() < 0.3 else Usage(
            "local", pid=rng.choice([None, 4711]), cpu_percent=rng.choice([None, 0.0, 3.0, 97.5]),
            memory_bytes=rng.choice([None, 2**20, 3 * 2**30]), gpu_memory_bytes=rng.choice([None, 0, 2**33]),
            gpu_percent=rng.choice([None, 0.0, 40.0]))
        path = rng.choice([None, "a/x.ipynb", "deep/er/still/y.ipynb"])
        return Kernel(rng.choice(["s", "hub/alice"]) if kid == "k0" else "s", kid, rng.choice(["python3", "ir"]),
                      "busy" if busy else rng.choice(["idle", "starting"]), rng.choice([None, 0, 2]),
                      ago(rng.choice([None, 5, 59, 3590, 90000])), Session("x", path, "y", "notebook") if path else None,
                      usage, orphan_reasons=rng.choice([(), ("no-session",), ("no-session", "disconnected-idle")]),
                      user=rng.choice([None, "alice"]))

    items = {f"k{i}": tr.kernel_row(kernel(f"k{i}")) for i in range(12)}
    cache = rows.CellCache()
    width = 160
    for step in range(400):
        for kid in rng.sample(sorted(items), rng.randint(0, 3)):
            items[kid] = tr.kernel_row(kernel(kid))
        if rng.random() < 0.1:
            width = rng.choice([80, 120, 160, 200])
        if rng.random() < 0.5:
            at += dt.timedelta(seconds=rng.choice([0.3, 1, 7, 61, 3600]))
            still_clock(at)
        shown = [v for kid, v in sorted(items.items()) if rng.random() < 0.9]
        if rng.random() < 0.5:  # a leftover process, made again at every read (its server gone or not)
            shown.append(tr.process_row(Process(4711, "bob", "python train.py", 1.0, server_pid=420,
                                                cpu_percent=rng.choice([None, 5.0]),
                                                orphan_reasons=rng.choice([("server-gone",), ("kernel-gone",)])),
                                        server=rng.choice(["", "s"])))
        if shown and rng.random() < 0.05:
            shown.append(tr.kernel_row(kernel(shown[0].item.kernel_id)))  # a liar lists one twice
        layout = rows.layout_for(width)
        _, got = cache.rows(shown, layout)
        want = {r.key: rows.cells(r, layout, False) for r in shown}
        assert got == want, step
