"""Benchmark: `nbtui ls --json` against `jupyter server list`, and a fleet with a hung server.

`jupyter server list` is measured twice: as it is, and without importing `rfc3987_syntax`
(jsonschema loads it, through jupyter-events, only to offer an "iri" format check, and it
costs ~1.4 s here: nothing to do with listing servers). The second is the peer of the
`bench ls` line; jsonschema runs without it when it is missing, as on any install without it.
Runs interleaved, each in a fresh measuring child (wall, and CPU over the whole process tree),
medians with their spread. nbtui also lists every kernel; the peer lists servers only. nbtui
reads the bench's servers alone (NBTUI_ROOT_DISCOVERY=0: as root it would also read every
other Jupyter server on the machine).

Run from the repository root: `python bench/ls.py`. Starts real Jupyter servers on
loopback in a temporary folder and stops them at the end; the folder is removed.
"""

from __future__ import annotations

import functools
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import NOISY, interleaved, measure, median_of, scratch, setting, spread, timed  # noqa: E402
from tests.jupyter import JupyterServer  # noqa: E402

RUNS = setting("BENCH_RUNS", 7, int)

# `jupyter server list` exactly, but with rfc3987_syntax unimportable (jsonschema skips its
# optional "iri" check then).
WITHOUT_RFC3987 = ("import runpy, sys; sys.modules['rfc3987_syntax'] = None; "
                   "sys.argv = ['jupyter-server', 'list']; runpy.run_module('jupyter_server', run_name='__main__')")


def main() -> None:
    print(NOISY)
    with scratch("nbtui-bench-ls-") as base:
        run(base)


def run(base: Path) -> None:
    servers: list[JupyterServer] = []
    try:
        # Part 1: one server with 10 kernels, found through its runtime file.
        one = JupyterServer(base / "one", name="one").start()
        servers.append(one)
        for _ in range(10):
            one.start_kernel()
        # NBTUI_ROOT_DISCOVERY=0: as root nbtui also finds every other Jupyter server on the
        # machine (other jobs' too); the peer lists this runtime folder's, so nbtui lists those.
        env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(one.runtime_dir), NBTUI_CONFIG=str(base / "cfg-one"),
                   NBTUI_ROOT_DISCOVERY="0")
        as_is = [sys.executable, "-m", "jupyter_server", "list"]
        without = [sys.executable, "-c", WITHOUT_RFC3987]
        same = [subprocess.run(c, env=env, capture_output=True, text=True).stdout for c in (as_is, without)]
        assert same[0] == same[1] and one.url.split("?")[0] in same[0], same  # the same answer
        sides = {"nbtui": [sys.executable, "-m", "nbtui", "ls", "--json"], "as-is": as_is, "without": without}
        runs = interleaved({k: functools.partial(measure, c, env) for k, c in sides.items()}, RUNS)
        times = {k: [r.wall for r in v] for k, v in runs.items()}
        cpu = {k: [r.cpu for r in v] for k, v in runs.items()}
        nbtui, peer, peer_as_is = (statistics.median(times[k]) for k in ("nbtui", "without", "as-is"))

        # Part 2: six healthy servers, then a seventh that is hung (SIGSTOP).
        cfg = base / "cfg-fleet"
        cfg.mkdir()
        fleet = [JupyterServer(base / f"f{i}", name=f"f{i}").start() for i in range(6)]
        servers += fleet
        hung = JupyterServer(base / "hung", name="hung").start()
        servers.append(hung)
        lines = ["[servers]"]
        fenv = dict(os.environ, NBTUI_CONFIG=str(cfg), JUPYTER_RUNTIME_DIR=str(base / "none"), NBTUI_ROOT_DISCOVERY="0")
        for i, s in enumerate(fleet):
            fenv[f"BENCH_TOKEN_{i}"] = s.token
            s.start_kernel()
            lines += [f"[servers.f{i}]", f'url = "{s.url}"', 'token = "env"', f'token_env = "BENCH_TOKEN_{i}"']
        (cfg / "servers.toml").write_text("\n".join(lines[1:]) + "\n")
        ls = [sys.executable, "-m", "nbtui", "ls", "--json"]
        fleet_times = interleaved({"one": lambda: timed(ls + ["--server", "f0"], fenv),
                                   "six": lambda: timed(ls, fenv)}, RUNS)
        one_alone, six = statistics.median(fleet_times["one"]), statistics.median(fleet_times["six"])
        hung_timeout = 2.0
        fenv["BENCH_TOKEN_H"] = hung.token
        with open(cfg / "servers.toml", "a") as f:
            f.write(f'[servers.hung]\nurl = "{hung.url}"\ntoken = "env"\ntoken_env = "BENCH_TOKEN_H"\ntimeout = {hung_timeout}\n')
        hung.pause()
        try:
            with_hung = median_of(ls, fenv, RUNS)
        finally:
            hung.resume()

        print(f"ls 1 server x 10 kernels: nbtui ls --json {spread(times['nbtui'], 1000, '.0f')} ms; "
              f"jupyter server list as is {spread(times['as-is'], 1000, '.0f')} ms, without importing "
              f"rfc3987_syntax {spread(times['without'], 1000, '.0f')} ms")
        print(f"  CPU over the whole process tree: nbtui {spread(cpu['nbtui'], 1000, '.0f')} ms; jupyter server list "
              f"as is {spread(cpu['as-is'], 1000, '.0f')} ms, without rfc3987_syntax {spread(cpu['without'], 1000, '.0f')} ms")
        print(f"bench ls-as-is: nbtui {nbtui * 1000:.0f} ms vs jupyter server list (as is, rfc3987_syntax "
              f"imported) {peer_as_is * 1000:.0f} ms, ratio {nbtui / peer_as_is:.2f} (goal <= 0.3)")
        print(f"ls fleet: 6 servers {spread(fleet_times['six'], 1000, '.0f')} ms, 1 of them "
              f"{spread(fleet_times['one'], 1000, '.0f')} ms")
        print(f"bench ls-fleet: nbtui 6 servers {six * 1000:.0f} ms vs 1 server {one_alone * 1000:.0f} ms, "
              f"ratio {six / one_alone:.2f} (goal <= 1.5)")
        print(f"bench ls-hung: nbtui 6 servers + 1 hung {with_hung * 1000:.0f} ms vs limit "
              f"{(hung_timeout + 0.5) * 1000:.0f} ms (its timeout + 0.5 s), ratio {with_hung / (hung_timeout + 0.5):.2f} (goal <= 1)")
        print(f"bench ls: nbtui {nbtui * 1000:.0f} ms vs jupyter server list (without rfc3987_syntax) "
              f"{peer * 1000:.0f} ms, ratio {nbtui / peer:.2f} (goal <= 0.3)")
    finally:
        for s in servers:
            s.stop()


if __name__ == "__main__":
    main()
