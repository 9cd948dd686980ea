"""nbtui kill TARGET...: shut kernels down through their servers, signal local process trees."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, Sequence

from nbtui.service.actions.gate import current_user, require_writable
from nbtui.service.actions.hubservers import ServerOutcome, ServerStep, plan_stop_server, stop_servers
from nbtui.service.actions.kill import DEFAULT_GRACE, Outcome, Step, execute, plan_kill
from nbtui.service.fleet import Fleet

from nbtui.core import targets
from nbtui.cli.commands.common import open_fleet, print_json
from nbtui.core.text import visible
from nbtui.core.errors import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, UsageError
from nbtui.files.secrets import redact
from nbtui.core.units import seconds_arg


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("targets", nargs="+", metavar="TARGET", help="SERVER:KERNEL, KERNEL (unique id prefix), pid:N or server:HUB/USER[/SERVER]")
    p.add_argument("--dry-run", action="store_true", help="print the plan and change nothing")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask (needed without a terminal)")
    p.add_argument("--grace", type=GRACE, default=DEFAULT_GRACE, metavar="SECONDS",
                   help="seconds between SIGTERM and SIGKILL for local processes (default 5)")
    p.add_argument("--json", action="store_true", help="the plan and the results as one JSON object")



GRACE = seconds_arg("--grace", zero_ok=True, most=3600)  # nan would make the SIGKILL wait endless


def confirm(question: str, yes: bool) -> bool:
    """--yes, or a "y" typed on a terminal; without either, a usage error (exit 2)."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError("refusing to act without confirmation: pass --yes (no terminal to ask on)")
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        return False
    return answer.strip().lower() in ("y", "yes")


def print_plan(steps: list[Step], verb: str) -> None:
    for s in steps:
        print(redact(f"{verb} {s.describe()}"))
        if s.explanation:
            print(redact(f"    {visible(s.explanation)}"))


EXIT_INTERRUPTED = 130


def exit_code(outcomes: list[Outcome]) -> int:
    if any(o.interrupted for o in outcomes):
        return EXIT_INTERRUPTED
    if any(o.server_error for o in outcomes):
        return EXIT_PARTIAL
    return EXIT_OK if all(o.ok for o in outcomes) else EXIT_FAILED


async def _kill(args: argparse.Namespace) -> int:
    fleet = open_fleet(args, acting=True, cpu=False, stale_files=False)  # its plan shows no CPU %, no stale files
    async with fleet:
        snap = await fleet.snapshot()
        resolved = [targets.resolve(snap, t) for t in args.targets]
        hub_servers = list({t.server.name: t.server for t in resolved if isinstance(t, targets.ServerTarget)}.values())
        steps: list = plan_kill(snap, [t for t in resolved if not isinstance(t, targets.ServerTarget)])
        steps += [plan_stop_server(snap, s) for s in hub_servers]
        refused = EXIT_FAILED if any(s.refusal for s in steps) else EXIT_OK
        if args.json and args.dry_run:
            print_json({"dry_run": True, "plan": [s.json() for s in steps], "results": []})
            return refused
        if not args.json:
            print_plan(steps, "would kill" if args.dry_run else "kill")
        if args.dry_run:
            return refused
        acting = [s for s in steps if not s.refusal]
        if acting:
            owners = sorted({s.owner for s in acting if s.owner and s.owner != current_user()})
            whose = f" (owned by {', '.join(owners)})" if owners else ""
            if not confirm(f"Kill {len(acting)} target{'s' if len(acting) != 1 else ''}{whose}?", args.yes):
                print("nothing killed", file=sys.stderr)
                return EXIT_FAILED
        outcomes = await execute_all(fleet, steps, grace=args.grace, action="kill")
    report(args, steps, outcomes)
    return exit_code(outcomes)


async def execute_all(fleet: Fleet, steps: Sequence[Step | ServerStep], *, grace: float,
                      action: str) -> list[Outcome | ServerOutcome]:
    """Kernels and processes (execute) and hub users' servers (stopped through their
    hub) at once; outcomes in the order of the steps."""
    servers = [s for s in steps if isinstance(s, ServerStep)]
    others = [s for s in steps if not isinstance(s, ServerStep)]
    tasks = [asyncio.ensure_future(execute(fleet, others, grace=grace, action=action) if others else _nothing()),
             asyncio.ensure_future(stop_servers(fleet, servers, action=f"{action}-server")
                                   if servers else _nothing())]
    try:
        done_others, done_servers = await asyncio.gather(*tasks)
    except asyncio.CancelledError:
        # ctrl+c: execute() stops escalating and returns what it did (outcomes marked
        # interrupted); gather would drop that, so wait for each part and report it.
        await asyncio.wait(tasks)
        parts = [t.result() if not t.cancelled() and t.exception() is None else [] for t in tasks]
        if not any(parts):
            raise
        done_others, done_servers = parts
    by_step = {id(o.step): o for o in [*done_others, *done_servers]}
    return [by_step[id(s)] for s in steps if id(s) in by_step]


async def _nothing() -> list[Any]:
    return []


def report(args: argparse.Namespace, steps: Sequence[Step | ServerStep],
           outcomes: Sequence[Outcome | ServerOutcome]) -> None:
    """What was done, as JSON or a line per target; audit-log trouble on stderr."""
    if args.json:
        print_json({"dry_run": False, "plan": [s.json() for s in steps], "results": [o.json() for o in outcomes]})
    else:
        for o in outcomes:
            print(redact(o.describe()))
    for line in sorted({o.audit_error for o in outcomes if o.audit_error}):
        print(f"nbtui: {redact(line)}", file=sys.stderr)
    if any(o.interrupted for o in outcomes):
        print("nbtui: interrupted (ctrl+c): nothing more was signalled, no SIGKILL sent; "
              "what was done is above and in the audit log", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    require_writable(args, "kill", dry_run=args.dry_run, plan=True)
    return asyncio.run(_kill(args))
