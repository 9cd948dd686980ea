"""Benchmark: the console's round trip and a long stream, against peers in the same run.

1. Median round trip of `1+1` (request sent -> reply and idle status received), N times
   each, interleaved in rounds, against one real kernel of one real Jupyter server:
   - nbtui's channel client through the server websocket (TCP_QUICKACK re-armed);
   - jupyter_client's BlockingKernelClient over ZMQ from the connection file;
   - a plain websocket client without the TCP fix (what a browser-like client pays).
2. A kernel that prints 200,000 lines, shown in the real console screen (headless app):
   time until the console has all of it, the longest stall of the UI event loop while
   it streams, and jupyter_client over ZMQ receiving the same stream.

Prints as its last lines:

    bench console-stream: nbtui stall A ms vs limit 100 ms, ratio R (goal <= 1.0)
    bench console: nbtui A ms vs jupyter_client-zmq B ms, ratio R (goal <= 1.2)

Usage: python bench/console.py [--n 500] [--lines 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import channel_rtts, scratch, zmq_rtts  # noqa: E402
from tests.jupyter import JupyterServer  # noqa: E402

STREAM_CODE = "for i in range({n}): print(i)"


# -- round trips ---------------------------------------------------------------------------


async def nbtui_rtts(server: JupyterServer, kid: str, n: int) -> list[float]:
    return await channel_rtts(server.url, server.token, kid, n)


async def plain_ws_rtts(server: JupyterServer, kid: str, n: int) -> list[float]:
    """A websocket client as a browser page would write it: JSON frames, no socket tuning."""
    import uuid

    from websockets.asyncio.client import connect

    url = server.url.replace("http://", "ws://") + f"api/kernels/{kid}/channels?session_id={uuid.uuid4()}"
    async with connect(url, additional_headers=server.headers, max_size=None, compression=None, proxy=None) as ws:

        async def one() -> None:
            msg_id = uuid.uuid4().hex
            await ws.send(json.dumps({
                "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "b", "session": "s",
                           "date": "2026-01-01T00:00:00Z", "version": "5.3"},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": "1+1", "silent": False, "store_history": True, "user_expressions": {},
                            "allow_stdin": False, "stop_on_error": True},
            }))
            reply = idle = False
            while not (reply and idle):
                msg = json.loads(await ws.recv())
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                if msg["channel"] == "shell":
                    reply = True
                elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    idle = True

        await one()
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            await one()
            out.append(time.perf_counter() - t0)
        return out


# -- the long stream -----------------------------------------------------------------------


async def console_stream(server: JupyterServer, kid: str, lines: int) -> tuple[float, float, int]:
    """(seconds until the console has every line, longest loop stall in s, lines received)."""
    from textual.app import App

    from nbtui.files.config import ServerConfig, Settings
    from nbtui.service.fleet import Fleet
    from nbtui.tui.screens.console import ConsoleScreen
    fleet = Fleet([ServerConfig("bench", server.url, token_source="discovered", token=server.token)], Settings())

    class BenchApp(App):
        def on_mount(self) -> None:
            self.push_screen(ConsoleScreen(fleet, "bench", kid))

    app = BenchApp()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, ConsoleScreen)
        while not screen.ready.is_set():
            await pilot.pause(0.05)
        view = screen.view
        before = view.lines_received
        worst = 0.0
        stop = False

        async def ticker() -> None:
            nonlocal worst
            loop = asyncio.get_running_loop()
            while not stop:
                t0 = loop.time()
                await asyncio.sleep(0.005)
                worst = max(worst, loop.time() - t0 - 0.005)

        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        worst = 0.0
        t0 = time.perf_counter()
        screen.run_code(STREAM_CODE.format(n=lines))
        last = str(lines - 1)
        while True:  # a cheap check: this loop runs on the UI loop it measures
            await asyncio.sleep(0.002)
            if not screen.running and view.end and view.last_line() == last:
                break
        elapsed = time.perf_counter() - t0
        stop = True
        await tick
        got = view.lines_received - before
    await fleet.aclose()
    return elapsed, worst, got


def zmq_stream(server: JupyterServer, kid: str, lines: int) -> float:
    from jupyter_client import BlockingKernelClient

    kc = BlockingKernelClient(connection_file=str(server.connection_file(kid)))
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        t0 = time.perf_counter()
        kc.execute_interactive(STREAM_CODE.format(n=lines), output_hook=lambda m: None, timeout=300)
        return time.perf_counter() - t0
    finally:
        kc.stop_channels()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500, help="executions per client")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    ap.add_argument("--lines", type=int, default=200_000)
    args = ap.parse_args()

    with scratch("nbtui-bench-console-") as base:
        run(base, args)


def run(base: Path, args: argparse.Namespace) -> None:
    server = JupyterServer(base, name="bench").start()
    try:
        kid = server.start_kernel()
        server.run_code(kid, "pass")
        per = max(1, args.n // args.rounds)
        nb, zq, ws = [], [], []
        for _ in range(args.rounds):
            nb += asyncio.run(nbtui_rtts(server, kid, per))
            zq += zmq_rtts(server.connection_file(kid), per)
            ws += asyncio.run(plain_ws_rtts(server, kid, per))
        m_nb, m_zq, m_ws = (statistics.median(x) * 1000 for x in (nb, zq, ws))
        print(f"round trip of 1+1, median of {len(nb)}: nbtui websocket {m_nb:.2f} ms, "
              f"jupyter_client ZMQ {m_zq:.2f} ms, plain websocket (no TCP fix) {m_ws:.2f} ms")

        kid2 = server.start_kernel()
        server.run_code(kid2, "pass")
        z_stream = zmq_stream(server, kid2, args.lines)
        elapsed, stall, got = asyncio.run(console_stream(server, kid2, args.lines))
        print(f"{args.lines:,} lines: the console had all of them after {elapsed:.2f} s "
              f"(jupyter_client ZMQ, no screen: {z_stream:.2f} s), {got:,} lines received, "
              f"longest UI loop stall {stall * 1000:.1f} ms")
        print(f"bench console-stream: nbtui stall {stall * 1000:.1f} ms vs limit 100 ms, "
              f"ratio {stall * 1000 / 100:.2f} (goal <= 1.0)")
        print(f"bench console: nbtui {m_nb:.2f} ms vs jupyter_client-zmq {m_zq:.2f} ms, "
              f"ratio {m_nb / m_zq:.2f} (goal <= 1.2)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
