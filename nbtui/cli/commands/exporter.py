"""nbtui exporter: the fleet as Prometheus metrics, served until stopped (SIGTERM, Ctrl-C)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING, NoReturn, Optional, cast

from nbtui.cli.commands.common import load_config, open_fleet
from nbtui.core.errors import EXIT_FAILED, EXIT_OK, NbtuiError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from nbtui.exporter.webconfig import WebConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", metavar="HOST:PORT", default=None,
                   help="address to serve on (default 127.0.0.1:9877; anything but loopback only when "
                        "named here; port 0 picks a free one)")
    p.add_argument("--per-kernel", action="store_true",
                   help="also one series per kernel (memory, CPU, GPU, idle time, and nbtui_kernel_info "
                        "with its notebook path)")
    p.add_argument("--max-kernels-per-server", metavar="N", type=_count, default=None,
                   help="kernels of one server the exporter keeps (per-kernel series, usage, orphan rules; "
                        "default 1000); the rest are counted in nbtui_kernels_over_cap and in the per-server "
                        "counts, then dropped: what it holds does not grow with what a server lists")
    p.add_argument("--web-config", metavar="FILE", default=None,
                   help="TLS and basic auth, in the web config format Prometheus exporters use")
    p.epilog = ("--refresh SECONDS sets how often the fleet is read in the background (default 15 for the "
                "exporter); a scrape answers from the last read at once, with nbtui_snapshot_age_seconds. "
                "Metrics are served at /metrics.")


def _count(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"not a count of kernels (0 or more): {text!r}")
    return int(text)


class _Stop(BaseException):
    """Raised by SIGTERM in the main thread: a BaseException, so no ``except Exception`` on
    the way (socketserver's request handling catches those and serves on) can swallow it."""


def _stop_once(signum: int, frame: Optional[FrameType]) -> NoReturn:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM during the cleanup is no error
    raise _Stop()


def run(args: argparse.Namespace) -> int:
    from nbtui.exporter import metrics as exp
    from nbtui.exporter import webconfig
    host, port = webconfig.parse_listen(args.listen or exp.DEFAULT_LISTEN)
    web = webconfig.load_web_config(args.web_config) if args.web_config else webconfig.WebConfig()
    refresh = getattr(args, "refresh", None) or exp.DEFAULT_REFRESH
    config = load_config(args)
    fleet = open_fleet(args, config)
    cap = args.max_kernels_per_server
    exporter = exp.Exporter(fleet, refresh=refresh, per_kernel=args.per_kernel,
                            max_kernels=exp.DEFAULT_MAX_KERNELS if cap is None else cap)
    app = webconfig.make_app(exporter.scrape, web, exp.CONTENT_TYPE)
    try:
        httpd = webconfig.serve(host, port, app, web)
    except OSError as e:
        raise NbtuiError(f"cannot listen on {args.listen or exp.DEFAULT_LISTEN}: {e.strerror or e}",
                         EXIT_FAILED) from None
    previous = signal.signal(signal.SIGTERM, _stop_once)
    try:
        _announce(httpd, host, web, fleet.names, refresh, args.per_kernel)
        exporter.start()
        httpd.serve_forever(poll_interval=0.5)
    except (_Stop, KeyboardInterrupt):
        pass
    finally:
        httpd.server_close()
        stopped = exporter.stop()
        signal.signal(signal.SIGTERM, previous)
    if not stopped:
        # The refresh thread is inside work that cannot be cancelled (a process scan, a
        # large answer being parsed): the process ends now, not when that work does.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_OK)
    return EXIT_OK


def _announce(httpd: WSGIServer, host: str, web: WebConfig, names: list[str], refresh: float, per_kernel: bool) -> None:
    from nbtui.exporter import webconfig
    # a bound AF_INET(6) socket's name: (host str, port, ...); typeshed allows bytes for the host too
    bound_host, bound_port = cast("tuple[str, int]", httpd.server_address[:2])
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    scheme = "https" if web.tls is not None else "http"
    print(f"nbtui exporter: serving {scheme}://{shown}:{bound_port}/metrics "
          f"({len(names)} server{'s' if len(names) != 1 else ''}, refresh {refresh:g} s"
          f"{', per kernel' if per_kernel else ''}{', basic auth' if web.users else ''})",
          file=sys.stderr, flush=True)
    if not webconfig.is_loopback_host(host) and not web.secured:
        print(f"nbtui exporter: {host} is not loopback and there is no --web-config: anyone who can reach "
              "this port reads the fleet's metrics", file=sys.stderr, flush=True)
    if not names:
        print("nbtui exporter: no servers configured or discovered (see `nbtui servers add`)",
              file=sys.stderr, flush=True)
