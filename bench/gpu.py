"""Benchmark: nbtui's GPU read through the real nvidia-ml-py and the stand-in libnvidia-ml.

1. A full GPU read (devices, memory, utilisation, process lists probed and decoded, per-PID
   use, device summaries, ledgers) of 8 GPUs x 200 processes, against nvitop's own API
   (``Device.all()`` with ``processes()``) reading the same stand-in, in the same process.
2. ``nbtui ls --json`` on a server whose kernels hold stand-in GPU memory, against the same
   command on the same server with no GPU (no NVIDIA library at all).

Run from the repository root: `python bench/gpu.py` (needs gcc and the test and bench extras:
nvidia-nvml-dev, nvitop).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import scratch, setting, timed  # noqa: E402
from nbtui.host import nvml_standin as standin  # noqa: E402
from tests.jupyter import JupyterServer  # noqa: E402

RUNS = setting("BENCH_RUNS", 7, int)
READS = setting("BENCH_READS", 30, int)
GPUS, PROCS = 8, 200
GIB, MIB = 1 << 30, 1 << 20

# Runs in a child with the stand-in preloaded: each side's median seconds per full read.
READER = r"""
import json, statistics, sys, time
from pathlib import Path
from nbtui.host import nvml_standin as standin
standin.preload(Path(sys.argv[1]), Path(sys.argv[2]))
reads = int(sys.argv[3])
from nbtui.host import gpu, ledger
def nbtui_read(nv):
    r = nv.read()
    by_pid = gpu.per_pid(r)
    devs = gpu.devices(r)
    books = ledger.build(r, {pid: ledger.OTHER for pid in by_pid})
    return sum(len(v) for v in by_pid.values()), devs, books

nv = gpu.Nvml()
n, _, _ = nbtui_read(nv)  # initialises NVML once, as nbtui does
times = []
for _ in range(reads):
    t0 = time.perf_counter(); nbtui_read(nv); times.append(time.perf_counter() - t0)

from nvitop import Device
devices = Device.all()
m = sum(len(d.processes()) for d in devices)
peer = []
for _ in range(reads):
    t0 = time.perf_counter()
    for d in devices:
        d.processes()
    peer.append(time.perf_counter() - t0)
print(json.dumps({"nbtui": statistics.median(times), "peer": statistics.median(peer), "nbtui_n": n, "peer_n": m}))
"""


def main() -> None:
    with scratch("nbtui-bench-gpu-") as base:  # removed at the end, also on error
        measure(base)


def measure(base: Path) -> None:
    libdir = standin.build(base / "cache")

    # Part 1: 8 GPUs x 200 processes; the PIDs are this host's (as NVML's are), the same on every GPU.
    pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())[:PROCS]
    pids += [3_000_000 + i for i in range(PROCS - len(pids))]
    big = standin.Scenario(registry=base / "reg-big", layout="v3-v2",
                           gpus=[standin.Gpu(f"GPU-{i:08d}-bench", 80 * GIB, 512 * MIB, 10) for i in range(GPUS)],
                           procs=[(str(g), pid, (1 + n % 7) * 64 * MIB, n % 50, "c")
                                  for g in range(GPUS) for n, pid in enumerate(pids)])
    big_path = big.write(base / "big.scenario")
    out = subprocess.run([sys.executable, "-c", READER, str(libdir), str(big_path), str(READS)],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"the GPU read failed: {out.stderr.strip()[-500:]}")
    read = json.loads(out.stdout.strip().splitlines()[-1])
    assert read["nbtui_n"] == GPUS * PROCS and read["peer_n"] == GPUS * PROCS, read
    nb_ms, peer_ms = read["nbtui"] * 1000, read["peer"] * 1000

    # Part 2: ls --json on a server whose two kernels hold stand-in GPU memory, with and without a GPU.
    small = standin.Scenario(registry=base / "reg-small", gpus=[standin.Gpu("GPU-00000000-ls", 80 * GIB, 512 * MIB)])
    small_path = small.write(base / "small.scenario")
    server = JupyterServer(base / "srv", name="srv", env=standin.env(libdir, small_path, base={})).start()
    try:
        for i in range(2):
            nb = f"n{i}.ipynb"
            server.write_notebook(nb)
            kid = server.create_session(nb)["kernel"]["id"]
            server.run_code(kid, f"from nbtui.host.nvml_standin import holder; holder.hold('0', {i + 1} << 30, 0)")
        cmd = [sys.executable, "-m", "nbtui", "ls", "--json"]
        plain = dict(os.environ, JUPYTER_RUNTIME_DIR=str(server.runtime_dir), NBTUI_CONFIG=str(base / "cfg"),
                     NBTUI_ROOT_DISCOVERY="0")
        plain.pop(standin.SCENARIO_ENV, None)
        with_gpu = standin.env(libdir, small_path, base=plain)
        check = json.loads(subprocess.run(cmd, env=with_gpu, capture_output=True, text=True).stdout)
        held = sorted(k["gpu_memory_bytes"] for k in check["kernels"])
        assert held == [1 * GIB, 2 * GIB], held
        timed(cmd, with_gpu), timed(cmd, plain)  # warm the file cache
        pairs = [(timed(cmd, with_gpu), timed(cmd, plain)) for _ in range(RUNS)]  # interleaved: same load
        t_gpu = statistics.median(a for a, _b in pairs)
        t_none = statistics.median(b for _a, b in pairs)
    finally:
        server.stop()

    print(f"bench gpu-ls: nbtui ls --json with the stand-in GPU {t_gpu:.2f} s vs without a GPU {t_none:.2f} s, "
          f"ratio {t_gpu / t_none:.2f} (goal <= 1.1)")
    print(f"bench gpu: nbtui {nb_ms:.1f} ms per full read of {GPUS} GPUs x {PROCS} processes vs nvitop "
          f"{peer_ms:.1f} ms, ratio {nb_ms / peer_ms:.2f} (goal <= 1.0); ls --json with the stand-in {t_gpu:.2f} s "
          f"vs without a GPU {t_none:.2f} s, ratio {t_gpu / t_none:.2f} (goal <= 1.1)")


if __name__ == "__main__":
    main()
