"""nbtui ls: every kernel of every server, as a table or the contract's JSON."""

from __future__ import annotations

import argparse
import asyncio

from nbtui import report
from nbtui.commands.common import open_fleet, print_json
from nbtui.errors import EXIT_OK, EXIT_PARTIAL


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", action="append", default=[], metavar="NAME", help="only this server (repeatable)")
    p.add_argument("--orphans", action="store_true", help="only kernels and processes with an orphan reason")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout (see CLI.md)")


async def _snapshot(args):
    fleet = open_fleet(args, only=args.server)
    async with fleet:
        return await fleet.snapshot()


def run(args: argparse.Namespace) -> int:
    snap = asyncio.run(_snapshot(args))
    if args.json:
        print_json(report.snapshot_json(snap, orphans_only=args.orphans))
    else:
        kernels = [k for k in snap.kernels if k.orphan_reasons or not args.orphans]
        for line in report.kernels_table(kernels):
            print(line)
        for line in report.summary_lines(snap, kernels):
            print(line)
    return EXIT_PARTIAL if snap.failed_servers else EXIT_OK
