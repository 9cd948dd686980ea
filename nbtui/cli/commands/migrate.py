"""nbtui migrate TARGET --to SERVER: carry a kernel's variables into a new kernel elsewhere."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import TYPE_CHECKING, Optional, TextIO

from nbtui.service.actions.gate import require_writable
from nbtui.service.actions.migrate import local_migration_for, migration_for

from nbtui.core import targets
from nbtui.cli.commands.common import open_fleet, print_json
from nbtui.core.errors import EXIT_OK, UsageError
from nbtui.migrate import MAX_BYTES
from nbtui.core.units import human_bytes, parse_bytes

if TYPE_CHECKING:
    from nbtui.migrate.move import Progress


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="TARGET", help="SERVER:KERNEL, KERNEL (unique id prefix) or pid:N")
    p.add_argument("--to", required=True, metavar="SERVER", help="the server that gets the new kernel")
    p.add_argument("--kernel", metavar="NAME", help="kernel spec on the target (default: the source's)")
    p.add_argument("--notebook", metavar="PATH", help="notebook path of the new session (default: the source's)")
    p.add_argument("--overwrite-notebook", action="store_true",
                   help="copy the source's notebook file over a different file at the target path "
                        "(without it such a move is refused)")
    p.add_argument("--keep-source", action="store_true", help="leave the source kernel running afterwards")
    p.add_argument("--max-bytes", type=_size, default=MAX_BYTES, metavar="N",
                   help=f"skip a variable whose serialised size is above N (default {human_bytes(MAX_BYTES)}; 512M, 2G …)")
    p.add_argument("--wait", action="store_true", help="wait for a busy source to finish instead of refusing")
    p.add_argument("--dry-run", action="store_true", help="print the inventory and the plan; change nothing")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask before shutting the source down")
    p.add_argument("--json", action="store_true", help="the report as one JSON object")
    p.add_argument("--chunk-bytes", type=_size, default=None, metavar="N", help=argparse.SUPPRESS)
    p.add_argument("--transport", choices=("auto", "websocket"), default="auto", help=argparse.SUPPRESS)


def _size(text: str) -> int:
    try:
        n = parse_bytes(text, "size")
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if n <= 0:
        raise argparse.ArgumentTypeError("must be above 0")
    return n


class StderrProgress:
    """A one-line progress bar on a terminal; a few plain lines otherwise."""

    WIDTH = 30

    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last_pct = -1
        self._last_draw = 0.0
        self._open = False

    def __call__(self, p: Progress) -> None:
        if p.stage == "transfer" and p.total:
            pct = int(p.done * 100 / p.total)
            if self.tty:
                now = time.monotonic()
                if now - self._last_draw < 0.1 and p.done < p.total:
                    return
                self._last_draw = now
                fill = int(self.WIDTH * p.done / p.total)
                bar = "█" * fill + "░" * (self.WIDTH - fill)
                self.stream.write(f"\r  {bar} {pct:3d}% {human_bytes(p.done)}/{human_bytes(p.total)} {p.name or '':<20.20}")
                self._open = True
            elif pct // 25 != self._last_pct // 25 or pct == 100 and self._last_pct != 100:
                self.stream.write(f"  transfer {pct}% ({human_bytes(p.done)} of {human_bytes(p.total)})\n")
            self._last_pct = pct
            self.stream.flush()
            return
        if p.stage in ("transfer", "done"):
            return
        self._end_line()
        text = {"inventory": "inventory of the source kernel", "verify": "verifying in the target kernel",
                "shutdown": "shutting the source kernel down"}.get(p.stage, p.note or p.stage)
        if p.stage in ("start", "bind", "wait") and p.note:
            text = p.note
        self.stream.write(f"migrate: {text}\n")
        self.stream.flush()

    def _end_line(self) -> None:
        if self._open:
            self.stream.write("\n")
            self._open = False


async def _migrate(args: argparse.Namespace) -> int:
    from nbtui.migrate.move import Options, keeps_source, plan_lines
    require_writable(args, "migrate", dry_run=args.dry_run, plan=True)
    opts = Options(to=args.to, kernel_name=args.kernel, notebook=args.notebook, keep_source=args.keep_source,
                   dry_run=args.dry_run, max_bytes=args.max_bytes, wait=args.wait, chunk_bytes=args.chunk_bytes,
                   transport=args.transport, eager_start=args.yes or args.keep_source,
                   overwrite_notebook=args.overwrite_notebook)
    fleet = open_fleet(args, with_host=False, acting=True, notebooks=False)  # no usage needed: resolve the target, act
    async with fleet:
        snap = await fleet.snapshot()
        target = targets.resolve(snap, args.target)
        progress = StderrProgress()
        if isinstance(target, targets.PidTarget):
            migration = local_migration_for(fleet, target.pid, opts, progress)
        else:
            migration = migration_for(fleet, target.kernel, opts, progress)
        report = await migration.prepare()
        if not opts.dry_run:
            if not args.json:
                for line in plan_lines(report):
                    print(line)
            # The source is shut down once the move is verified: ask first (or --yes).
            from nbtui.cli.commands.kill import confirm
            try:
                ok = opts.keep_source or keeps_source(report) or confirm(
                    f"Move {len(report.moved)} name(s) to {opts.to}, then shut the source kernel down?", args.yes)
            except BaseException:
                await migration.cancel()
                raise
            if not ok:
                await migration.cancel()
                print("nothing moved", file=sys.stderr)
                return EXIT_OK
            report = await migration.execute()
        else:
            await migration.cancel()
        progress._end_line()
    if args.json:
        print_json(report.to_json())
    elif report.dry_run:
        for line in plan_lines(report):
            print(line)
    else:
        t = report.target
        print(f"new kernel {t.get('server')}:{(t.get('kernel_id') or '')[:8]} bound to {t.get('notebook')}: "
              f"{len(report.moved)} name(s) moved and verified, {len(report.imported)} module(s) imported, "
              f"{len(report.skipped)} skipped ({human_bytes(report.bytes)} in {report.seconds:.1f} s)")
        for e in report.moved:
            if e.note:
                print(f"  {e.name}: {e.note}")
        if report.source_shut_down:
            print("source kernel shut down")
        else:
            print(f"source kernel kept: {report.source_kept_reason}")
    if report.audit_error:  # what was done is done: the log's trouble is said, never hidden
        print(f"nbtui: {report.audit_error}", file=sys.stderr)
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_migrate(args))
