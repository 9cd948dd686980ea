"""nbtui demo: a throwaway local Jupyter server with a few telling kernels, shown in the TUI.

The server runs on a free loopback port with a random token in a temporary folder; it and
its kernels are stopped when the TUI exits, on ctrl+c, on SIGTERM/SIGHUP, or on a crash
(and, on Linux, by the kernel itself if nbtui is killed outright).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import signal
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Optional

from nbtui.core.errors import EXIT_OK, NbtuiError
from nbtui.service.demo import DEMO, DemoServer, check_extra, demo_fleet, simulated_gpu

if TYPE_CHECKING:
    from nbtui.tui.app import NbtuiApp
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-tui", action="store_true",
                   help="no TUI: start the server and kernels, print one JSON line (url, pid, base folder) "
                        "and run until SIGTERM, SIGINT or SIGHUP (for scripts and tests)")


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):  # the terminal is gone (SIGHUP): nobody to tell
        pass


def run(args: argparse.Namespace) -> int:
    check_extra()
    if not getattr(args, "no_tui", False):
        from nbtui.cli.commands.common import require_terminal
        require_terminal("`nbtui demo --no-tui`")  # before any server starts
    from nbtui.files import config as config_mod
    config = config_mod.load(getattr(args, "config", None))  # a bad config stops us before any server
    demo = DemoServer()
    atexit.register(demo.stop)
    gpu = simulated_gpu(demo.base)  # before anything in this process reads NVML
    demo.gpu_env = gpu.env
    previous = {}
    screen: dict = {}  # "app" once the TUI is made: from then on nothing is raised into it

    def on_signal(signum: int, frame: Optional[FrameType]) -> None:
        # No lock, no wait, and nothing raised into Textual: an exception raised into its
        # writer's queue or its shutdown wedged the process (seen: the terminal closed as
        # the TUI was leaving). During the quit a signal only hurries it.
        if demo.stopping:
            demo.hurry()
            return
        if signum == signal.SIGHUP or screen.get("asked"):
            # The terminal is gone (nothing to restore on it, nobody to wait for), or a
            # second signal insists: the server's tree and the folder go now, then the
            # process, without unwinding.
            demo.hurry()
            shutil.rmtree(demo.base, ignore_errors=True)
            os._exit(128 + signum)
        if "app" in screen:  # the TUI leaves as after q; the stop follows it
            screen["asked"] = True
            screen["app"].exit_threadsafe()
            return
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        previous[sig] = signal.signal(sig, on_signal)
    try:
        _say(f"nbtui demo: starting a throwaway Jupyter server on {demo.url} …")
        _say(gpu.note)
        demo.launch()  # first: the server's own start is the long pole; the TUI loads meanwhile
        starter = threading.Thread(target=demo.bring_up, name="nbtui-demo", daemon=True)
        starter.start()
        from nbtui.cli.commands import tui
        from nbtui.cli.commands.common import open_fleet
        others = open_fleet(args, config)
        assert demo.proc is not None  # launched
        mine = config_mod.ServerConfig(name=DEMO, url=demo.url, token_source="discovered", token=demo.token,
                            source="config", pid=demo.proc.pid, root_dir=str(demo.root))
        fleet = demo_fleet(demo, [mine] + [others.config_of(n) for n in others.names], config.settings,
                            stale_files=others.stale_files, host=others.host)
        if getattr(args, "no_tui", False):
            starter.join()
            if demo.failure:
                raise NbtuiError(demo.failure)
            print(json.dumps({"url": demo.url, "pid": demo.proc.pid, "base": str(demo.base), "gpu": gpu.mode,
                              "gpu_env": gpu.env}), flush=True)
            while True:
                time.sleep(1)

        def watch(app: NbtuiApp) -> None:  # the screen reads again as soon as the server or a kernel is up
            def progress() -> None:
                try:
                    app.call_from_thread(app.refresh_now)
                except Exception:  # the app is not running (yet, or any more)
                    pass

            demo.on_progress = progress
            screen["app"] = app

        return tui.run(args, fleet=fleet, config=config, on_app=watch)
    finally:
        demo.on_progress = lambda: None
        demo.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _say("nbtui demo: server and kernels stopped")
    return EXIT_OK
