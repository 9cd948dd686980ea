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


def _print_document(snap: Snapshot, orphans_only: bool) -> None:
    """``ls --json``'s document, built and written with the cycle collector off: a dict or
    two per kernel and no cycle among them, while its walks over every kernel the read holds
    (50,000: 0.05 s) would find nothing. The read itself, where servers' errors are met,
    keeps it on."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        print_json(report.snapshot_json(snap, orphans_only=orphans_only))
    finally:
        if collecting:
            gc.enable()


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
    snap = asyncio.run(_snapshot(args))
    if args.json:
        _print_document(snap, args.orphans)
    else:
        kernels = [k for k in snap.kernels if k.orphan_reasons or not args.orphans]
        for line in report.kernels_table(kernels, snapshot=snap, orphans_only=args.orphans):
            print(line)
        for line in report.orphan_lines(snap, kernels, with_kernels=args.orphans):
            print(line)
        for line in report.summary_lines(snap, kernels):
            print(line)
    return EXIT_PARTIAL if snap.failed_servers else EXIT_OK
