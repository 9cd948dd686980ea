"""Benchmark: one pass of nbtui's GPU device-holder scan (nbtui.host.devholders) over a
host with several hundred extra processes, each with a few dozen open files, one of them
holding a stand-in device node; against `fuser -v` (psmisc), the admin's own tool for the
same question, on the same node in the same run. Both must find the holder.

Run from the repository root: `python bench/devholders.py` (BENCH_PROCS, BENCH_FDS, BENCH_RUNS).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import NOISY, interleaved, setting, spread  # noqa: E402
from nbtui.host import devholders  # noqa: E402

PROCS = setting("BENCH_PROCS", 400, int)
FDS = setting("BENCH_FDS", 30, int)
RUNS = setting("BENCH_RUNS", 7, int)


def main() -> None:
    print(NOISY)
    fuser = shutil.which("fuser")
    if fuser is None:
        raise SystemExit("bench devholders: no `fuser` (psmisc) here to compare with")
    with tempfile.TemporaryDirectory() as tmp:
        node = Path(tmp, "nvidia0")
        node.touch()
        files = [open(Path(tmp, f"f{i}"), "w") for i in range(FDS)]
        holder_fd = open(node)
        procs = []
        try:
            for i in range(PROCS):
                fds = [f.fileno() for f in files] + ([holder_fd.fileno()] if i == PROCS // 2 else [])
                procs.append(subprocess.Popen(["sleep", "600"], pass_fds=fds))
            holder = procs[PROCS // 2].pid
            pattern = f"{tmp}/nvidia*"

            def nbtui() -> float:
                t0 = time.perf_counter()
                found = devholders.scan(pattern)
                dt = time.perf_counter() - t0
                assert holder in {h.pid for h in found.holders}, found
                return dt

            def peer() -> float:
                t0 = time.perf_counter()
                r = subprocess.run([fuser, "-v", str(node)], capture_output=True, text=True)
                dt = time.perf_counter() - t0
                assert str(holder) in r.stdout + r.stderr, r
                return dt

            runs = interleaved({"nbtui": nbtui, "fuser": peer}, RUNS)
            ours, theirs = runs["nbtui"], runs["fuser"]
            n = sum(1 for x in os.listdir("/proc") if x.isdigit())
        finally:
            for p in procs:
                p.kill()
            for p in procs:
                p.wait()
            for f in files:
                f.close()
            holder_fd.close()
    a, b = statistics.median(ours) * 1000, statistics.median(theirs) * 1000
    print(f"{n} processes, {PROCS} of them with {FDS} extra open files; interleaved passes, wall: nbtui "
          f"{spread(ours, 1000, '.1f')} ms (in this process), fuser -v {spread(theirs, 1000, '.1f')} ms (its start included)")
    print(f"bench devholders: nbtui {a:.1f} ms vs fuser -v {b:.1f} ms, ratio {a / b:.2f} (goal <= 1.0)")


if __name__ == "__main__":
    main()
