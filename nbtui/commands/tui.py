"""`nbtui` with no subcommand: the fleet screen on every configured and discovered server."""

from __future__ import annotations

import argparse
from typing import Optional

from nbtui.commands.common import load_config, open_fleet
from nbtui.errors import EXIT_OK


def add_arguments(p: argparse.ArgumentParser) -> None:  # no options of its own
    pass


def run(args: argparse.Namespace, *, fleet=None, config=None,
        open_console: Optional[tuple[str, str]] = None, on_app=None) -> int:
    """Open the TUI; ``fleet`` and ``open_console`` let other commands (demo, console) reuse it,
    ``on_app(app)`` runs before the app starts (the demo asks it to read again as its kernels come)."""
    config = config or load_config(args)
    fleet = fleet or open_fleet(args, config)
    from nbtui.tui.runner import SnapshotRunner  # no textual: the first read starts now,

    runner = SnapshotRunner(fleet)
    runner.prefetch()
    try:
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
        runner.close()
    return EXIT_OK
