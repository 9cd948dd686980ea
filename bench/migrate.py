"""Benchmark: `nbtui migrate` against the manual route, moving 256 MiB of NumPy arrays.

Run from the repository root: `python bench/migrate.py` (needs numpy and dill, the
`test` extra). Starts two real Jupyter servers on loopback and stops them at the end.

Both routes move the same namespace (four NumPy arrays, 256 MiB in all, plus a few small
objects) from a kernel on server A into a NEW kernel on server B, and both count that
kernel's start:

- nbtui: the real command line, `nbtui migrate A:KERNEL --to b --yes --json`, which
  inventories, carries the payload in chunks through nbtui, verifies it in the target,
  binds a session and shuts the source down;
- manual: `dill.dump_module(FILE)` in the source kernel, a new kernel on B, then
  `dill.load_module(FILE)` in it (what a user would do by hand; no verification).

Rounds run the routes in turn, each round in the reverse order of the one before (BENCH_ROUNDS,
default 3); medians are compared, their spread printed. The temporary folder is removed.
nbtui's memory: its peak RSS (``wait4``) moving the 256 MiB namespace minus its peak
moving a namespace of small objects only, against the bound of 2 x the largest chunk (the report's ``chunk_bytes``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import NOISY, scratch, setting, spread  # noqa: E402
from tests.jupyter import JupyterServer  # noqa: E402

ROUNDS = setting("BENCH_ROUNDS", 3, int)

SMALL = """
config = {"lr": 3e-4, "layers": [512, 256, 10], "name": "resnet-ish"}
labels = [f"class-{i}" for i in range(1000)]
step = 12345
"""
BIG = """
import numpy as np
rng = np.random.default_rng(SEED)
weights = rng.standard_normal(16 << 20)                       # 128 MiB float64
grads = np.arange(8 << 20, dtype=np.float32).reshape(2048, -1)  #  32 MiB float32
tokens = rng.integers(0, 50000, 8 << 20, dtype=np.int32)        #  32 MiB int32
images = rng.integers(0, 255, (1024, 256, 256), dtype=np.uint8)  #  64 MiB uint8
"""
BIG_BYTES = (128 + 32 + 32 + 64) << 20


def nbtui_migrate(a: JupyterServer, kid: str, env: dict, notebook: str, *extra: str) -> tuple[float, int, dict]:
    """(seconds, peak RSS bytes, report) of one real `nbtui migrate`."""
    cmd = [sys.executable, "-m", "nbtui", "migrate", f"a:{kid}", "--to", "b", "--notebook", notebook,
           "--yes", "--json", "--no-discover", *extra]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"nbtui migrate failed ({proc.returncode}): {err.strip()}")
    report = json.loads(out)
    return dt, usage.ru_maxrss * 1024, report


def manual(a: JupyterServer, b: JupyterServer, kid: str, path: Path) -> float:
    """dill.dump_module in the source, a new kernel on B, dill.load_module there."""
    t0 = time.perf_counter()
    reply = a.run_code(kid, f"import dill\ndill.dump_module({str(path)!r})", timeout=300)
    assert reply["content"]["status"] == "ok", reply["content"]
    new = b.start_kernel()
    reply = b.run_code(new, f"import dill\ndill.load_module({str(path)!r})\nassert weights.shape == (16 << 20,)",
                       timeout=300)
    dt = time.perf_counter() - t0
    assert reply["content"]["status"] == "ok", reply["content"]
    b.shutdown_kernel(new)
    return dt


def main() -> None:
    print(NOISY)
    with scratch("nbtui-bench-migrate-") as base:
        run(base)


def run(base: Path) -> None:
    a = JupyterServer(base / "a", name="a").start()
    b = JupyterServer(base / "b", name="b").start()
    try:
        cfg = base / "cfg"
        cfg.mkdir()
        (cfg / "servers.toml").write_text(
            f'[servers.a]\nurl = "{a.url}"\ntoken = "env"\ntoken_env = "BENCH_TOKEN_A"\n\n'
            f'[servers.b]\nurl = "{b.url}"\ntoken = "env"\ntoken_env = "BENCH_TOKEN_B"\n')
        env = dict(os.environ, NBTUI_CONFIG=str(cfg), NBTUI_STATE_DIR=str(base / "state"),
                   BENCH_TOKEN_A=a.token, BENCH_TOKEN_B=b.token, JUPYTER_RUNTIME_DIR=str(base / "none"))

        # nbtui's baseline memory: the same command moving small objects only.
        kid = a.start_kernel()
        a.run_code(kid, SMALL)
        _, base_rss, _ = nbtui_migrate(a, kid, env, "small.ipynb")

        ours, theirs, peaks, via_ws = [], [], [], []
        chunk = 0
        for i in range(ROUNDS):
            def ours_once(i: int = i) -> None:
                nonlocal chunk
                kid = a.start_kernel()
                a.run_code(kid, SMALL + BIG.replace("SEED", str(i)), timeout=300)
                dt, rss, report = nbtui_migrate(a, kid, env, f"moved-{i}.ipynb")
                assert report["bytes"] >= BIG_BYTES and report["source_shut_down"], report
                ours.append(dt)
                peaks.append(rss)
                chunk = report["chunk_bytes"]
                b.shutdown_kernel(report["target"]["kernel_id"])

            def theirs_once(i: int = i) -> None:
                kid = a.start_kernel()
                a.run_code(kid, SMALL + BIG.replace("SEED", str(i)), timeout=300)
                file = base / f"session-{i}.pkl"
                theirs.append(manual(a, b, kid, file))
                file.unlink()
                a.shutdown_kernel(kid)

            def ws_once(i: int = i) -> None:
                # The same move forced through both servers' websockets (what a remote server gets).
                kid = a.start_kernel()
                a.run_code(kid, SMALL + BIG.replace("SEED", str(i)), timeout=300)
                dt, _, report = nbtui_migrate(a, kid, env, f"ws-{i}.ipynb", "--transport", "websocket")
                via_ws.append(dt)
                b.shutdown_kernel(report["target"]["kernel_id"])

            order = (ours_once, theirs_once, ws_once)
            for step in (order if i % 2 == 0 else order[::-1]):
                step()

        nbtui_s, manual_s, ws_s = statistics.median(ours), statistics.median(theirs), statistics.median(via_ws)
        extra = max(peaks) - base_rss
        print(f"migrate 256 MiB numpy + small objects: nbtui {spread(ours)} s "
              f"(ZMQ to both local kernels), manual dill.dump_module/load_module {spread(theirs)} s")
        print(f"through both servers' websockets (--transport websocket, as with remote servers): "
              f"{' '.join(f'{t:.2f}' for t in via_ws)} s, median {ws_s:.2f} s, {ws_s / manual_s:.2f} x manual")
        # Exact: the goal is <= 1.0 exactly, so 32.1 MiB against 32 must not print as 1.00.
        print(f"bench migrate-memory: nbtui {extra / 2**20:.3f} MiB vs limit {2 * chunk / 2**20:.3f} MiB, "
              f"ratio {extra / (2 * chunk):.4f} (goal <= 1.0) [peak RSS {max(peaks) / 2**20:.3f} MiB, "
              f"baseline {base_rss / 2**20:.3f} MiB, payload {BIG_BYTES / 2**20:.0f} MiB, "
              f"chunk {chunk / 2**20:.3f} MiB; RSS counted in KiB by the kernel]")
        print(f"bench migrate: nbtui {nbtui_s:.2f} s vs dill-manual {manual_s:.2f} s, "
              f"ratio {nbtui_s / manual_s:.2f} (goal <= 1.5)")
    finally:
        a.stop()
        b.stop()


if __name__ == "__main__":
    main()
