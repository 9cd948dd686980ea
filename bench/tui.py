"""Benchmark: the fleet screen, as a new user meets it and at fleet scale.

Run from the repository root: `python bench/tui.py` (needs tmux for parts 1 and 3, and pip
able to build the project's wheel for part 1). BENCH_TUI_PARTS picks the parts (default
"1,2,3"; e.g. BENCH_TUI_PARTS=1 for the first row alone), BENCH_RUNS the runs of each side.

1. Start to first populated table, as a new user meets it: the real `nbtui` in tmux on one
   real local server with 10 kernels, from process start to the first kernel row in
   `capture-pane`, in four set-ups: {discovered through the server's runtime file with no
   config, configured in servers.toml with the token from the environment} x {a fresh `pip
   install` of the project's wheel, `python -m nbtui` in a checkout without bytecode} (see
   ``first_rows``). Interleaved with them, in the same tmux, a hello-world Textual app from
   process start to its first paint (the peer: what any Textual app costs before it draws
   anything). The last line is the worst set-up's ratio.
2. 5,000 kernels over 20 servers (generated REST data, served by a child process): the
   whole-process CPU (every thread: rows and cells built, applied, repainted; the read itself
   is bench/scale.py's) of one refresh where 1 % of the cells change (cells updated in place),
   its UI-thread part
   against rebuilding the table from scratch in the same run; and the RSS of the process.
3. `nbtui demo` in tmux, from Enter to its first notebook row on screen, against a bare
   jupyter_server's start to its first answer (`/api/status`), runs interleaved in the same
   run (the demo has to start such a server and kernels before a row can exist).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import setting  # noqa: E402

SERVERS, PER_SERVER = 20, 250
RUNS = setting("BENCH_RUNS", 5, int)


# -- part 1: start to first row, in a real terminal ---------------------------------------

HELLO = """
from textual.app import App
from textual.widgets import Static


class Hello(App):
    def compose(self):
        yield Static("hello-world-first-paint")


Hello().run()
"""


def tmux_once(base: Path, tag: str, command: str, env: dict, seen, cwd: Path | None = None) -> float:
    """Seconds from starting ``command`` in a fresh 100x30 tmux (started in ``cwd``) to
    ``seen(screen)``. Easy to reuse for another measure."""
    tmux = shutil.which("tmux")
    if tmux is None:
        raise SystemExit("bench tui needs tmux for the start-to-first-row measure")
    sock = str(Path(tempfile.mkdtemp(prefix=f"tmux-{tag}-", dir=base)) / "s")  # a fresh tmux server each run
    where = ["-c", str(cwd)] if cwd is not None else []
    t0 = time.perf_counter()
    for attempt in range(3):  # tmux's own start can race on a busy machine
        r = subprocess.run([tmux, "-S", sock, "new-session", "-d", "-x", "100", "-y", "30", "-s", "b", *where,
                            command], env=env, capture_output=True, text=True)
        if r.returncode == 0:
            break
        subprocess.run([tmux, "-S", sock, "kill-server"], capture_output=True)
        t0 = time.perf_counter()
    else:
        raise SystemExit(f"tmux failed: {r.stderr.strip()}")
    try:
        while True:
            screen = subprocess.run([tmux, "-S", sock, "capture-pane", "-p", "-t", "b"],
                                    capture_output=True, text=True).stdout
            if seen(screen):
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > 30:
                raise SystemExit(f"{tag}: nothing within 30 s:\n" + screen)
            time.sleep(0.01)
    finally:
        subprocess.run([tmux, "-S", sock, "kill-server"], capture_output=True)


def _terminal_env(**extra: str) -> dict:
    """The bench's environment for a started app: no PYTHONPATH (each set-up finds its own
    nbtui), a colour terminal, and ``extra``."""
    env = dict(os.environ, TERM="xterm-256color", **extra)
    for name in ("NO_COLOR", "PYTHONPATH", "NBTUI_DEBUG"):
        env.pop(name, None)
    return env


def hello_side(base: Path):
    script = base / "hello.py"
    script.write_text(HELLO)
    env = _terminal_env()
    return lambda: tmux_once(base, "hello", f"{sys.executable} {script}", env,
                             lambda screen: "hello-world-first-paint" in screen)


def installed_nbtui(base: Path) -> Path:
    """``nbtui`` as a fresh ``pip install`` of the project's wheel leaves it: the wheel built
    from this tree (pip's isolated build), installed with ``--no-deps`` into a venv made here,
    whose dependencies are this interpreter's (a .pth line adds its site-packages after the
    venv's own, so the wheel's nbtui is the one found). pip compiles the bytecode as it
    installs, as for any user. Returns the venv's ``nbtui`` command."""
    import sysconfig

    wheels = base / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = wheels.glob("*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "bench-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--quiet", "--no-deps",
                    str(wheel)], check=True, capture_output=True)
    found = subprocess.run([str(py), "-c", "import nbtui; print(nbtui.__file__)"], check=True,
                           capture_output=True, text=True, env=_terminal_env(), cwd=base).stdout.strip()
    if not found.startswith(str(venv)):
        raise SystemExit(f"the bench's venv imports nbtui from {found}, not from its wheel")
    return venv / "bin" / "nbtui"


def checkout_copy(base: Path) -> Path:
    """A copy of the source tree as a fresh clone has it: the sources, no __pycache__."""
    dest = base / "checkout"
    dest.mkdir()
    for name in ("nbtui", "themes"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    return dest


# The four set-ups a new user meets: how nbtui is had (a wheel, a checkout) x how it finds the
# server (its runtime file, a servers.toml with the token in the environment).
SETUPS = ("installed discovered", "installed configured", "checkout discovered", "checkout configured")


def first_rows(base: Path) -> dict[str, list[float]]:
    """Part 1: start to the first kernel row for every set-up, and the hello-world app's first
    paint, interleaved run by run (``bench.common.interleaved``) in the same tmux.

    One real jupyter_server with 10 kernels. Discovered: JUPYTER_RUNTIME_DIR is the server's
    runtime folder and no server is configured. Configured: servers.toml names the server with
    ``token_env``, the runtime folder is empty. Both run plain ``nbtui``, with
    NBTUI_ROOT_DISCOVERY=0: these machines run as root, and root's discovery would also read
    every other user's (and other jobs') servers on the host; a new user's is their own.
    Installed: the venv's ``nbtui`` command (``installed_nbtui``). Checkout: ``python -m nbtui``
    in a copy of the sources without bytecode, with PYTHONDONTWRITEBYTECODE=1: every start
    compiles nbtui's modules, as the first start of a fresh clone does (its dependencies are
    installed, their bytecode written by pip)."""
    from bench.common import interleaved
    from tests.jupyter import JupyterServer

    nbtui_cmd = installed_nbtui(base)
    checkout = checkout_copy(base)
    server = JupyterServer(base / "srv", name="srv").start()
    try:
        ids = [server.start_kernel() for _ in range(10)]
        needles = {i[:8] for i in ids}
        empty_cfg, cfg, none = base / "cfg-empty", base / "cfg", base / "none"
        for d in (empty_cfg, cfg, none):
            d.mkdir()
        (cfg / "servers.toml").write_text(
            f'[servers.srv]\nurl = "{server.url}"\ntoken = "env"\ntoken_env = "BENCH_TUI_TOKEN"\n')
        common = dict(NBTUI_ROOT_DISCOVERY="0", NBTUI_STATE_DIR=str(base / "state"))
        envs = {
            "discovered": _terminal_env(NBTUI_CONFIG=str(empty_cfg), JUPYTER_RUNTIME_DIR=str(server.runtime_dir),
                                        **common),
            "configured": _terminal_env(NBTUI_CONFIG=str(cfg), BENCH_TUI_TOKEN=server.token,
                                        JUPYTER_RUNTIME_DIR=str(none), **common),
        }
        commands = {"installed": (str(nbtui_cmd), base), "checkout": (f"{sys.executable} -m nbtui", checkout)}

        def side(setup: str):
            how, found = setup.split()
            command, cwd = commands[how]
            env = dict(envs[found], PYTHONDONTWRITEBYTECODE="1") if how == "checkout" else envs[found]
            return lambda: tmux_once(base, setup.replace(" ", "-"), command, env,
                                     lambda screen: any(n in screen for n in needles), cwd=cwd)

        sides = {"hello": hello_side(base), **{s: side(s) for s in SETUPS}}
        return interleaved(sides, RUNS)
    finally:
        server.stop()


# -- part 3: `nbtui demo` against a bare jupyter_server ------------------------------------

DEMO_RUNS = setting("BENCH_DEMO_RUNS", 3, int)


def _marked(marker: str) -> list[int]:
    import psutil

    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(marker in a for a in p.info["cmdline"] or ()):
                out.append(p.info["pid"])
        except (psutil.Error, TypeError):
            pass
    return out


def bare_server_start(base: Path) -> float:
    """Start to first answer of a plain jupyter_server, configured as the demo's is."""
    import secrets

    import httpx

    from tests.jupyter import free_port

    root = Path(tempfile.mkdtemp(prefix="bare-", dir=base))
    for d in ("root", "runtime", "config", "data"):
        (root / d).mkdir()
    port, token = free_port(), secrets.token_hex(24)
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(root / "runtime"), JUPYTER_CONFIG_DIR=str(root / "config"),
               JUPYTER_DATA_DIR=str(root / "data"), JUPYTER_PLATFORM_DIRS="1", JUPYTER_TOKEN=token)
    args = [sys.executable, "-m", "jupyter_server", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={root / 'root'}", "--ServerApp.open_browser=False"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--allow-root")
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    try:
        with httpx.Client(headers={"Authorization": f"token {token}"}, timeout=1) as c:
            while time.perf_counter() - t0 < 60:
                try:
                    if c.get(f"http://127.0.0.1:{port}/api/status").status_code == 200:
                        return time.perf_counter() - t0
                except httpx.HTTPError:
                    pass
                time.sleep(0.01)
        raise SystemExit("the bare jupyter_server did not answer within 60 s")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def demo_first_row(base: Path) -> float:
    """`nbtui demo` in tmux: Enter to the first notebook row on screen. Then the terminal is
    closed (SIGHUP) and the run waits until the demo's own processes are gone."""
    tmux = shutil.which("tmux")
    if tmux is None:
        raise SystemExit("bench tui needs tmux for the demo measure")
    mine = Path(tempfile.mkdtemp(prefix="demo-", dir=base))  # the demo's folder lands here: our marker
    cfg = mine / "cfg"
    cfg.mkdir()
    env = dict(os.environ, NBTUI_CONFIG=str(cfg), TMPDIR=str(mine), JUPYTER_RUNTIME_DIR=str(mine / "none"),
               NBTUI_STATE_DIR=str(mine / "state"), TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    sock = str(mine / "tmux.sock")
    t0 = time.perf_counter()
    r = subprocess.run([tmux, "-S", sock, "new-session", "-d", "-x", "100", "-y", "30", "-s", "b",
                        f"{sys.executable} -m nbtui demo --no-discover"], env=env, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"tmux failed: {r.stderr.strip()}")
    try:
        while True:
            screen = subprocess.run([tmux, "-S", sock, "capture-pane", "-p", "-t", "b"],
                                    capture_output=True, text=True).stdout
            if ".ipynb" in screen:
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > 90:
                raise SystemExit("no demo notebook row within 90 s:\n" + screen)
            time.sleep(0.01)
    finally:
        subprocess.run([tmux, "-S", sock, "kill-server"], capture_output=True)
        deadline = time.perf_counter() + 30
        while _marked(str(mine)) and time.perf_counter() < deadline:
            time.sleep(0.1)


def demo_vs_bare(base: Path) -> tuple[list[float], list[float]]:
    demo, bare = [], []
    bare_server_start(base)  # warm the file cache for both
    for _ in range(DEMO_RUNS):  # interleaved: both see the same load
        bare.append(bare_server_start(base))
        demo.append(demo_first_row(base))
    return demo, bare


# -- part 2: a generated fleet ------------------------------------------------------------

def serve(n_servers: int, per_server: int) -> None:
    """Child process: n fake Jupyter REST APIs on loopback; prints their ports, serves forever."""
    rng = random.Random(7)
    now = time.time()
    ports = []
    for s in range(n_servers):
        kernels, sessions = [], []
        for i in range(per_server):
            kid = f"{s:04x}{i:04x}-{rng.getrandbits(16):04x}-4000-8000-{rng.getrandbits(48):012x}"
            t = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(now - rng.randint(0, 5 * 86400)))
            kernels.append({"id": kid, "name": "python3", "last_activity": t,
                            "execution_state": rng.choice(["idle", "idle", "idle", "busy"]),
                            "connections": rng.randint(0, 2)})
            if i % 5:
                path = f"team{s}/user{i % 17}/project-{i}/notebook-{i}.ipynb"
                sessions.append({"id": f"s-{kid}", "path": path, "name": path.rsplit('/', 1)[-1],
                                 "type": "notebook", "kernel": {"id": kid}})
        bodies = {"/api/kernels": json.dumps(kernels).encode(), "/api/sessions": json.dumps(sessions).encode(),
                  "/api": b'{"version": "2.21.1"}', "/api/status": b"{}",
                  "/api/contents": b'{"type": "notebook", "name": "n.ipynb"}'}

        class Handler(BaseHTTPRequestHandler):
            data = bodies

            def log_message(self, *a):
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                if path.startswith("/api/contents/"):  # the fleet's notebook-missing check
                    path = "/api/contents"
                body = self.data.get(path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        ports.append(httpd.server_address[1])
    print(json.dumps(ports), flush=True)
    sys.stdin.read()  # until the parent closes it


def changed(snap, share: float, rng: random.Random):
    """The same snapshot with about ``share`` of the table's cells changed (state, CPU, MEM)."""
    from nbtui.core.model import Usage
    kernels = list(snap.kernels)
    n_cells = len(kernels) * 11
    for i in rng.sample(range(len(kernels)), max(1, int(n_cells * share / 3))):  # 3 cells each
        k = kernels[i]
        kernels[i] = dataclasses.replace(
            k, state="busy" if k.state != "busy" else "idle",
            usage=Usage(source="local", cpu_percent=rng.uniform(1, 99), memory_bytes=rng.randint(2**20, 2**34)))
    return dataclasses.replace(snap, kernels=tuple(kernels))


async def fleet_scale(ports: list[int]) -> dict:
    import psutil

    from nbtui.files.config import ServerConfig, Settings
    from nbtui.service.fleet import Fleet
    from nbtui.service.service import Reading
    from nbtui.tui.app import NbtuiApp
    fleet = Fleet([ServerConfig(name=f"s{i:02d}", url=f"http://127.0.0.1:{p}/", token_source="none")
                   for i, p in enumerate(ports)], Settings(timeout=10))
    app = NbtuiApp(fleet, live=False)
    out: dict = {}
    async with app.run_test(size=(160, 50)) as pilot:
        t0 = time.perf_counter()
        while app.snapshot is None:
            await pilot.pause(0.01)
        out["first_read_s"] = time.perf_counter() - t0
        await pilot.pause()
        t0 = time.perf_counter()
        await app.runner.read()  # a steady-state read (the notebook checks are cached a minute)
        out["second_read_s"] = time.perf_counter() - t0
        base = app.snapshot
        assert len(base.kernels) == SERVERS * PER_SERVER, len(base.kernels)
        screen = app.fleet_screen
        assert screen is not None
        rng = random.Random(1)
        snaps, snap = [], base
        for _ in range(RUNS * 4):  # each one 1 % of cells away from the one before
            snap = changed(snap, 0.01, rng)
            snaps.append(snap)

        def read_of(snap):
            # The rows, the kernels-by-key index, the usage history, the rows' cells and the
            # summary's counts are made on the fleet service's thread in the app (the runner's
            # _finish, its prepare hook), right before the screen shows them; here too, outside
            # the timed UI work.
            read = app.runner._finish(Reading(snap))
            return snap, read.index, read.cells, read.rows, read.counts

        # CPU time of the UI thread (time.thread_time): the apply and the repaint that
        # follows, without the idle wait for the next frame and without the fleet service's thread.
        # Also the whole process's CPU (time.process_time: every thread) from the rows and cells
        # being built to the repaint; the read itself (HTTP, parsing) is bench/scale.py's scale-tui-cpu.
        incremental, rebuild, whole = [], [], []
        for snap in snaps:
            p = time.process_time()
            snap, index, cells, table_rows, counts = read_of(snap)
            t = time.thread_time()
            screen.apply_snapshot(snap, index, cells, table_rows, counts=counts)  # what the UI thread does on each refresh
            await pilot.pause()  # and the repaint that follows
            incremental.append(time.thread_time() - t)
            whole.append(time.process_time() - p)
        for snap in snaps[:RUNS]:
            snap, index, cells, table_rows, counts = read_of(snap)
            t = time.thread_time()
            screen.table.set_layout(screen.table.col_layout, screen._labels())
            screen.apply_snapshot(snap, index, cells, table_rows, counts=counts)  # every row added again
            await pilot.pause()
            rebuild.append(time.thread_time() - t)
        out["incremental_ms"] = statistics.median(incremental) * 1000
        out["rebuild_ms"] = statistics.median(rebuild) * 1000
        out["whole_ms"] = statistics.median(whole) * 1000
        out["rss_mb"] = psutil.Process().memory_info().rss / 2**20
        out["rows"] = len(screen.table.order)
    return out


PARTS = set(os.environ.get("BENCH_TUI_PARTS", "1,2,3").replace(" ", "").split(","))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), int(sys.argv[3]))
        return
    from bench.common import NOISY, spread

    rows: dict[str, list[float]] = {}
    demo_times: list[float] = []
    bare_times: list[float] = []
    scale: dict = {}
    base = Path(tempfile.mkdtemp(prefix="nbtui-bench-tui-"))
    try:
        if "1" in PARTS:
            rows = first_rows(base)
        if "3" in PARTS:
            demo_times, bare_times = demo_vs_bare(base)
        if "2" in PARTS:
            child = subprocess.Popen([sys.executable, __file__, "--serve", str(SERVERS), str(PER_SERVER)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert child.stdin is not None and child.stdout is not None
            try:
                ports = json.loads(child.stdout.readline())
                scale = asyncio.run(fleet_scale(ports))
            finally:
                child.stdin.close()
                child.wait(10)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    n = SERVERS * PER_SERVER
    print(NOISY)
    if scale:
        print(f"tui {n} kernels over {SERVERS} servers: first read {scale['first_read_s'] * 1000:.0f} ms "
              f"(with one notebook check per session), next read {scale['second_read_s'] * 1000:.0f} ms "
              f"(both off the UI thread), {scale['rows']} rows")
    if demo_times:
        demo_t, bare_t = statistics.median(demo_times), statistics.median(bare_times)
        # Each demo run follows its own bare-server run under the same load: the ratio is the
        # median of those pairs' ratios (the medians alone mix runs minutes apart).
        pair_ratio = statistics.median(d / b for d, b in zip(demo_times, bare_times))
        print(f"demo first notebook row, tmux 100x30 (runs: {', '.join(f'{t:.2f}' for t in demo_times)} s) vs a "
              f"bare jupyter_server's first answer (runs: {', '.join(f'{t:.2f}' for t in bare_times)} s), "
              f"interleaved; ratio of the medians {demo_t / bare_t:.2f}")
        print(f"bench demo-first-row: nbtui {demo_t:.2f} s vs jupyter_server {bare_t:.2f} s, "
              f"ratio {pair_ratio:.2f} (goal <= 1.4)")
    if scale:
        print(f"bench tui-rss: nbtui {scale['rss_mb']:.0f} MB at {n} kernels vs limit 250 MB, "
              f"ratio {scale['rss_mb'] / 250:.2f} (goal <= 1)")
        print(f"tui refresh, 1 % of cells changed: UI thread {scale['incremental_ms']:.1f} ms CPU; the whole "
              f"process (every thread), rows and cells built, applied, repainted: {scale['whole_ms']:.1f} ms CPU "
              f"(the read itself not included: bench/scale.py's scale-tui-cpu counts it)")
        print(f"bench tui-refresh-ms: nbtui {scale['whole_ms']:.1f} ms whole-process CPU per refresh (1 % of cells "
              f"changed) vs limit 30 ms, ratio {scale['whole_ms'] / 30:.2f} (goal <= 1)")
        print(f"bench tui-refresh: nbtui {scale['incremental_ms']:.1f} ms (cells updated in place) vs table rebuilt "
              f"from scratch {scale['rebuild_ms']:.1f} ms, ratio {scale['incremental_ms'] / scale['rebuild_ms']:.2f} "
              f"(goal <= 0.25)")
    if not rows:
        return
    # Measures added later print above these: the first row's ratio stays the last line.
    hellos = rows.pop("hello")
    hello = statistics.median(hellos)
    ratios = {s: statistics.median(rows[s]) / hello for s in SETUPS}
    for s in SETUPS:
        print(f"tui start to first kernel row, {s}, 1 server x 10 kernels, tmux 100x30: "
              f"{spread(rows[s], 1000, '.0f')} ms, ratio {ratios[s]:.2f}")
    worst = max(SETUPS, key=lambda s: ratios[s])
    start = statistics.median(rows[worst])
    print(f"bench tui-start: nbtui {start:.2f} s ({worst}) vs limit 1.00 s, ratio {start:.2f} (goal <= 1)")
    print(f"hello-world Textual app first paint, same tmux, interleaved: {spread(hellos, 1000, '.0f')} ms")
    print(f"bench tui-first-row: nbtui {start:.2f} s (worst of 4 set-ups: {worst}) vs hello-world Textual app "
          f"{hello:.2f} s, ratio {ratios[worst]:.2f} (goal <= 1.6)")


if __name__ == "__main__":
    main()
