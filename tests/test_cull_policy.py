"""Which kernels and processes a cull policy selects, and where the policy comes from: plain rules."""

from __future__ import annotations

import argparse
import datetime as dt

import pytest

from nbtui.service.actions.cull import CullPolicy, cull_selects_kernel, cull_selects_process
from nbtui.cli.commands.cull import policy_from
from nbtui.files.config import Settings
from nbtui.core.errors import UsageError
from nbtui.core.model import Kernel, Process, Session, Usage
GPU = Usage(source="local", gpu_memory_bytes=4 * 1024 ** 3)
NO_GPU = Usage(source="local", gpu_memory_bytes=None)  # unknown is never "holds GPU memory"


T0 = dt.datetime(2026, 11, 26, tzinfo=dt.timezone.utc)


@pytest.fixture(autouse=True)
def _clock(still_clock):
    still_clock(T0)  # idle times are as of when asked: the hand-built kernels' stay as named


def k(idle=7200.0, conns=0, state="idle", usage=None, reasons=(), server="gpu1"):
    return Kernel(server=server, kernel_id="abc", kernel_name="python3", state=state, connections=conns,
                  last_activity=None if idle is None else T0 - dt.timedelta(seconds=idle),
                  session=Session("s", "a.ipynb", "a.ipynb", "notebook"), usage=usage, orphan_reasons=reasons)


@pytest.mark.parametrize("kernel, policy, chosen", [
    (k(), CullPolicy(idle=3600), True),
    (k(idle=60), CullPolicy(idle=3600), False),
    (k(conns=1), CullPolicy(idle=3600), False),  # someone is connected
    (k(state="busy"), CullPolicy(idle=0), False),
    (k(idle=None), CullPolicy(idle=0), False),  # unknown idle time selects nothing
    (k(conns=None), CullPolicy(idle=0), False),
    (k(idle=60, reasons=("no-session",)), CullPolicy(orphans=True), True),
    (k(), CullPolicy(orphans=True), False),  # idle but no reason and no idle rule
    (k(usage=GPU), CullPolicy(idle=0, gpu_only=True), True),
    (k(usage=NO_GPU), CullPolicy(idle=0, gpu_only=True), False),
    (k(), CullPolicy(idle=0, gpu_only=True), False),
    (k(server="cpu1"), CullPolicy(idle=0, servers=("gpu1",)), False),
    (k(server="gpu1"), CullPolicy(idle=0, servers=("gpu1",)), True),
    (k(), CullPolicy(), False),
])
def test_cull_selects_kernel(kernel, policy, chosen):
    assert cull_selects_kernel(kernel, policy) is chosen


LEFT = Process(pid=9, user="ana", cmdline="python w.py", create_time=1.0, gpu_memory_bytes=2 ** 30,
               orphan_reasons=("server-gone",))
UNSURE = Process(pid=9, user="ana", cmdline="python w.py", create_time=1.0)


@pytest.mark.parametrize("proc, policy, chosen", [
    (LEFT, CullPolicy(orphans=True), True),
    (LEFT, CullPolicy(idle=0), False),  # processes go only with --orphans
    (UNSURE, CullPolicy(orphans=True), False),  # no reason: nobody can say it is left over
    (LEFT, CullPolicy(orphans=True, gpu_only=True), True),
    (Process(pid=9, user="ana", cmdline="x", create_time=1.0, orphan_reasons=("kernel-gone",)),
     CullPolicy(orphans=True, gpu_only=True), False),
    (LEFT, CullPolicy(orphans=True, servers=("gpu1",)), False),  # a process has no server to match
])
def test_cull_selects_process(proc, policy, chosen):
    assert cull_selects_process(proc, policy) is chosen


def args(**kw):
    base = dict(idle=None, orphans=False, gpu_only=False, server=[])
    base.update(kw)
    return argparse.Namespace(**base)


@pytest.mark.parametrize("given, settings, expected", [
    (args(), Settings(), CullPolicy()),
    (args(), Settings(cull_idle=7200.0, cull_orphans=True), CullPolicy(idle=7200.0, orphans=True)),
    (args(idle="30m"), Settings(cull_idle=7200.0, cull_orphans=True), CullPolicy(idle=1800.0)),
    (args(orphans=True), Settings(cull_idle=7200.0), CullPolicy(orphans=True)),
    (args(idle="1d", gpu_only=True, server=["a"]), Settings(), CullPolicy(idle=86400.0, gpu_only=True, servers=("a",))),
    (args(), Settings(cull_idle=60.0, cull_gpu_only=True), CullPolicy(idle=60.0, gpu_only=True)),
])
def test_policy_from_flags_then_config(given, settings, expected):
    assert policy_from(given, settings) == expected


def test_a_malformed_duration_names_the_accepted_forms():
    with pytest.raises(UsageError, match="90s, 30m, 2h, 1d"):
        policy_from(args(idle="2hrs"), Settings())
