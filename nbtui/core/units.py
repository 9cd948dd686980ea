"""Parsing and formatting of durations, sizes, times and long text."""

from __future__ import annotations

import datetime as dt
import re
from typing import Callable, Optional

from nbtui.core.errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
DURATION_FORMS = "a number with a unit: 90s, 30m, 2h, 1d"


def parse_duration(text: str | int | float, what: str = "duration") -> float:
    """Seconds in ``text`` (``90s``, ``30m``, ``2h``, ``1d``); UsageError otherwise."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if not float(text) >= 0:  # a negative or NaN number from TOML
            raise UsageError(f"bad {what} {text!r}: expected seconds, 0 or more, or {DURATION_FORMS}")
        return float(text)
    m = _DURATION.match(str(text))
    if not m:
        raise UsageError(f"bad {what} {str(text)!r}: expected {DURATION_FORMS}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def seconds_arg(what: str = "seconds", *, zero_ok: bool = False, most: float = float("inf")) -> Callable[[str], float]:
    """An argparse type: a number of seconds or a duration (``90s``, ``2m``), above 0
    (or 0 with ``zero_ok``) and at most ``most``; ``nan`` and ``inf`` are refused."""
    import argparse

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            try:
                value = parse_duration(text, what)
            except UsageError as e:
                raise argparse.ArgumentTypeError(str(e)) from None
        low_ok = value >= 0 if zero_ok else value > 0
        if not (low_ok and value <= most and value < float("inf")):  # `nan` fails every comparison
            bound = f"{'0' if zero_ok else 'above 0'} to {most:g}" if most < float("inf") else ("0 or more" if zero_ok else "above 0")
            raise argparse.ArgumentTypeError(f"expected {bound} seconds, got {text!r}")
        return value

    return parse


def human_duration(seconds: float | None) -> str:
    """``45s``, ``3m``, ``2h10m``, ``4d`` (or an em dash for unknown)."""
    if seconds is None:
        return "—"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h}h{m:02d}m" if m else f"{h}h"
    d, h = divmod(s // 3600, 24)
    return f"{d}d{h}h" if h and d < 10 else f"{d}d"


def short_duration(seconds: float | None) -> str:
    """One unit, at most three cells where it can: ``45s``, ``3m``, ``2h``, ``4d`` (em dash: unknown)."""
    if seconds is None:
        return "—"
    s = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def human_bytes(n: int | float | None) -> str:
    """``512B``, ``40M``, ``1.5G`` (binary units), or an em dash for unknown."""
    if n is None:
        return "—"
    n = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if abs(n) < 1024 or unit == "T":
            if unit in ("B", "K", "M"):
                return f"{n:.0f}{unit}"
            return f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}P"  # pragma: no cover


def human_percent(p: float | None) -> str:
    return "—" if p is None else f"{p:.0f}%"


def middle_truncate(text: str, width: int) -> str:
    """Shorten ``text`` to ``width`` cells by cutting its middle (paths keep both ends)."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    if width <= 3:
        return text[:width]
    keep = width - 1
    head = keep // 2
    tail = keep - head
    return text[:head] + "…" + text[-tail:]


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
SIZE_FORMS = "bytes, or a number with a unit: 512M, 2G, 1.5GiB"


def parse_bytes(text: str | int, what: str = "size") -> int:
    """Bytes in ``text`` (``1048576``, ``512M``, ``2G``, ``1.5GiB``; binary units); UsageError otherwise."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = _SIZE.match(str(text))
    if not m:
        raise UsageError(f"bad {what} {str(text)!r}: expected {SIZE_FORMS}")
    return int(float(m.group(1)) * 1024 ** "_kmgt".index(m.group(2).lower() or "_"))


_UTC = dt.timezone.utc


def parse_time(value: object) -> Optional[dt.datetime]:
    """An ISO 8601 time as Jupyter and JupyterHub write it (``Z`` or an offset; none: UTC),
    in UTC (another offset converted), to the microsecond given; None for anything else,
    a time that UTC cannot hold included (``0001-01-01T00:00:00+01:00``). Every time of
    the model is UTC, so ``ls --json`` writes each one with ``Z``."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        t = dt.datetime.fromisoformat(text)
        if t.tzinfo is _UTC:  # (what "+00:00" reads as)
            return t
        return t.replace(tzinfo=_UTC) if t.tzinfo is None else t.astimezone(_UTC)
    except (ValueError, OverflowError):
        return None


def iso(t: Optional[dt.datetime]) -> Optional[str]:
    """A time as ``ls --json`` writes it (its encoder's ``OPT_UTC_Z | OPT_NAIVE_UTC |
    OPT_OMIT_MICROSECONDS``): UTC, RFC 3339 to the second with ``Z``, ``2026-11-26T10:00:00Z``,
    one width for every time (they sort as text). A naive time is UTC."""
    if t is None:
        return None
    if t.tzinfo is not _UTC:
        t = t.replace(tzinfo=_UTC) if t.tzinfo is None else t.astimezone(_UTC)
    return t.replace(microsecond=0).isoformat()[:-6] + "Z"
