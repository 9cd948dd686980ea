"""nbtui console TARGET: open the TUI straight on that kernel's console."""

from __future__ import annotations

import argparse
import asyncio


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="TARGET", help="SERVER:KERNEL, or a kernel id prefix unique across the fleet")


def run(args: argparse.Namespace) -> int:
    from nbtui.commands.exec import resolve_kernel

    async def find():
        fleet, kernel = await resolve_kernel(args)
        await fleet.aclose()
        return kernel

    kernel = asyncio.run(find())  # bad targets end here, before the screen opens
    from nbtui.tui.console_app import run_console

    return run_console(args, kernel.server, kernel.kernel_id)
