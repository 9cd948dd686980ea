"""`nbtui` with no subcommand: the fleet screen on every configured and discovered server."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Callable, Optional

from nbtui.core.errors import EXIT_OK

if TYPE_CHECKING:
    from nbtui.files.config import Config
    from nbtui.service.fleet import Fleet
    from nbtui.tui.app import NbtuiApp
    from nbtui.tui.runner import OpenOnce


def add_arguments(p: argparse.ArgumentParser) -> None:  # no options of its own
    pass


def run(args: argparse.Namespace, *, fleet: Fleet | OpenOnce | None = None, config: Optional[Config] = None,
        open_console: Optional[tuple[str, str]] = None, on_app: Optional[Callable[[NbtuiApp], None]] = None) -> int:
    """Open the TUI; ``fleet`` and ``open_console`` let other commands (demo, console) reuse it,
    ``on_app(app)`` runs before the app starts (the demo asks it to read again as its kernels come)."""
    from nbtui.cli.commands.common import load_config, open_fleet, require_terminal
    config = config or load_config(args)
    require_terminal()  # (the demo asked already, before its server started)
    from nbtui.tui.runner import OpenOnce, SnapshotRunner  # no textual: the first read starts now

    first = runner = None
    try:
        if fleet is None:
            # The screen starts before the fleet opens (httpx, psutil, discovery: a fifth of
            # the start); a child process reads the servers meanwhile (nbtui.service.forked_read),
            # unless a console opens first (its screen needs no rows).
            if open_console is None:
                from nbtui.service.forked_read import ForkedRead
                # (it sends kernels only: no stale runtime files, whose search scans every process)
                first = ForkedRead.start(lambda: open_fleet(args, config, with_host=False, stale_files=False))
            fleet = OpenOnce(lambda: open_fleet(args, config), names=list(config.servers),
                             settings=config.settings)
        runner = SnapshotRunner(fleet, first=first)
        first = None  # the runner's now
        runner.prefetch()
        from nbtui.tui.app import NbtuiApp  # while textual loads

        app = NbtuiApp(
            fleet,
            settings=config.settings,
            readonly=bool(getattr(args, "readonly", False)),
            theme=getattr(args, "theme", None),
            refresh=getattr(args, "refresh", None),
            config_folder=config.folder,
            open_console=open_console,
            runner=runner,
        )
        if on_app is not None:
            on_app(app)
        app.run()
    finally:
        if runner is not None:
            runner.close()
        elif first is not None:
            first.close()
    return EXIT_OK
