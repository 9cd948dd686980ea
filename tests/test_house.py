"""The house's shape: the seams, the one idle rule and the one readonly gate."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from dataclasses import replace

import pytest

from nbtui.service.actions.cull import CullPolicy, cull_selects_kernel
from nbtui.service.actions.gate import Readonly, require_writable
from nbtui.service.actions.kernels import interrupt_kernel
from nbtui.service.actions.kill import execute

from nbtui.core import orphans
from nbtui.core.model import Kernel, Process, kernel_key, split_kernel_key
from tests.conftest import ROOT


T0 = dt.datetime(2026, 11, 26, 10, 0, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(autouse=True)
def _clock(still_clock):
    still_clock(T0)  # idle times are as of when asked: the hand-built kernels' stay as named


def test_the_server_extension_imports_no_client_side():
    """The extension loads inside every jupyter_server: it must not pull in the fleet,
    httpx, config, secrets or discovery."""
    code = ("import sys, nbtui.serverext, nbtui.host.local, nbtui.host.wire; "
            "print(sorted(m for m in ('httpx', 'nbtui.service.fleet', 'nbtui.files.config', 'nbtui.files.secrets', "
            "'nbtui.jupyter.discovery', 'textual') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def _kernel(idle, state="idle", connections=0):
    return Kernel(server="s", kernel_id="k", kernel_name="python3", state=state, connections=connections,
                  last_activity=None if idle is None else T0 - dt.timedelta(seconds=idle))


@pytest.mark.parametrize("idle, state, expected", [
    (None, "idle", False), (59.0, "idle", False), (60.0, "idle", True), (600.0, "busy", False),
    (600.0, "starting", True),
])
def test_one_idle_rule(idle, state, expected):
    assert orphans.is_idle(idle, state, 60.0) is expected
    assert orphans.kernel_is_idle(_kernel(idle, state), 60.0) is expected
    # orphans and cull count by it
    assert (orphans.DISCONNECTED_IDLE in orphans.kernel_reasons(_kernel(idle, state), idle_threshold=60.0)) is expected
    assert cull_selects_kernel(_kernel(idle, state), CullPolicy(idle=60.0)) is expected


def test_ls_summary_counts_idle_by_the_setting():
    from nbtui.core.model import Snapshot
    from nbtui.display.report import summary_lines
    ks = [_kernel(120.0), _kernel(30.0), _kernel(7200.0, "busy")]
    snap = Snapshot(generated_at=None, servers=(), kernels=tuple(ks), idle_threshold=60.0)
    assert summary_lines(snap, ks)[0].startswith("3 kernels, 1 idle over 1m, ")


def test_ls_and_the_tui_summary_count_alike():
    """One counting function (nbtui.core.summary) behind ls's summary line and the TUI's bar."""
    from types import SimpleNamespace

    from nbtui.core.model import ServerInfo, Snapshot, Usage
    from nbtui.display.report import summary_lines
    from nbtui.tui.fleet_header import summary_text
    ks = [_kernel(120.0), _kernel(30.0), _kernel(7200.0, "busy"),
          replace(_kernel(600.0), kernel_id="g", usage=Usage("local", gpu_memory_bytes=2 << 30), orphan_reasons=("x",))]
    left = Process(pid=9, user=None, cmdline="x", create_time=1.0, gpu_memory_bytes=1 << 30, orphan_reasons=("server-gone",))
    snap = Snapshot(generated_at=None, servers=(ServerInfo("s", "http://s/", "config"),
                                                ServerInfo("t", "http://t/", "config", status="timeout")),
                    kernels=tuple(ks), processes=(left,), idle_threshold=60.0)
    assert summary_lines(snap, ks)[0] == "4 kernels, 2 idle over 1m, 1 orphaned; 1/2 servers read"
    bar = summary_text(snap, 200, theme=SimpleNamespace(error="red"), readonly=False, shown=4, total=4,
                       filtered=False, orphans_only=False, marked=0, frees="").plain
    assert bar == ("nbtui  servers 1/2 · 4 kernels · 1 busy · 2 idle >1m · idle GPU 2.0G · "
                   "1 leftover (1.0G GPU)"), bar


def test_process_reasons_come_from_host_facts():
    p = Process(pid=7, user=None, cmdline="x", create_time=1.0)
    judged = orphans.judge_processes([p], {7: orphans.ProcessFacts(server_alive=False, kernel_alive=None)})
    assert judged[0].orphan_reasons == ("server-gone",)
    assert orphans.judge_processes([p], {})[0].orphan_reasons == ()


def test_kernel_key_round_trip():
    assert split_kernel_key(kernel_key("hub/alice", "8044-ab")) == ("hub/alice", "8044-ab")
    assert _kernel(1.0).key == kernel_key("s", "k")


class _Flagged:
    readonly = True


async def test_readonly_is_one_gate_in_actions():
    with pytest.raises(Readonly) as e:
        await interrupt_kernel(_Flagged(), _kernel(1.0))  # refused before any request
    assert e.value.exit_code == 2 and e.value.short == "readonly: interrupt is off"
    assert str(e.value) == "--readonly: interrupt is off"
    with pytest.raises(Readonly):
        await execute(_Flagged(), [], action="cull")
    require_writable(_Flagged(), "kill", dry_run=True)  # a dry run still plans
    with pytest.raises(Readonly, match="dry-run still shows the plan"):
        require_writable(_Flagged(), "kill", plan=True)
