"""A free loopback port drawn at random below the host's ephemeral range: every outgoing
connection and every port bound to 0 comes from that range, so a port picked there can be taken
again before whoever picked it binds it. At random, so that parallel test workers and a second
suite beside this one rarely draw the same. Shared by tests.jupyter.free_port (the servers the
tests start) and this folder's sitecustomize (those servers' kernels); stdlib only, as it loads
in every test server before anything else."""

from __future__ import annotations

import random
import socket
from typing import Optional


def ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = map(int, f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def below_ephemeral(ip: str = "127.0.0.1") -> Optional[int]:
    """A port of ``ip`` free right now outside the ephemeral range; None where 200 draws found
    none (the caller falls back to its own way)."""
    low, high = ephemeral_range()
    bottom, top = (10000, low - 1) if low > 12000 else (high + 1, 65535)
    for _ in range(200 if bottom < top else 0):
        port = random.randint(bottom, top)
        with socket.socket() as s:
            try:
                s.bind((ip, port))
            except OSError:
                continue
        return port
    return None
