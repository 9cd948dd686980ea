"""nbtui cull: remove idle and orphaned kernels and leftover processes by policy (cron-safe)."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from typing import Optional, Sequence, Union

from nbtui.core.kinds import KERNEL, TERMINAL
from nbtui.service.actions.cull import CullPolicy, cull_lock, plan_cull
from nbtui.service.actions.gate import require_writable
from nbtui.service.actions.hubservers import ServerStep, plan_cull_servers
from nbtui.service.actions.kill import DEFAULT_GRACE, Step
from nbtui.cli.commands.common import load_config, open_fleet, print_json
from nbtui.cli.commands.kill import GRACE, confirm, execute_all, exit_code, report
from nbtui.files.config import Settings
from nbtui.core.errors import EXIT_OK, EXIT_PARTIAL, UsageError
from nbtui.service.fleet import Fleet
from nbtui.core.model import Snapshot
from nbtui.files.secrets import redact
from nbtui.core.text import visible
from nbtui.core.units import human_bytes, human_duration, middle_truncate, parse_duration

AnyStep = Union[Step, ServerStep]  # cull --servers plans servers, else kernels and processes


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--idle", metavar="DURATION", help="idle kernels past DURATION (90s, 30m, 2h, 1d) with no client")
    p.add_argument("--gpu-only", action="store_true", help="only what holds GPU memory")
    p.add_argument("--gpu-idle", metavar="DURATION",
                   help="what holds GPU memory at 0%% SM for DURATION; cull watches the GPUs that long first "
                        "(gpu-idle needs history)")
    p.add_argument("--orphans", action="store_true", help="every kernel and process with an orphan reason")
    p.add_argument("--servers", action="store_true",
                   help="stop hub users' servers whose hub last_activity is older than --idle (as "
                        "jupyterhub-idle-culler does), instead of culling kernels")
    p.add_argument("--server", action="append", default=[], metavar="NAME", help="only this server (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    p.add_argument("--yes", "-y", action="store_true", help="act without asking (needed without a terminal)")
    p.add_argument("--grace", type=GRACE, default=DEFAULT_GRACE, metavar="SECONDS",
                   help="seconds between SIGTERM and SIGKILL for local processes (default 5)")
    p.add_argument("--json", action="store_true", help="the plan and the results as one JSON object")


def policy_from(args: argparse.Namespace, settings: Settings) -> CullPolicy:
    """Selection flags (--idle, --orphans) replace config.toml [cull]; without them, [cull] applies."""
    s = settings
    if args.idle is not None or args.orphans or getattr(args, "gpu_idle", None) is not None:
        idle = parse_duration(args.idle, "--idle") if args.idle is not None else None
        orphans_ = bool(args.orphans)
    else:
        idle, orphans_ = s.cull_idle, s.cull_orphans
    gpu_only = bool(args.gpu_only) or s.cull_gpu_only
    gpu_idle = parse_duration(args.gpu_idle, "--gpu-idle") if getattr(args, "gpu_idle", None) is not None else None
    return CullPolicy(idle=idle, gpu_only=gpu_only, orphans=orphans_, servers=tuple(args.server),
                              gpu_idle=gpu_idle)


async def watch_gpu_idle(fleet: Fleet, snap: Snapshot, policy: CullPolicy, refresh: float) -> Snapshot:
    """gpu-idle needs history a one-shot read lacks: sample every ``refresh`` seconds for
    ``policy.gpu_idle`` (at least two samples) and return the last snapshot. Nothing to
    watch when nothing holds GPU memory (or there is no GPU data)."""
    import time

    assert policy.gpu_idle is not None, "watch_gpu_idle is called for --gpu-idle only"

    def holding(s: Snapshot) -> bool:
        rows = [k.usage for k in s.kernels] + [t.usage for t in s.terminals]
        return any(u and u.gpu_memory_bytes for u in rows) or any(p.gpu_memory_bytes for p in s.processes)

    if not holding(snap):
        print("nbtui: --gpu-idle: nothing holds GPU memory" + (f" ({snap.gpu_note})" if snap.gpu_note else ""),
              file=sys.stderr)
        return snap
    print(f"nbtui: --gpu-idle: watching GPU use for {human_duration(policy.gpu_idle)} first "
          f"(every {refresh:g} s; Ctrl-C stops)", file=sys.stderr)
    end = time.monotonic() + policy.gpu_idle
    while True:
        await asyncio.sleep(max(0.2, min(refresh, end - time.monotonic())))
        snap = await fleet.snapshot()
        if time.monotonic() >= end or not holding(snap):
            return snap


def _why(s: Step) -> str:
    if s.reasons:
        return ",".join(s.reasons)
    k = s.kernel
    return f"idle {human_duration(k.idle_seconds)}" if k is not None else "—"


def plan_table(steps: Sequence[AnyStep], width: Optional[int] = None) -> list[str]:
    """The plan as a table that fits the terminal: what goes, why, what it frees, whose."""
    width = width or shutil.get_terminal_size((80, 24)).columns
    rows = []
    for s in steps:
        if isinstance(s, ServerStep):
            target, what = s.target, f"{len(s.kernels)} kernel{'s' if len(s.kernels) != 1 else ''}"
            if s.refusal:
                what = f"REFUSED: {s.refusal}"
            rows.append((visible(target), what, s.explanation.replace("no activity on the hub for ", "idle ")
                         or "—", human_bytes(s.memory_bytes), human_bytes(s.gpu_memory_bytes), visible(s.owner or "—")))
            continue
        if s.kind == KERNEL:
            assert s.kernel is not None
            target, what = f"{s.kernel.server}:{s.kernel.kernel_id[:8]}", s.notebook or "(no session)"
        elif s.kind == TERMINAL:
            target = s.target
            what = f"shell pid {s.process.pid}" if s.process else "(shell not known here)"
        else:
            assert s.process is not None
            target, what = f"pid:{s.process.pid}", s.notebook or s.process.cmdline
        if s.refusal:
            what = f"REFUSED: {s.refusal}"
        rows.append((visible(target), visible(what), visible(_why(s)), human_bytes(s.memory_bytes),
                     human_bytes(s.gpu_memory_bytes), visible(s.owner or "—")))
    head = ("TARGET", "NOTEBOOK / COMMAND", "WHY", "MEM", "GPU", "OWNER")
    tw = min(24, max(len(head[0]), *(len(r[0]) for r in rows)))
    yw = min(26, max(len(head[2]), *(len(r[2]) for r in rows)))
    ow = min(10, max(len(head[5]), *(len(r[5]) for r in rows)))
    ww = max(12, width - (tw + yw + 6 + 6 + ow + 5))

    def fmt(r: tuple[str, ...]) -> str:
        return " ".join((middle_truncate(r[0], tw).ljust(tw), middle_truncate(r[1], ww).ljust(ww),
                         middle_truncate(r[2], yw).ljust(yw), r[3].rjust(6), r[4].rjust(6),
                         middle_truncate(r[5], ow))).rstrip()

    mem = sum(s.memory_bytes or 0 for s in steps if not s.refusal)
    gpu = sum(s.gpu_memory_bytes or 0 for s in steps if not s.refusal)
    return [fmt(head), *(fmt(r) for r in rows),
            f"{len(steps)} to cull; frees {human_bytes(mem) if mem else '—'} memory, "
            f"{human_bytes(gpu) if gpu else '—'} GPU (where measured)"]


async def _cull(args: argparse.Namespace) -> int:
    config = load_config(args)
    policy = policy_from(args, config.settings)
    # Its plan shows no CPU % and no stale runtime files: no CPU baselines, and no scan of every
    # process to find kernels' connection files that no process names.
    fleet = open_fleet(args, config, only=args.server, cpu=False, stale_files=False)
    with cull_lock():
        async with fleet:
            snap = await fleet.snapshot()
            if policy.gpu_idle is not None:
                snap = await watch_gpu_idle(fleet, snap, policy, config.settings.refresh)
            unread = [s for s in snap.servers if not s.ok]
            for s in unread:
                print(f"nbtui: not read: {visible(s.error or s.name)}", file=sys.stderr)
            steps: Sequence[AnyStep]
            if args.servers:
                assert policy.idle is not None  # _check_servers_flags: --servers needs --idle
                steps = plan_cull_servers(snap, policy.idle, policy.servers)
            else:
                steps = plan_cull(snap, policy) if policy.selects_anything else []
            code_read = EXIT_PARTIAL if unread else EXIT_OK
            if not steps:
                if args.json:
                    print_json({"dry_run": args.dry_run, "plan": [], "results": []})
                else:
                    print("nothing to cull")
                return code_read
            if not args.json:
                for line in plan_table(steps):
                    print(redact(line))
            if args.dry_run:
                if args.json:
                    print_json({"dry_run": True, "plan": [s.json() for s in steps], "results": []})
                return code_read
            if not confirm(f"Cull {len(steps)}?", args.yes):
                if args.json:
                    print_json({"dry_run": False, "plan": [s.json() for s in steps], "results": []})
                print("nothing culled", file=sys.stderr)
                return 1
            outcomes = await execute_all(fleet, steps, grace=args.grace, action="cull")
    report(args, steps, outcomes)
    code = exit_code(outcomes)
    return EXIT_PARTIAL if unread and code == EXIT_OK else code


def _check_servers_flags(args: argparse.Namespace) -> None:
    if args.servers and (args.idle is None or args.orphans or args.gpu_only):
        raise UsageError("cull --servers needs --idle DURATION (the hub's last_activity) and takes no "
                         "--orphans or --gpu-only")


def run(args: argparse.Namespace) -> int:
    _check_servers_flags(args)
    require_writable(args, "cull", dry_run=args.dry_run, plan=True)
    return asyncio.run(_cull(args))
