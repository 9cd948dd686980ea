"""nbtui ls: every kernel of every server, as a table or the contract's JSON."""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from typing import Collection

from nbtui.core.model import Snapshot
from nbtui.display import report
from nbtui.cli.commands.common import open_fleet, print_json
from nbtui.core.errors import EXIT_OK, EXIT_PARTIAL
from nbtui.files.secrets import redact


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", action="append", default=[], metavar="NAME", help="only this server (repeatable)")
    p.add_argument("--orphans", action="store_true", help="only kernels and processes with an orphan reason")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout (see CLI.md)")
    p.add_argument("--probe", action="store_true",
                   help="ask kernels that no other usage source covers through their control channel "
                        "(usage_request); this resets their idle time")
    p.epilog = ("CPU is percent of one core, summed over the kernel's process tree; MEM is resident "
                "memory (RSS) summed over the tree; GPU is GPU memory summed over the tree and all GPUs; "
                "GPU% is SM utilisation summed likewise. A dash is unknown, never zero.")


async def _snapshot(args: argparse.Namespace) -> Snapshot:
    # notebook-missing costs a request per sessions' folder: only --orphans, which asks for
    # orphans, waits for it; a plain listing is the servers' answers (issue 25: no waits)
    fleet = open_fleet(args, only=args.server, notebooks=args.orphans)
    async with fleet:
        snap = await fleet.snapshot()
        if getattr(args, "probe", False):
            from nbtui.service.checks import probe_missing
            snap, errors = await probe_missing(fleet, snap, timeout=fleet.settings.timeout)
            for line in errors:
                print(f"nbtui: {redact(line)}", file=sys.stderr)
        return _only_hub_servers(snap, args.server)


def _only_hub_servers(snap: Snapshot, names: Collection[str]) -> Snapshot:
    """--server HUB/USER[/SERVER] keeps that user's server (and its hub's row) of its hub."""
    wanted = {n for n in names if "/" in n}
    if not wanted:
        return snap
    from dataclasses import replace

    keep = {s.name for s in snap.servers if s.name in names or s.hub in names or s.name in wanted
            or (s.user is None and any(w.partition("/")[0] == s.name for w in wanted))}
    return replace(snap, servers=tuple(s for s in snap.servers if s.name in keep),
                   kernels=tuple(k for k in snap.kernels if k.server in keep))


def run(args: argparse.Namespace) -> int:
    # One read, one document, then the process ends: the cycle collector is off. Its walks
    # over what the read builds (at 50,000 kernels 0.07 s of 1.1) found almost nothing: a
    # failed request leaves no cycle that holds its answer (nbtui.jupyter.rest.deadline,
    # nbtui.service.fleet.all_or_none). Measured against a hub of 1,500 users' servers that
    # each refuse with 0.5 MB: 67 MB at the peak with it off, 64 with it on (1,066 before
    # those cycles were broken).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _list(args)
    finally:
        if collecting:
            gc.enable()


def _list(args: argparse.Namespace) -> int:
    snap = asyncio.run(_snapshot(args))
    if args.json:
        print_json(report.snapshot_json(snap, orphans_only=args.orphans))
    else:
        kernels = [k for k in snap.kernels if k.orphan_reasons or not args.orphans]
        for line in report.kernels_table(kernels, snapshot=snap, orphans_only=args.orphans):
            print(line)
        for line in report.orphan_lines(snap, kernels, with_kernels=args.orphans):
            print(line)
        for line in report.summary_lines(snap, kernels):
            print(line)
    return EXIT_PARTIAL if snap.failed_servers else EXIT_OK
