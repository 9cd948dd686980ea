"""Benchmark: culling idle kernels with nbtui vs. the strongest simple script.

The peer is bench/concurrent_cull.py (list the kernels, DELETE every idle one at once), run
as a process of its own as nbtui is: both pay a Python start, and each is measured in a fresh
child (``bench.common.measure``): wall time and CPU over its whole process tree (every thread,
every child). Both run in the same run, on the same real Jupyter server, each on its own
batch of freshly started idle kernels (default 40; the starts are not timed), in interleaved
rounds whose order turns each time, after one uncounted run of each; medians with their
spread. nbtui reads this server alone (its runtime file; NBTUI_ROOT_DISCOVERY=0, so as root
it does not also find, and cull, every other Jupyter server on the machine). Also checks
that a leftover process ignoring SIGTERM is gone within grace + 1 s. Prints as its last line:

    bench cull: nbtui A s vs concurrent-httpx B s, ratio R (goal <= 1.0)

Usage: python bench/cull.py [--kernels 40] [--grace 1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import NOISY, Run, interleaved, measure, scratch, spread  # noqa: E402
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernels", type=int, default=40)
    ap.add_argument("--grace", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3, help="rounds, each in the reverse order of the one before")
    opts = ap.parse_args()
    print(NOISY)
    with scratch("nbtui-bench-cull-") as base:
        return run(base, opts)


def run(base: Path, opts: argparse.Namespace) -> int:
    server = JupyterServer(base / "jupyter", name="bench").start()
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(server.runtime_dir), NBTUI_CONFIG=str(base / "cfg"),
               NBTUI_STATE_DIR=str(base / "state"), NBTUI_ROOT_DISCOVERY="0", NO_COLOR="1",
               BENCH_CULL_TOKEN=server.token)
    commands = {"nbtui": [sys.executable, "-m", "nbtui", "cull", "--idle", "0s", "--yes"],
                "concurrent": [sys.executable, str(ROOT / "bench" / "concurrent_cull.py"), server.url]}
    stubborn = None

    def side(name: str) -> Run:
        start_kernels(server, opts.kernels)
        r = measure(commands[name], env, stdout=base / f"{name}.out", cwd=ROOT)
        left = server.kernels()
        assert not left, f"{name} left {len(left)} kernels"
        if name == "nbtui":
            culled = sum(": ok" in line for line in (base / "nbtui.out").read_text().splitlines())
            assert culled == opts.kernels, f"nbtui culled {culled} kernels, not {opts.kernels}"
        print(f"  {name}: {r.wall:.2f} s, CPU {r.cpu:.2f} s", flush=True)
        return r

    try:
        runs = interleaved({n: functools.partial(side, n) for n in commands}, opts.rounds)

        stubborn = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE, text=True)
        assert stubborn.stdout is not None and stubborn.stdout.readline().strip() == "ready"
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "nbtui", "kill", f"pid:{stubborn.pid}", "--yes", "--grace",
                            str(opts.grace)], env=env, capture_output=True, text=True, cwd=ROOT, timeout=600)
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
    ours, theirs = runs["nbtui"], runs["concurrent"]
    print(f"cull {opts.kernels} idle kernels, process start included: wall nbtui {spread([r.wall for r in ours])} s, "
          f"concurrent httpx script {spread([r.wall for r in theirs])} s; CPU (whole process tree) nbtui "
          f"{spread([r.cpu for r in ours])} s, concurrent httpx script {spread([r.cpu for r in theirs])} s")
    t_nbtui, t_peer = statistics.median(r.wall for r in ours), statistics.median(r.wall for r in theirs)
    print(f"bench cull: nbtui {t_nbtui:.2f} s vs concurrent-httpx {t_peer:.2f} s, ratio {t_nbtui / t_peer:.2f} "
          f"(goal <= 1.0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
