"""Benchmark: culling idle kernels with nbtui vs. the strongest simple script.

The peer is bench/concurrent_cull.py (list the kernels, DELETE every idle one at once), run
as a process of its own as nbtui is (both pay a Python start); a one-request-at-a-time
script, in this process, is printed beside them for reference. All run in the same run, on
the same real Jupyter server, each on its own batch of freshly started idle kernels (default
40), in rounds whose order turns each time; medians with their spread. Also checks that a
leftover process ignoring SIGTERM is gone within grace + 1 s. Prints as its last line:

    bench cull: nbtui A s vs concurrent-httpx B s, ratio R (goal <= 1.0)

Usage: python bench/cull.py [--kernels 40] [--grace 1] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import NOISY, scratch, spread  # noqa: E402
from tests.jupyter import JupyterServer, wait_for  # noqa: E402

STUBBORN = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(600)")


def start_kernels(server: JupyterServer, n: int) -> list[str]:
    """Start ``n`` kernels and wait until each answers (so both sides cull ready kernels)."""
    from jupyter_client import BlockingKernelClient

    def ready(kid: str) -> bool:
        kc = BlockingKernelClient(connection_file=str(server.connection_file(kid)))
        kc.load_connection_file()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=120)
            return True
        except RuntimeError:  # died while starting (a loaded machine): replace it
            return False
        finally:
            kc.stop_channels()

    ids = [server.start_kernel() for _ in range(n)]
    for i, kid in enumerate(ids):
        for _ in range(3):
            if ready(ids[i]):
                break
            try:
                server.shutdown_kernel(ids[i])
            except Exception:
                pass
            ids[i] = server.start_kernel()
        else:
            raise SystemExit("kernels keep dying while they start")
    return ids


def peer(server: JupyterServer, ids: list[str]) -> float:
    """What a hand-written script does: one DELETE after the other."""
    t0 = time.perf_counter()
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as c:
        for kid in ids:
            c.delete(f"api/kernels/{kid}").raise_for_status()
    return time.perf_counter() - t0


def concurrent(server: JupyterServer) -> float:
    """bench/concurrent_cull.py, a process of its own: list, then every DELETE at once."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "bench" / "concurrent_cull.py"), server.url], check=True,
                   capture_output=True, env=dict(os.environ, BENCH_CULL_TOKEN=server.token), timeout=600)
    return time.perf_counter() - t0


def nbtui(env: dict, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "nbtui", *args], env=env, capture_output=True, text=True,
                       cwd=ROOT, timeout=600)
    return time.perf_counter() - t0, r


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernels", type=int, default=40)
    ap.add_argument("--grace", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=2, help="rounds, each in the reverse order of the one before")
    opts = ap.parse_args()
    print(NOISY)
    with scratch("nbtui-bench-cull-") as base:
        return run(base, opts)


def run(base: Path, opts: argparse.Namespace) -> int:
    server = JupyterServer(base / "jupyter", name="bench").start()
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(server.runtime_dir), NBTUI_CONFIG=str(base / "cfg"),
               NBTUI_STATE_DIR=str(base / "state"), NO_COLOR="1")
    stubborn = None
    peers, ours, theirs = [], [], []
    try:
        for round_ in range(opts.rounds):  # each round in the reverse order of the one before
            sides = ("concurrent", "nbtui", "sequential")
            for side in (sides if round_ % 2 == 0 else sides[::-1]):
                ids = start_kernels(server, opts.kernels)
                if side != "nbtui":
                    if side == "sequential":
                        peers.append(peer(server, ids))
                    else:
                        theirs.append(concurrent(server))
                    assert not server.kernels(), f"the {side} peer left kernels behind"
                    continue
                t, r = nbtui(env, "cull", "--idle", "0s", "--yes")
                if r.returncode != 0:
                    print(r.stdout[-2000:], r.stderr[-2000:], sep="\n")
                    raise SystemExit(f"nbtui cull exited {r.returncode}")
                left = server.kernels()
                assert not left, f"nbtui left {len(left)} kernels"
                ours.append(t)
            print(f"round {round_ + 1}: culled {opts.kernels} idle kernels: nbtui {ours[-1]:.2f} s, concurrent "
                  f"httpx script {theirs[-1]:.2f} s (both: process start included), sequential httpx in this "
                  f"process {peers[-1]:.2f} s", flush=True)
        t_nbtui, t_peer, t_seq = statistics.median(ours), statistics.median(theirs), statistics.median(peers)

        stubborn = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True)
        assert stubborn.stdout.readline().strip() == "ready"
        t0 = time.perf_counter()
        _, r = nbtui(env, "kill", f"pid:{stubborn.pid}", "--yes", "--grace", str(opts.grace))
        wait_for(lambda: stubborn.poll() is not None, 30, 0.01, "the stubborn process to go")
        t_gone = time.perf_counter() - t0
        ok = r.returncode == 0 and t_gone <= opts.grace + 1.0
        print(f"a process ignoring SIGTERM: gone in {t_gone:.2f} s with --grace {opts.grace:g} "
              f"(limit {opts.grace + 1:g} s, nbtui start included): {'ok' if ok else 'TOO SLOW'}; "
              f"{r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr.strip()}")
    finally:
        if stubborn is not None and stubborn.poll() is None:
            stubborn.kill()
            stubborn.wait()
        server.stop()
    print(f"cull {opts.kernels} idle kernels: nbtui {spread(ours)} s, concurrent httpx script {spread(theirs)} s, "
          f"sequential httpx {spread(peers)} s")
    print(f"for reference, nbtui against the one-at-a-time script (the old peer, in this process, no start): "
          f"ratio {t_nbtui / t_seq:.2f}")
    print(f"bench cull: nbtui {t_nbtui:.2f} s vs concurrent-httpx {t_peer:.2f} s, ratio {t_nbtui / t_peer:.2f} "
          f"(goal <= 1.0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
