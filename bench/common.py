"""What several benchmarks measure the same way: a command's wall time (median of runs)
and jupyter_client's ``1+1`` round trip over ZMQ, the peer of every console benchmark."""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path


def timed(cmd: list[str], env: dict) -> float:
    """Seconds ``cmd`` took; it must exit 0 or 4 (some servers unread, on purpose)."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode not in (0, 4):
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return dt


def median_of(cmd: list[str], env: dict, runs: int) -> float:
    """The median of ``runs`` runs, after one that warms the file cache."""
    timed(cmd, env)
    return statistics.median(timed(cmd, env) for _ in range(runs))


def zmq_rtts(connection_file: Path, n: int) -> list[float]:
    """``n`` round trips of ``1+1`` through jupyter_client over ZMQ (after one warm-up)."""
    from jupyter_client import BlockingKernelClient

    kc = BlockingKernelClient(connection_file=str(connection_file))
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        kc.execute_interactive("1+1", output_hook=lambda m: None, timeout=30)
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            kc.execute_interactive("1+1", output_hook=lambda m: None, timeout=30)
            out.append(time.perf_counter() - t0)
        return out
    finally:
        kc.stop_channels()


async def channel_rtts(url: str, token: str | None, kid: str, n: int) -> list[float]:
    """``n`` round trips of ``1+1`` through nbtui's own kernel channels (after one warm-up)."""
    from nbtui.jupyter.channels import WebsocketChannels
    from nbtui.jupyter.rest import ServerClient

    async with ServerClient("bench", url, token) as client:
        async with WebsocketChannels(client, kid) as ch:
            await (await ch.execute("1+1")).wait()
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                await (await ch.execute("1+1")).wait()
                out.append(time.perf_counter() - t0)
            return out
