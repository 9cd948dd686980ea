"""Benchmark: `nbtui ls --json` against `jupyter server list`, and a fleet with a hung server.

Run from the repository root: `python bench/ls.py`. Starts real Jupyter servers on
loopback in a temporary folder and stops them at the end.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import median_of  # noqa: E402
from tests.jupyter import JupyterServer  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "7"))


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="nbtui-bench-ls-"))
    servers: list[JupyterServer] = []
    try:
        # Part 1: one server with 10 kernels, found through its runtime file.
        one = JupyterServer(base / "one", name="one").start()
        servers.append(one)
        for _ in range(10):
            one.start_kernel()
        env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(one.runtime_dir), NBTUI_CONFIG=str(base / "cfg-one"))
        nbtui = median_of([sys.executable, "-m", "nbtui", "ls", "--json"], env, RUNS)
        peer = median_of([sys.executable, "-m", "jupyter_server", "list"], env, RUNS)

        # Part 2: six healthy servers, then a seventh that is hung (SIGSTOP).
        cfg = base / "cfg-fleet"
        cfg.mkdir()
        fleet = [JupyterServer(base / f"f{i}", name=f"f{i}").start() for i in range(6)]
        servers += fleet
        hung = JupyterServer(base / "hung", name="hung").start()
        servers.append(hung)
        lines = ["[servers]"]
        fenv = dict(os.environ, NBTUI_CONFIG=str(cfg), JUPYTER_RUNTIME_DIR=str(base / "none"))
        for i, s in enumerate(fleet):
            fenv[f"BENCH_TOKEN_{i}"] = s.token
            s.start_kernel()
            lines += [f"[servers.f{i}]", f'url = "{s.url}"', 'token = "env"', f'token_env = "BENCH_TOKEN_{i}"']
        (cfg / "servers.toml").write_text("\n".join(lines[1:]) + "\n")
        ls = [sys.executable, "-m", "nbtui", "ls", "--json"]
        one_alone = median_of(ls + ["--server", "f0"], fenv, RUNS)
        six = median_of(ls, fenv, RUNS)
        hung_timeout = 2.0
        fenv["BENCH_TOKEN_H"] = hung.token
        with open(cfg / "servers.toml", "a") as f:
            f.write(f'[servers.hung]\nurl = "{hung.url}"\ntoken = "env"\ntoken_env = "BENCH_TOKEN_H"\ntimeout = {hung_timeout}\n')
        hung.pause()
        try:
            with_hung = median_of(ls, fenv, RUNS)
        finally:
            hung.resume()

        print(f"ls 1 server x 10 kernels: nbtui ls --json median {nbtui * 1000:.0f} ms, "
              f"jupyter server list median {peer * 1000:.0f} ms ({RUNS} runs each)")
        print(f"bench ls-fleet: nbtui 6 servers {six * 1000:.0f} ms vs 1 server {one_alone * 1000:.0f} ms, "
              f"ratio {six / one_alone:.2f} (goal <= 1.5)")
        print(f"bench ls-hung: nbtui 6 servers + 1 hung {with_hung * 1000:.0f} ms vs limit "
              f"{(hung_timeout + 0.5) * 1000:.0f} ms (its timeout + 0.5 s), ratio {with_hung / (hung_timeout + 0.5):.2f} (goal <= 1)")
        print(f"bench ls: nbtui {nbtui * 1000:.0f} ms vs jupyter server list {peer * 1000:.0f} ms, "
              f"ratio {nbtui / peer:.2f} (goal <= 0.3)")
    finally:
        for s in servers:
            s.stop()


if __name__ == "__main__":
    main()
