"""What several subcommands share: loading the config and opening the fleet."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import TYPE_CHECKING, Iterable, Optional

from nbtui.files import config as config_mod
from nbtui.core.errors import NotFound, UsageError
from nbtui.core.units import iso
if TYPE_CHECKING:
    from nbtui.service.fleet import Fleet
    from nbtui.sources import HostView


def load_config(args: argparse.Namespace) -> config_mod.Config:
    return config_mod.load(getattr(args, "config", None))


def discover_enabled(args: argparse.Namespace, config: config_mod.Config) -> bool:
    return not getattr(args, "no_discover", False) and config.settings.discover


def _top(name: str) -> str:
    """A hub user's server HUB/USER[/SERVER] is opened through its hub HUB."""
    return name.partition("/")[0] if "/" in name else name


def check_names(fleet: Fleet, names: Iterable[str]) -> None:
    unknown = [n for n in names if _top(n) not in fleet.names]
    if unknown:
        known = ", ".join(fleet.names) or "none"
        raise NotFound(f"unknown server {', '.join(unknown)} (known: {known})")


def host_view(config: config_mod.Config, cpu: bool = True) -> Optional[HostView]:
    """The local host's usage view (psutil + NVML), or None where it is not available."""
    from nbtui.service.checks import host_view as local_view
    return local_view(config.settings, cpu=cpu)


def open_fleet(args: argparse.Namespace, config: config_mod.Config | None = None,
               only: Iterable[str] = (), with_host: bool = True, acting: bool = False,
               notebooks: bool = True, stale_files: bool = True, cpu: bool = True) -> Fleet:
    """``acting``: the fleet reads to act on what a TARGET names (or to test a server): a hub
    user's server behind the proxy is read even within another nbtui's proxy_interval.
    ``notebooks``: whether its reads check that sessions' notebooks exist (a command that
    shows no orphan reasons neither asks nor waits for that). ``stale_files``: whether it looks
    for runtime files left behind (Fleet.from_config). ``cpu``: whether it shows CPU % (one
    that does not waits for no second sample)."""
    from nbtui.service.fleet import Fleet
    config = config or load_config(args)
    fleet = Fleet.from_config(
        config, discover_local=discover_enabled(args, config),
        host=host_view(config, cpu=cpu) if with_host else None, stale_files=stale_files,
    )
    only = list(only)
    if only:
        check_names(fleet, only)
        fleet = fleet.copy(only=[_top(n) for n in only])
    fleet.readonly = bool(getattr(args, "readonly", False))
    fleet.acting = acting
    fleet.checks_notebooks = notebooks
    fleet.proxy_reader = f"nbtui {args.command}" if getattr(args, "command", None) else "nbtui"
    return fleet


def require_terminal(instead: str = "`nbtui ls` (or `nbtui ls --json`)") -> None:
    """The TUI needs a terminal: stdin and stdout both one. Without (cron, a pipe, a file) a
    usage error (exit 2) naming what to run ``instead``, before Textual loads or anything starts."""
    try:
        ok = sys.stdin is not None and sys.stdout is not None and sys.stdin.isatty() and sys.stdout.isatty()
    except (ValueError, OSError):  # a closed stream
        ok = False
    if not ok:
        raise UsageError(f"no terminal to open the TUI in (stdin and stdout must be one); use {instead}")


def print_json(data: object) -> None:
    """One JSON document on stdout, with every token nbtui knows scrubbed: indented by two
    for a person at a terminal, compact for a program (a pipe, a file: at 50,000 kernels
    28 MB instead of 39, as ``gh`` does). Times (datetimes) are written by the encoder, as
    ``nbtui.core.units.iso`` writes them (UTC, to the second, ``Z``): at 50,000 kernels a
    formatting in Python cost 0.07 s. (Every time the model holds is UTC or naive:
    ``parse_time`` converts. orjson would write another offset as it is, ``iso`` in UTC.)"""
    from nbtui.files.secrets import any_known_in, redact
    from nbtui.core.text import json_text, raw_stream

    import orjson  # the standard library's encoder indents in pure Python: 13x slower at 10,000 kernels

    out = raw_stream(sys.stdout)  # JSON keeps the exact strings (its own escaping suffices): past the VisibleStream
    try:
        pretty = out.isatty()
    except (AttributeError, ValueError):
        pretty = False
    # As json.dumps(indent=2 or compact, ensure_ascii=False), byte for byte but for a small
    # float, written without an exponent (0.00001 for 1e-05); keys that are not strings
    # become strings.
    try:
        # (times as iso writes them: OMIT_MICROSECONDS truncates, as iso does)
        times = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_OMIT_MICROSECONDS
        dumped = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS | times | (orjson.OPT_INDENT_2 if pretty else 0))
    except TypeError:  # what orjson refuses from a hostile server: a lone surrogate, an int past 64 bits
        text = json.dumps(data, indent=2 if pretty else None, separators=None if pretty else (",", ":"),
                          ensure_ascii=False, default=_time)  # the same document; json_text escapes it
    else:
        binary = getattr(out, "buffer", None)
        if binary is not None and dumped.isascii() and b"\x7f" not in dumped and not any_known_in(dumped):
            out.flush()  # the usual case: nothing to escape or scrub, the bytes as they are (no copy)
            binary.write(dumped)
            binary.write(b"\n")
            binary.flush()
            return
        text = dumped.decode()
    out.write(json_text(redact(text)) + "\n")


def _time(value: object) -> Optional[str]:
    """A datetime as orjson writes it in ``print_json``, for the standard encoder."""
    if isinstance(value, dt.datetime):
        return iso(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")

