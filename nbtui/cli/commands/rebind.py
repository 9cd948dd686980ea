"""nbtui rebind TARGET --notebook PATH: a notebook session for a kernel that has none."""

from __future__ import annotations

import argparse
import asyncio

from nbtui.service.actions.gate import require_writable
from nbtui.service.actions.migrate import rebind_kernel

from nbtui.core import targets
from nbtui.cli.commands.common import open_fleet, print_json
from nbtui.core.errors import EXIT_OK, UsageError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="TARGET", help="SERVER:KERNEL or KERNEL (unique id prefix)")
    p.add_argument("--notebook", required=True, metavar="PATH",
                   help="notebook path relative to the server's root (with no file there, an empty notebook is made)")
    p.add_argument("--dry-run", action="store_true", help="check everything, bind nothing")
    p.add_argument("--json", action="store_true", help="the result as one JSON object")


async def _rebind(args: argparse.Namespace) -> int:
    require_writable(args, "rebind", dry_run=args.dry_run, plan=True)
    fleet = open_fleet(args, with_host=False, acting=True, notebooks=False)  # no usage needed: resolve the target, act
    async with fleet:
        snap = await fleet.snapshot()
        target = targets.resolve(snap, args.target)
        if isinstance(target, targets.PidTarget):
            raise UsageError("rebind needs a kernel on a server (SERVER:KERNEL); for a local kernel "
                             "whose server is gone, see `nbtui adopt`")
        k = target.kernel
        session = await rebind_kernel(fleet, k, args.notebook, dry_run=args.dry_run)
    path = args.notebook.strip().lstrip("/")
    result = {"dry_run": args.dry_run, "server": k.server, "kernel_id": k.kernel_id, "notebook": path,
              "session_id": session.get("id") if session else None}
    if args.json:
        print_json(result)
    elif args.dry_run:
        print(f"would bind {path} to {k.server}:{k.kernel_id[:8]}")
    else:
        print(f"bound {path} to {k.server}:{k.kernel_id[:8]} (session {result['session_id'][:8]}); "
              "open it in JupyterLab to find the kernel's state intact")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_rebind(args))
