"""Benchmark: nbtui at fleet scale against the simplest honest peers (issue 25).

1. `nbtui ls --json` against bench/minimal_reader.py (every server's /api/kernels and
   /api/sessions at once, joined, printed as JSON) at 100 kernels (10 servers), 1,000,
   10,000 and 50,000 (always 10 servers), served by bench/fakefleet.py in a process of its
   own (its threads do not compete with what is measured). Wall time, peak RSS (``ru_maxrss``
   of the tree, each run in a fresh measuring child) and CPU of the whole tree.
2. A hub of 1,000 users' servers, one kernel each (tests/fakehub.py in its own process, 50
   users a page; each user's server answers only a token minted for it): `nbtui ls --json`
   against bench/minimal_hub_reader.py (pages the hub, then 16 servers at a time: mint, read
   kernels and sessions, revoke).
3. The real TUI in tmux on 20 servers x 250 kernels, where 1 % of each server's kernels change
   at every listing: whole-process CPU per refresh (every thread, every child: /proc via psutil
   over the process tree) over BENCH_TUI_SECONDS of steady state (240 s from BENCH_TUI_AFTER,
   200 s, after the start: one whole period of the notebook re-checks), and the longest read
   (the gap between two refreshes' listings minus the 2 s refresh wait). The CPU is split by
   thread too: the UI (Textual's loop), the fleet service (`nbtui-fleet`: its thread and the workers it
   starts, which Linux names after it), the others.
4. The real `nbtui exporter` (its defaults: 15 s refresh, 1,000 kernels kept per server) on
   50 servers x 1,000 kernels: its RSS sampled every 5 s over BENCH_EXPORTER_SECONDS once
   every server has been read (the median and the largest), and its peak (VmHWM).

Runs are interleaved (nbtui, peer, then peer, nbtui, ...) after one uncounted run of each;
medians are compared, the spread (min-max) printed. Run from the repository root:
`python bench/scale.py` (needs tmux for part 3; BENCH_RUNS, BENCH_BIG_RUNS, BENCH_HUB_RUNS,
BENCH_TUI_SECONDS, BENCH_EXPORTER_SECONDS, BENCH_SIZES, BENCH_PARTS="ls hub tui exporter" to choose).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.common import NOISY, interleaved, measure, Run, scratch, setting, sizes, spread, tree_cpu  # noqa: E402

RUNS = setting("BENCH_RUNS", 5, int)
BIG_RUNS = setting("BENCH_BIG_RUNS", 7, int)  # the 50,000-kernel case: 3 runs gave medians 0.74-1.26 s for the same reader
HUB_RUNS = setting("BENCH_HUB_RUNS", 3, int)
# The measured window: BENCH_TUI_SECONDS from BENCH_TUI_AFTER seconds after the TUI's third
# refresh. A screen left open re-checks its notebook folders once a minute, a quiet one every 4
# minutes at last (nbtui.jupyter.notebooks: at about 60, 180, 420, 660 s...): 240 s from 200 s
# is one whole period of that steady state. (A minute from the start, as this measured before,
# saw little of the re-checks: 190 ms a refresh where the steady state of the same code was 263.)
TUI_AFTER = setting("BENCH_TUI_AFTER", 200.0, float, least=0.0)
TUI_SECONDS = setting("BENCH_TUI_SECONDS", 240.0, float)
PARTS = os.environ.get("BENCH_PARTS", "ls hub tui exporter").split()
EXPORTER_SECONDS = setting("BENCH_EXPORTER_SECONDS", 60.0, float)
EXPORTER_SERVERS, EXPORTER_PER, EXPORTER_RSS_GOAL_MB = 50, 1000, 150.0
SERVERS = 10
SIZES = sizes("BENCH_SIZES", (100, 1000, 10000, 50000))
HUB_USERS, HUB_PAGE = 1_000, 50
TUI_SERVERS, TUI_PER, TUI_CHANGE, REFRESH = 20, 250, 0.01, 2.0
TIME_GOAL, RSS_GOAL, HUB_LIMIT_S, TUI_CPU_LIMIT_MS = 1.5, 2.0, 10.0, 100.0
PY = sys.executable


@contextmanager
def child(args: list[str], log_path: Path) -> Iterator[tuple[str, int]]:
    """A server process of our own (fake fleet or fake hub): its first stdout line and its PID.
    Its stderr (its clients' connection resets, chiefly) goes to ``log_path``."""
    log = open(log_path, "w")  # noqa: SIM115  (closed below, after the process)
    proc = subprocess.Popen([PY, "-m", *args], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                            text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line:
            raise SystemExit(f"{' '.join(args)} did not start: {log_path.read_text()[-500:]}")
        yield line, proc.pid
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.kill()
        proc.wait(10)
        log.close()


def write_servers(cfg: Path, urls: list[str]) -> None:
    cfg.mkdir(parents=True, exist_ok=True)
    (cfg / "servers.toml").write_text("".join(
        f'[servers.s{i:02d}]\nurl = "{u}"\ntoken = "none"\ntimeout = 120\n\n' for i, u in enumerate(urls)))


def env_for(base: Path, cfg: Path, **extra: str) -> dict:
    """The measured commands' environment. Bytecode is written and used, as where nbtui is
    installed: an inherited PYTHONDONTWRITEBYTECODE would make every counted run compile
    nbtui's modules (~0.2 s) while the peers import only site-packages' cached httpx."""
    env = dict(os.environ, NBTUI_CONFIG=str(cfg), NBTUI_STATE_DIR=str(base / "state"),
               JUPYTER_RUNTIME_DIR=str(base / "none"), **extra)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def kernels_in(path: Path) -> int:
    return len(json.loads(path.read_text())["kernels"])


def compare(sides: dict, runs: int, outs: dict[str, Path], want: int) -> dict[str, list[Run]]:
    res = interleaved(sides, runs)
    for name, out in outs.items():  # both answered the whole fleet (the last run's output)
        got = kernels_in(out)
        if got != want:
            raise SystemExit(f"{name} listed {got} kernels, not {want}")
        out.unlink()
    return res


def ls_case(base: Path, total: int) -> dict[str, list[Run]]:
    per = total // SERVERS
    with child(["bench.fakefleet", str(SERVERS), str(per)], base / "servers.log") as (line, _):
        urls = [f"http://127.0.0.1:{p}/" for p in json.loads(line)]
        cfg = base / f"cfg-{total}"
        write_servers(cfg, urls)
        env = env_for(base, cfg)
        out_n, out_r = base / "nbtui.json", base / "reader.json"
        sides = {"nbtui": lambda: measure([PY, "-m", "nbtui", "ls", "--json", "--no-discover"], env, out_n),
                 "reader": lambda: measure([PY, str(ROOT / "bench" / "minimal_reader.py"), *urls], env, out_r)}
        return compare(sides, BIG_RUNS if total >= 50_000 else RUNS, {"nbtui": out_n, "reader": out_r}, total)


def hub_case(base: Path) -> dict[str, list[Run]]:
    with child(["tests.fakehub", str(HUB_USERS), str(HUB_PAGE)], base / "hub.log") as (url, _):
        cfg = base / "cfg-hub"
        cfg.mkdir()
        (cfg / "servers.toml").write_text(
            f'[servers.hub]\nurl = "{url}"\ntoken = "env"\ntoken_env = "BENCH_HUB_TOKEN"\nhub = true\ntimeout = 120\n')
        env = env_for(base, cfg, BENCH_HUB_TOKEN="h" * 48)
        out_n, out_r = base / "nbtui.json", base / "reader.json"
        tokens = {"nbtui": [0, 0, 0], "reader": [0, 0, 0]}  # minted, revoked, refused: over the counted runs

        def counted(name: str, cmd: list[str], out: Path):
            def once() -> Run:
                before = httpx.get(url + "_stats", timeout=30).json()
                run = measure(cmd, env, out)
                after = httpx.get(url + "_stats", timeout=30).json()
                for i, key in enumerate(("mints", "revoked", "refused")):
                    tokens[name][i] += after[key] - before[key]
                return run
            return once

        sides = {"nbtui": counted("nbtui", [PY, "-m", "nbtui", "ls", "--json", "--no-discover"], out_n),
                 "reader": counted("reader", [PY, str(ROOT / "bench" / "minimal_hub_reader.py"), url], out_r)}
        res = compare(sides, HUB_RUNS, {"nbtui": out_n, "reader": out_r}, HUB_USERS)
        for name, (minted, revoked, refused) in tokens.items():  # warm-up run included
            print(f"hub tokens, {name} over {HUB_RUNS + 1} runs: {minted} minted, {revoked} revoked, "
                  f"{refused} reads refused")
        return res


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of process ``pid`` now, by role: "UI" (the
    main thread, Textual's loop), "service" (the fleet service's thread, ``nbtui-fleet``:
    reads, parsing, rows and cells), "other" (every other thread)."""
    out = {"UI": 0.0, "service": 0.0, "other": 0.0}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        role = "UI" if task.name == str(pid) else "service" if name == "nbtui-fleet" else "other"
        out[role] += (int(fields[11]) + int(fields[12])) / tick
    return out


def tui_case(base: Path) -> dict:
    """The real TUI in tmux: whole-tree CPU per refresh and the longest read."""
    tmux = shutil.which("tmux")
    if tmux is None:
        raise SystemExit("bench scale's TUI part needs tmux (BENCH_PARTS='ls hub' to leave it out)")
    with child(["bench.fakefleet", str(TUI_SERVERS), str(TUI_PER), str(TUI_CHANGE)], base / "tui-servers.log") as (line, fake):
        ports = json.loads(line)
        urls = [f"http://127.0.0.1:{p}/" for p in ports]
        cfg = base / "cfg-tui"
        write_servers(cfg, urls)
        env = env_for(base, cfg, TERM="xterm-256color")
        env.pop("NO_COLOR", None)
        sock = str(base / "tmux.sock")
        subprocess.run([tmux, "-S", sock, "new-session", "-d", "-x", "160", "-y", "50", "-s", "b",
                        f"exec {PY} -m nbtui --no-discover"], env=env, check=True, cwd=ROOT)
        try:
            pid = int(subprocess.run([tmux, "-S", sock, "display", "-p", "-t", "b", "#{pane_pid}"],
                                     capture_output=True, text=True, check=True).stdout)
            stats = f"http://127.0.0.1:{ports[0]}/_stats"

            def listings() -> list[float]:
                return httpx.get(stats, timeout=30).json()["times"]

            def requests() -> dict[str, int]:  # every server's, by kind
                out: dict[str, int] = {}
                for p in ports:
                    for kind, n in httpx.get(f"http://127.0.0.1:{p}/_stats", timeout=30).json()["requests"].items():
                        out[kind] = out.get(kind, 0) + n
                return out

            deadline = time.monotonic() + 120
            while len(listings()) < 4:  # the first read and three refreshes: steady state
                if time.monotonic() > deadline:
                    screen = subprocess.run([tmux, "-S", sock, "capture-pane", "-p", "-t", "b"],
                                            capture_output=True, text=True).stdout
                    raise SystemExit("the TUI did not refresh 3 times within 120 s:\n" + screen)
                time.sleep(0.2)
            rows_seen = "notebook-" in subprocess.run([tmux, "-S", sock, "capture-pane", "-p", "-t", "b"],
                                                 capture_output=True, text=True).stdout

            def next_listing(after: int) -> list[float]:  # the moment a refresh starts
                give_up = time.monotonic() + 300
                while len(times := listings()) <= after:
                    if time.monotonic() > give_up:
                        raise SystemExit("the TUI did not refresh within 300 s")
                    time.sleep(0.05)
                return times

            time.sleep(TUI_AFTER)
            # From the start of one refresh to the start of the first one TUI_SECONDS later:
            # whole refresh cycles, so the CPU divides by the refreshes exactly.
            n0 = len(next_listing(len(listings())))
            c0, f0, t0, r0, th0 = tree_cpu(pid), tree_cpu(fake), time.monotonic(), requests(), thread_cpu(pid)
            time.sleep(TUI_SECONDS)
            times = next_listing(len(listings()))
            c1, f1, t1, r1, th1 = tree_cpu(pid), tree_cpu(fake), time.monotonic(), requests(), thread_cpu(pid)
        finally:
            subprocess.run([tmux, "-S", sock, "kill-server"], capture_output=True)
        refreshes = len(times) - n0
        gaps = [b - a for a, b in zip(times[n0 - 1:], times[n0:])]  # start to start: a read and the 2 s wait
        return {"refreshes": refreshes, "seconds": t1 - t0, "cpu_ms": (c1 - c0) * 1000 / max(refreshes, 1),
                "core_share": (c1 - c0) / (t1 - t0), "fake_share": (f1 - f0) / (t1 - t0), "gaps": gaps,
                "requests": {k: (n - r0.get(k, 0)) / max(refreshes, 1) for k, n in sorted(r1.items())},
                "rows_seen": rows_seen,
                "threads_ms": {k: (th1[k] - th0[k]) * 1000 / max(refreshes, 1) for k in th1}}


def exporter_case(base: Path) -> dict:
    """The real exporter at 50,000 kernels: RSS once every server is read, and its peak."""
    import psutil

    with child(["bench.fakefleet", str(EXPORTER_SERVERS), str(EXPORTER_PER)], base / "exp-servers.log") as (line, _):
        urls = [f"http://127.0.0.1:{p}/" for p in json.loads(line)]
        cfg = base / "cfg-exporter"
        write_servers(cfg, urls)
        log = base / "exporter.log"
        with open(log, "w") as out:
            proc = subprocess.Popen([PY, "-m", "nbtui", "exporter", "--no-discover", "--listen", "127.0.0.1:0"],
                                    env=env_for(base, cfg), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=ROOT)
        try:
            deadline = time.monotonic() + 120
            url = None
            while url is None:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("the exporter did not serve: " + log.read_text()[-500:])
                url = next((ln.split("serving ", 1)[1].split()[0] for ln in log.read_text().splitlines()
                            if "serving http" in ln), None)
                time.sleep(0.2)
            while True:  # every server's kernels counted: the first whole read is in
                body = httpx.get(url, timeout=60).text
                if sum(1 for ln in body.splitlines() if ln.startswith("nbtui_up{") and ln.endswith(" 1.0")) \
                        >= EXPORTER_SERVERS:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("the exporter did not read every server within 120 s")
                time.sleep(1)
            me, samples = psutil.Process(proc.pid), []
            end = time.monotonic() + EXPORTER_SECONDS
            while time.monotonic() < end:
                samples.append(me.memory_info().rss)
                time.sleep(5)
            with open(f"/proc/{proc.pid}/status") as f:
                peak = next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmHWM:"))
        finally:
            proc.terminate()
            proc.wait(30)
        return {"samples": samples, "peak": peak}


def line(name: str, a: float, unit: str, peer: str, b: float, goal: float, fmt: str = ".2f") -> str:
    return f"bench {name}: nbtui {a:{fmt}} {unit} vs {peer} {b:{fmt}} {unit}, ratio {a / b:.2f} (goal <= {goal:g})"


def main() -> None:
    print(NOISY, flush=True)
    last: list[str] = []
    with scratch("nbtui-bench-scale-") as base:
        if "ls" in PARTS:
            for total in SIZES:
                res = ls_case(base, total)
                n, r = res["nbtui"], res["reader"]
                print(f"ls --json, {total:,} kernels ({SERVERS} servers): "
                      f"nbtui wall {spread([x.wall for x in n])} s, RSS {spread([x.rss for x in n], 2**-20, '.0f')} MiB, "
                      f"CPU {spread([x.cpu for x in n])} s; "
                      f"minimal reader wall {spread([x.wall for x in r])} s, "
                      f"RSS {spread([x.rss for x in r], 2**-20, '.0f')} MiB, CPU {spread([x.cpu for x in r])} s",
                      flush=True)
                med = {k: (statistics.median(x.wall for x in v), statistics.median(x.rss for x in v) / 2**20)
                       for k, v in res.items()}
                last.append(line(f"scale-{total}", med["nbtui"][0], "s", "minimal-reader", med["reader"][0], TIME_GOAL))
                last.append(line(f"scale-{total}-rss", med["nbtui"][1], "MiB", "minimal-reader", med["reader"][1],
                                 RSS_GOAL, ".0f"))
        if "hub" in PARTS:
            res = hub_case(base)
            n, r = res["nbtui"], res["reader"]
            print(f"ls --json, a hub of {HUB_USERS:,} users' servers x 1 kernel ({HUB_PAGE} a page): "
                  f"nbtui wall {spread([x.wall for x in n])} s, RSS {spread([x.rss for x in n], 2**-20, '.0f')} MiB, "
                  f"CPU {spread([x.cpu for x in n])} s; minimal hub reader (16 at a time, a token minted and "
                  f"revoked per server) wall {spread([x.wall for x in r])} s, "
                  f"RSS {spread([x.rss for x in r], 2**-20, '.0f')} MiB, CPU {spread([x.cpu for x in r])} s",
                  flush=True)
            a, b = statistics.median(x.wall for x in n), statistics.median(x.wall for x in r)
            last.append(line("scale-hub", a, "s", "minimal-hub-reader", b, TIME_GOAL))
            last.append(f"bench scale-hub-time: nbtui {a:.2f} s vs limit {HUB_LIMIT_S:g} s, "
                        f"ratio {a / HUB_LIMIT_S:.2f} (goal <= 1)")
        if "tui" in PARTS:
            t = tui_case(base)
            gaps = t["gaps"]
            longest = max(gaps) - REFRESH if gaps else float("nan")
            print(f"TUI, {TUI_SERVERS * TUI_PER:,} kernels over {TUI_SERVERS} servers, {TUI_CHANGE:.0%} of kernels "
                  f"changing per listing, refresh {REFRESH:g} s, tmux 160x50: {t['refreshes']} refreshes in "
                  f"{t['seconds']:.0f} s from {TUI_AFTER:g} s after the start; whole-process CPU {t['cpu_ms']:.0f} ms per refresh "
                  f"({t['core_share']:.0%} of a core; by thread: "
                  f"{', '.join(f'{k} {v:.0f} ms' for k, v in t['threads_ms'].items())}; the fake servers' "
                  f"process {t['fake_share']:.0%}); reads (gap between refreshes - {REFRESH:g} s wait) "
                  f"{spread([g - REFRESH for g in gaps])} s; kernel rows on screen: "
                  f"{'yes' if t['rows_seen'] else 'NOT SEEN'}; requests per refresh, all servers: "
                  f"{', '.join(f'{k} {n:.0f}' for k, n in t['requests'].items())}", flush=True)
            last.append(f"bench scale-tui-cpu: nbtui {t['cpu_ms']:.0f} ms CPU per refresh vs limit "
                        f"{TUI_CPU_LIMIT_MS:.0f} ms, ratio {t['cpu_ms'] / TUI_CPU_LIMIT_MS:.2f} (goal <= 1)")
            last.append(f"bench scale-tui-read: nbtui longest read {longest:.2f} s vs refresh interval "
                        f"{REFRESH:g} s, ratio {longest / REFRESH:.2f} (goal <= 1)")
        if "exporter" in PARTS:
            e = exporter_case(base)
            rss = [x / 2**20 for x in e["samples"]]
            print(f"exporter, {EXPORTER_SERVERS * EXPORTER_PER:,} kernels over {EXPORTER_SERVERS} servers (its defaults: "
                  f"refresh 15 s, 1,000 kernels kept a server), after its first whole read: RSS "
                  f"{spread(rss, 1, '.0f')} MiB over {EXPORTER_SECONDS:g} s, peak (VmHWM) {e['peak'] / 2**20:.0f} MiB",
                  flush=True)
            med = statistics.median(rss)
            last.append(f"bench scale-exporter-rss: nbtui {med:.0f} MiB vs limit {EXPORTER_RSS_GOAL_MB:.0f} MiB, "
                        f"ratio {med / EXPORTER_RSS_GOAL_MB:.2f} (goal <= 1)")
    for text in last:
        print(text)


if __name__ == "__main__":
    main()
