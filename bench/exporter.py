"""Benchmark: `nbtui exporter --per-kernel` at fleet scale.

Run from the repository root: `python bench/exporter.py`.

5,000 kernels over 20 servers (the generated REST data of bench/tui.py, served by a child
process):

1. The real `nbtui exporter --per-kernel` as a subprocess: the wall time of a scrape
   (as Prometheus asks: gzip; and plain), from the request to the last byte received
   (the client's own decompression not counted), after its first refresh, and its RSS.
2. The background refresh against the TUI's refresh, on the same servers in the same
   process: CPU time (all threads) of one steady-state refresh, the exporter's
   (`Exporter.refresh_once`: every server read, restarts counted, the exposition rendered
   and compressed; RUNS before the TUI and RUNS after it, with no app alive, as it runs
   in production) against the real TUI's at 160x50 (its runner's read: every server
   read, the usage history, the rows' cells; then the screen's apply and repaint),
   medians.
3. Hostile scale (issue 21): the real `nbtui exporter --per-kernel` (default cap, 1,000
   kernels per server) reading two hostile servers that list 80,000 kernels each (~32 MB
   of JSON a read, one server's kernels with sessions), against the same exporter reading
   two honest servers that list exactly the cap each, both at the exporter's defaults
   (refresh 15 s): RSS right after a read (what it keeps), peak RSS (VmHWM: the read
   itself, whose answers are parsed whole before the cap drops what is past it; the REST
   client caps each server's at max_body), the median scrape wall (gzip) over one refresh
   interval, CPU per refresh, and SIGTERM to exit.
   `python bench/exporter.py hostile` runs this part alone.
"""

from __future__ import annotations

import asyncio
import json
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

from bench.common import setting  # noqa: E402

SERVERS, PER_SERVER = 20, 250
RUNS = setting("BENCH_RUNS", 5, int)
SCRAPES = 20
HOSTILE_PER_SERVER, CAP = 80_000, 1000


def scrape_part(ports: list[int], base: Path) -> dict:
    import httpx
    import psutil
    from prometheus_client.parser import text_string_to_metric_families

    cfg = base / "cfg"
    cfg.mkdir()
    (cfg / "servers.toml").write_text("".join(
        f'[servers.s{i:02d}]\nurl = "http://127.0.0.1:{p}/"\ntoken = "none"\ntimeout = 10\n' for i, p in enumerate(ports)))
    env = dict(os.environ, NBTUI_CONFIG=str(cfg), JUPYTER_RUNTIME_DIR=str(base / "none"),
               NBTUI_STATE_DIR=str(base / "state"))
    log = base / "exporter.log"
    proc = subprocess.Popen([sys.executable, "-m", "nbtui", "--no-discover", "--refresh", "15", "exporter",
                             "--listen", "127.0.0.1:0", "--per-kernel"], env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT)
    try:
        t0 = time.monotonic()
        url = None
        while url is None:
            for line in log.read_text().splitlines():
                if "serving http" in line:
                    url = line.split("serving ", 1)[1].split()[0]
            if proc.poll() is not None or time.monotonic() - t0 > 60:
                raise SystemExit("the exporter did not start:\n" + log.read_text())
            time.sleep(0.05)
        client = httpx.Client(timeout=30)
        while True:  # until the first refresh is served
            body = client.get(url).text
            if "nbtui_kernel_info{" in body:
                break
            if time.monotonic() - t0 > 120:
                raise SystemExit("no kernels served within 120 s")
            time.sleep(0.1)
        first_s = time.monotonic() - t0
        n_info = sum(1 for f in text_string_to_metric_families(body) if f.name == "nbtui_kernel_info" for _ in f.samples)
        walls: dict[str, list[float]] = {"gzip": [], "identity": []}
        sizes = {}
        for i in range(SCRAPES):
            for enc in walls:
                t = time.perf_counter()  # request to the last byte, as sent (not decompressed here)
                with client.stream("GET", url, headers={"Accept-Encoding": enc}) as r:
                    got = sum(len(chunk) for chunk in r.iter_raw())
                walls[enc].append(time.perf_counter() - t)
                sizes[enc] = got
            time.sleep(0.02)
        rss = psutil.Process(proc.pid).memory_info().rss / 2**20
        return {"first_s": first_s, "series": n_info, "rss_mb": rss, "sizes": sizes,
                "gzip_ms": statistics.median(walls["gzip"]) * 1000,
                "identity_ms": statistics.median(walls["identity"]) * 1000,
                "lines": len(body.splitlines())}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _steady(fleets, wait) -> None:
    """Steady state: no notebook check falls due during the runs (they are cached a minute,
    and a run can outlast that on a busy machine), and the first read's checks (4,000
    requests, left running in the background by design) finished before anything is measured."""
    for f in fleets:
        f.notebooks.ttl = float("inf")
    t0 = time.monotonic()
    while any(e.nb_task is not None and not e.nb_task.done() for f in fleets for e in f._servers.values()):
        if time.monotonic() - t0 > 300:
            raise SystemExit("the first read's notebook checks did not finish within 300 s")
        await wait(0.1)


async def refresh_part(ports: list[int]) -> dict:
    """CPU of one steady-state refresh each, in one process: the exporter's (before and after
    the TUI, with no app alive, as it runs in production) and the real TUI's inside the app
    (its runner's read, then the screen's apply and the repaint)."""
    import dataclasses
    import gc

    from nbtui.files.config import ServerConfig, Settings
    from nbtui.exporter.metrics import Exporter, State, render
    from nbtui.service.fleet import Fleet
    from nbtui.tui.app import NbtuiApp
    from nbtui.tui.usage_history import History
    from nbtui.display.table_rows import rows_of
    from nbtui.tui.rows import CellCache

    def fleet():
        return Fleet([ServerConfig(name=f"s{i:02d}", url=f"http://127.0.0.1:{p}/", token_source="none")
                      for i, p in enumerate(ports)], Settings(timeout=10))

    async def exporter_runs(exporter, n):
        cpu, wall = [], []
        for _ in range(n):
            c, w = time.process_time(), time.perf_counter()
            await exporter.refresh_once()
            cpu.append(time.process_time() - c)
            wall.append(time.perf_counter() - w)
        return cpu, wall

    exporter = Exporter(fleet(), per_kernel=True)
    try:
        await exporter.refresh_once()
        await _steady([exporter.fleet], asyncio.sleep)
        mine, mine_wall = await exporter_runs(exporter, RUNS)

        app = NbtuiApp(fleet(), live=False)
        tui, tui_wall = [], []
        async with app.run_test(size=(160, 50)) as pilot:
            while app.snapshot is None:  # the app's own first read
                await pilot.pause(0.05)
            await pilot.pause()
            runner = app.runner
            await _steady([runner.fleet], pilot.pause)
            for _ in range(RUNS):
                c, w = time.process_time(), time.perf_counter()
                read = await runner.read()
                app.apply_snapshot(read.snapshot, read.index, read.cells, rows=read.rows)
                await pilot.pause()  # and the repaint that follows
                tui.append(time.process_time() - c)
                tui_wall.append(time.perf_counter() - w)
            layout = runner.layout
            assert layout is not None
        assert len(read.snapshot.kernels) == SERVERS * PER_SERVER
        del app, runner
        gc.collect()
        more, more_wall = await exporter_runs(exporter, RUNS)  # after: drift of the machine's load
        mine += more
        mine_wall += more_wall
        rendering = exporter.rendering
        assert rendering is not None and len(rendering.state.snapshot.kernels) == SERVERS * PER_SERVER

        # What each adds to the same fleet read: the exporter counts and renders; the TUI's
        # runner keeps the usage history, indexes the kernels and computes the rows' cells.
        snap = read.snapshot
        history, cache = History(), CellCache()
        first_rows = rows_of(snap)
        history.add(first_rows)
        cache.rows(first_rows, layout)
        own, theirs = [], []
        for _ in range(RUNS):
            fresh = dataclasses.replace(snap, kernels=tuple(dataclasses.replace(k) for k in snap.kernels))
            c = time.process_time()
            exporter.tracker.add(fresh, {})
            render(State(fresh, dict(exporter.tracker.restarts), {}, 1, 0, 1.0, "h"), True, exporter.kernel_lines)
            own.append(time.process_time() - c)
            c = time.process_time()
            fresh_rows = rows_of(fresh)
            history.add(fresh_rows)
            {r.key: r for r in fresh_rows}
            cache.rows(fresh_rows, layout)
            theirs.append(time.process_time() - c)
    finally:
        exporter.close()  # its fleet service: the read in flight cancelled, the clients closed
    return {"mine_ms": statistics.median(mine) * 1000, "tui_ms": statistics.median(tui) * 1000,
            "mine_wall_ms": statistics.median(mine_wall) * 1000, "tui_wall_ms": statistics.median(tui_wall) * 1000,
            "body_mb": len(rendering.body) / 2**20,
            "own_ms": statistics.median(own) * 1000, "theirs_ms": statistics.median(theirs) * 1000}


def serve_fake(counts: list[int]) -> None:
    """Child process: one fake Jupyter server per count (tests.fakehttp, mode liar), listing
    that many kernels (the first server's with sessions); their URLs on stdout, until stdin closes."""
    import uuid

    from tests.fakehttp import FakeHTTP

    servers = []
    for i, n in enumerate(counts):
        ids = [str(uuid.UUID(int=(i << 64) + k)) for k in range(n)]
        paths = {kid: f"work/{k % 97}/nb-{k}.ipynb" for k, kid in enumerate(ids)} if i == 0 else None
        servers.append(FakeHTTP("liar", kernels=ids, paths=paths).__enter__())
    print(json.dumps([s.url for s in servers]), flush=True)
    sys.stdin.read()
    for s in servers:
        s.__exit__(None, None, None)


def _series(body: str, name: str) -> int:
    return sum(1 for line in body.splitlines() if line.startswith(name + "{"))


def _value(body: str, name: str) -> float:
    return next(float(line.split()[-1]) for line in body.splitlines() if line.startswith(name + " "))


def _proc_kb(pid: int, field: str) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith(field + ":")) / 1024


def hostile_one(per_server: int, base: Path) -> dict:
    """The real exporter (its defaults: cap 1000, refresh 15 s) over two fake servers listing
    ``per_server`` kernels each: RSS right after a read, peak RSS, scrapes spread over one
    refresh interval (so some meet a read in flight), CPU per refresh, SIGTERM to exit."""
    import signal

    import httpx
    import psutil

    child = subprocess.Popen([sys.executable, __file__, "--serve-fake", str(per_server), str(per_server)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert child.stdin is not None and child.stdout is not None
    urls = json.loads(child.stdout.readline())
    cfg = base / f"cfg-{per_server}"
    cfg.mkdir()
    (cfg / "servers.toml").write_text("".join(
        f'[servers.s{i}]\nurl = "{u}"\ntoken = "none"\ntimeout = 60\n' for i, u in enumerate(urls)))
    env = dict(os.environ, NBTUI_CONFIG=str(cfg), JUPYTER_RUNTIME_DIR=str(base / "none"),
               NBTUI_STATE_DIR=str(cfg / "state"))
    log = cfg / "exporter.log"
    proc = subprocess.Popen([sys.executable, "-m", "nbtui", "--no-discover", "exporter", "--listen", "127.0.0.1:0",
                             "--per-kernel"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, cwd=ROOT)
    try:
        t0 = time.monotonic()
        url = None
        while url is None:
            url = next((ln.split("serving ", 1)[1].split()[0] for ln in log.read_text().splitlines()
                        if "serving http" in ln), None)
            if proc.poll() is not None or time.monotonic() - t0 > 60:
                raise SystemExit("the exporter did not start:\n" + log.read_text())
            time.sleep(0.05)
        client = httpx.Client(timeout=60)

        def after_refresh(n: int) -> str:
            while True:
                body = client.get(url).text
                if _series(body, "nbtui_kernels_over_cap") == 2 and _value(body, "nbtui_refreshes_total") >= n:
                    return body
                if time.monotonic() - t0 > 300:
                    raise SystemExit("the exporter did not refresh within 300 s:\n" + log.read_text()[-2000:])
                time.sleep(0.05)

        after_refresh(1)
        body = after_refresh(2)
        held = _proc_kb(proc.pid, "VmRSS")  # right after a read: what it keeps, not what it parses
        refresh_s = _value(body, "nbtui_refresh_duration_seconds")
        walls = []
        for _ in range(SCRAPES):  # spread over one refresh interval (15 s): some meet a read in flight
            t = time.perf_counter()
            with client.stream("GET", url, headers={"Accept-Encoding": "gzip"}) as r:
                for _chunk in r.iter_raw():
                    pass
            walls.append(time.perf_counter() - t)
            time.sleep(15 / SCRAPES)
        body = client.get(url).text
        refreshes = _value(body, "nbtui_refreshes_total")
        cpu = sum(psutil.Process(proc.pid).cpu_times()[:2])
        peak = _proc_kb(proc.pid, "VmHWM")
        t = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        stop_s = time.monotonic() - t
        over = sum(float(ln.split()[-1]) for ln in body.splitlines() if ln.startswith("nbtui_kernels_over_cap{"))
        return {"peak_mb": peak, "held_mb": held, "scrape_ms": statistics.median(walls) * 1000,
                "scrape_max_ms": max(walls) * 1000, "stop_s": stop_s, "cpu_s": cpu / refreshes, "refresh_s": refresh_s,
                "series": _series(body, "nbtui_kernel_info"), "over": over, "mb": len(body) / 2**20}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        child.stdin.close()
        child.wait(30)


def hostile_part(base: Path) -> tuple[dict, dict]:
    return hostile_one(HOSTILE_PER_SERVER, base), hostile_one(CAP, base)


def print_hostile(hostile: dict, honest: dict) -> None:
    n = 2 * HOSTILE_PER_SERVER
    for what, r, kernels in (("hostile", hostile, n), ("honest", honest, 2 * CAP)):
        print(f"exporter {what}: {kernels} kernels over 2 servers, cap {CAP}: {r['series']:.0f} nbtui_kernel_info "
              f"series, {r['over']:.0f} over the cap, scrape {r['mb']:.2f} MiB plain; RSS {r['held_mb']:.0f} MB right "
              f"after its second read, peak {r['peak_mb']:.0f} MB; a read {r['refresh_s']:.2f} s wall, {r['cpu_s']:.2f} s CPU "
              f"per refresh (all in); scrape wall (gzip) median {r['scrape_ms']:.1f} ms, max {r['scrape_max_ms']:.1f} ms "
              f"of {SCRAPES}; SIGTERM to exit {r['stop_s']:.2f} s")
    print(f"bench exporter-hostile-scrape: nbtui {hostile['scrape_ms']:.1f} ms per scrape at {n} kernels vs the same "
          f"exporter at the cap with honest servers {honest['scrape_ms']:.1f} ms, "
          f"ratio {hostile['scrape_ms'] / honest['scrape_ms']:.2f} (goal <= 1.5)")
    # The peak is the read itself: each server's answers are parsed whole (the REST client
    # caps them at max_body, 64 MiB a server) before the cap drops what is past it; the goal
    # allows that one parse above the honest exporter, never a copy held on after it.
    print(f"bench exporter-hostile-rss: nbtui {hostile['peak_mb']:.0f} MB peak RSS at {n} kernels vs the same exporter "
          f"at the cap with honest servers {honest['peak_mb']:.0f} MB, "
          f"ratio {hostile['peak_mb'] / honest['peak_mb']:.2f} (goal <= 1.5)")


def main() -> None:
    if sys.argv[1:2] == ["--serve-fake"]:
        serve_fake([int(a) for a in sys.argv[2:]])
        return
    base = Path(tempfile.mkdtemp(prefix="nbtui-bench-exporter-"))
    if sys.argv[1:2] == ["hostile"]:
        try:
            print_hostile(*hostile_part(base))
        finally:
            shutil.rmtree(base, ignore_errors=True)
        return
    child = subprocess.Popen([sys.executable, str(ROOT / "bench" / "tui.py"), "--serve", str(SERVERS), str(PER_SERVER)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    try:
        ports = json.loads(child.stdout.readline())
        scrape = scrape_part(ports, base)
        refresh = asyncio.run(refresh_part(ports))
    finally:
        child.stdin.close()
        child.wait(10)
    try:
        hostile, honest = hostile_part(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    n = SERVERS * PER_SERVER
    print(f"exporter {n} kernels over {SERVERS} servers, --per-kernel: {scrape['series']} nbtui_kernel_info series, "
          f"{scrape['lines']} lines, {scrape['sizes']['identity'] / 2**20:.1f} MiB plain / "
          f"{scrape['sizes']['gzip'] / 2**20:.2f} MiB gzip; first refresh served {scrape['first_s']:.1f} s after start")
    print(f"exporter scrape wall, median of {SCRAPES}: gzip {scrape['gzip_ms']:.1f} ms, plain {scrape['identity_ms']:.1f} ms")
    print(f"exporter refresh (median of {2 * RUNS}): CPU {refresh['mine_ms']:.0f} ms, wall {refresh['mine_wall_ms']:.0f} ms; "
          f"TUI refresh (median of {RUNS}): CPU {refresh['tui_ms']:.0f} ms, wall {refresh['tui_wall_ms']:.0f} ms; of which beyond the "
          f"fleet read: exporter (count, render, compress) {refresh['own_ms']:.0f} ms, TUI runner (history, index, "
          f"cells) {refresh['theirs_ms']:.0f} ms CPU (the TUI then applies it on its UI thread and repaints)")
    worst = max(scrape["gzip_ms"], scrape["identity_ms"])
    print(f"bench exporter-scrape: nbtui {worst:.1f} ms per scrape at {n} kernels vs limit 100 ms, "
          f"ratio {worst / 100:.2f} (goal <= 1)")
    print(f"bench exporter-rss: nbtui {scrape['rss_mb']:.0f} MB at {n} kernels vs limit 250 MB, "
          f"ratio {scrape['rss_mb'] / 250:.2f} (goal <= 1)")
    print(f"bench exporter-refresh: nbtui {refresh['mine_ms']:.0f} ms CPU per background refresh vs TUI refresh "
          f"{refresh['tui_ms']:.0f} ms, ratio {refresh['mine_ms'] / refresh['tui_ms']:.2f} (goal <= 1)")
    print_hostile(hostile, honest)


if __name__ == "__main__":
    main()
