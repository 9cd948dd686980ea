"""nbtui adopt pid:N [--to SERVER]: reach a live local kernel whose server is gone."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

from nbtui.service.actions.gate import require_writable
from nbtui.service.actions.migrate import adopt_kernel, plan_adopt

from nbtui.core import targets
from nbtui.cli.commands.common import open_fleet, print_json
from nbtui.cli.commands.kill import confirm
from nbtui.core.text import visible
from nbtui.core.errors import EXIT_FAILED, EXIT_OK, NotFound, UsageError

if TYPE_CHECKING:
    from nbtui.migrate.adopt import LocalKernel
    from nbtui.service.fleet import Fleet


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="TARGET", help="pid:N of the kernel process, or the kernel id of a leftover process")
    p.add_argument("--to", metavar="SERVER", help="a server on this host started with "
                   "--ServerApp.allow_external_kernels=True: it will list the kernel")
    p.add_argument("--connection-dir", metavar="DIR", help="that server's external_connection_dir "
                   "(default: read from the server's command line)")
    p.add_argument("--notebook", metavar="PATH", help="with --to: also bind this notebook path to it (a session)")
    p.add_argument("--dry-run", action="store_true", help="check that the kernel can be adopted and show where its "
                   "connection file would go; change nothing")
    p.add_argument("--yes", "-y", action="store_true", help="with --to: do not ask (needed without a terminal)")
    p.add_argument("--json", action="store_true", help="the result as one JSON object")


async def _pid_of(fleet: Fleet, text: str) -> int:
    pid = targets.parse_pid(text)
    if pid is not None:
        return pid
    snap = await fleet.snapshot()
    matches = [p for p in snap.processes if p.kernel_id and p.kernel_id.startswith(text.strip())]
    roots = {p.pid for p in matches if p.kernel_id and "ipykernel" in p.cmdline} or {p.pid for p in matches}
    if len(roots) == 1:
        return roots.pop()
    if not roots:
        raise NotFound(f"no local kernel process matches {text!r}; name it as pid:N")
    raise NotFound(f"{text!r} matches processes {', '.join(map(str, sorted(roots)))}; name one as pid:N")


async def _adopt(args: argparse.Namespace) -> int:
    from nbtui.migrate import adopt
    if args.notebook and not args.to:
        raise UsageError("--notebook needs --to SERVER")
    if args.to:
        require_writable(args, "adopt --to", dry_run=args.dry_run, plan=True)
    fleet = open_fleet(args)
    async with fleet:
        pid = await _pid_of(fleet, args.target)
        if not args.to:
            return _report(args, await adopt.check(pid), {"dry_run": args.dry_run, "plan": None})
        lk, placement = await plan_adopt(fleet, pid, args.to, args.connection_dir, dry_run=args.dry_run)
        result = {"dry_run": args.dry_run, "plan": placement.json()}
        if not args.json:
            print(f"{'would place' if args.dry_run else 'place'} {placement.describe()}")
        if args.dry_run:
            return _report(args, lk, result)
        if not confirm(f"Place kernel {(lk.kernel_id or '?')[:8]}'s connection file (its key) for {args.to}?",
                       args.yes):
            print("nothing placed", file=sys.stderr)
            return EXIT_FAILED
        new_id = await adopt_kernel(fleet, lk, placement)
        result["server_kernel_id"] = new_id
        if new_id and args.notebook:
            from nbtui.migrate import rebind
            session = await rebind.rebind(fleet.client(args.to), new_id, rebind.clean_path(args.notebook))
            result["session_id"] = session.get("id")
    return _report(args, lk, result)


def _report(args: argparse.Namespace, lk: LocalKernel, result: dict[str, Any]) -> int:
    result = {"dry_run": result["dry_run"], **lk.describe(), "adoptable": True, "server": args.to,
              "server_kernel_id": None, "session_id": None, **result}
    if args.json:
        print_json(result)
        return EXIT_OK
    gone = {True: f"its server (pid {lk.server_pid}) still runs", False: f"its server (pid {lk.server_pid}) is gone",
            None: "it was started outside any server"}[lk.server_alive]
    print(f"pid {lk.pid}: kernel {(lk.kernel_id or '?')[:8]} ({lk.kernel_name or 'unknown spec'}) answers on its "
          f"heartbeat; {gone}" + (f"; notebook {visible(lk.notebook)}" if lk.notebook else ""))
    if result["server_kernel_id"]:
        print(f"{args.to} lists it now as {args.to}:{result['server_kernel_id'][:8]}"
              + (f", bound to {args.notebook.lstrip('/')}" if result["session_id"] else ""))
    elif not args.to:
        print(f"reach it with: nbtui console pid:{lk.pid} · nbtui migrate pid:{lk.pid} --to SERVER --notebook PATH"
              " · nbtui adopt pid:{0} --to SERVER (a server on this host with allow_external_kernels)".format(lk.pid))
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_adopt(args))
