"""nbtui console TARGET: open the TUI straight on that kernel's console."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nbtui.core.model import Kernel


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="TARGET", help="SERVER:KERNEL, or a kernel id prefix unique across the fleet")


def run(args: argparse.Namespace) -> int:
    from nbtui.cli.commands.exec import resolve_kernel
    from nbtui.cli.commands.tui import run as run_tui

    async def find() -> Kernel:
        fleet, kernel = await resolve_kernel(args)
        await fleet.aclose()
        return kernel

    kernel = asyncio.run(find())  # a bad target ends here, with its exit code, before any screen
    return run_tui(args, open_console=(kernel.server, kernel.kernel_id))
