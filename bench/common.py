"""What several benchmarks measure the same way: a command's wall time (median of runs), a
command's wall time, peak RSS and CPU over its whole process tree (``measure``), A/B runs
interleaved (``interleaved``), a median with its spread (``spread``), a scratch folder removed
at the end (``scratch``), and jupyter_client's ``1+1`` round trip over ZMQ, the peer of every
console benchmark."""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, TypeVar

T = TypeVar("T")
N = TypeVar("N", int, float)

NOISY = "this machine has 2 cores shared with other jobs: figures are noisy; medians, their spread (min-max) in brackets"


def setting(name: str, default: N, kind: Callable[[str], N], least: N = 1) -> N:
    """A benchmark's setting from the environment (``BENCH_RUNS=3``); one that is not a
    finite number of at least ``least`` ends the benchmark with a one-line error (exit 2)
    before anything runs."""
    raw = os.environ.get(name, "").strip()
    return _number(name, raw, kind, least) if raw else default


def sizes(name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """Whole numbers from the environment, apart by spaces or commas (``BENCH_SIZES=100,1000``)."""
    raw = os.environ.get(name, "").replace(",", " ").split()
    return tuple(_number(name, n, int, 1) for n in raw) if raw else default


def _number(name: str, raw: str, kind: Callable[[str], N], least: N) -> N:
    try:
        value = kind(raw)
        if math.isfinite(value) and value >= least:
            return value
    except ValueError:
        pass
    print(f"bench: {name}: {raw!r} is not a {'whole ' if kind is int else ''}number of at least {least}", file=sys.stderr)
    raise SystemExit(2)


@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary folder, removed with all it holds when the block ends (also on error)."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@dataclass(frozen=True)
class Run:
    """One run of a command in a fresh child: wall seconds, peak RSS in bytes (the largest
    process of its tree, ``ru_maxrss`` of RUSAGE_CHILDREN), CPU seconds of the whole tree
    (every thread, every child waited for: user + system), and its exit code."""
    wall: float
    rss: int
    cpu: float
    rc: int


# Runs argv[2:] with stdout to argv[1] (a file, or "-" for /dev/null) and prints JSON: its wall
# time, and the rusage of its finished tree. A fresh measuring process per run, so that
# RUSAGE_CHILDREN holds this one command's tree alone.
_MEASURE = (
    "import json, resource, subprocess, sys, time\n"
    "out = open(sys.argv[1], 'wb') if sys.argv[1] != '-' else subprocess.DEVNULL\n"
    "t = time.perf_counter()\n"
    "r = subprocess.run(sys.argv[2:], stdout=out, stderr=subprocess.PIPE)\n"
    "dt = time.perf_counter() - t\n"
    "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "print(json.dumps({'rc': r.returncode, 'wall': dt, 'rss': u.ru_maxrss * 1024,\n"
    "                  'cpu': u.ru_utime + u.ru_stime, 'err': r.stderr.decode(errors='replace')[-500:]}))\n"
)


def measure(cmd: list[str], env: dict, stdout: Optional[Path] = None, ok: tuple[int, ...] = (0,),
            cwd: Optional[Path] = None) -> Run:
    """``cmd`` run once in a fresh measuring child (see ``Run``); its stdout goes to ``stdout``
    (or nowhere). An exit code outside ``ok`` ends the benchmark with the command's stderr."""
    r = subprocess.run([sys.executable, "-c", _MEASURE, str(stdout) if stdout else "-", *cmd], env=env,
                       capture_output=True, text=True, check=True, cwd=cwd)
    d = json.loads(r.stdout)
    if d["rc"] not in ok:
        raise SystemExit(f"{' '.join(cmd)} exited {d['rc']}: {d['err'].strip()}")
    return Run(d["wall"], d["rss"], d["cpu"], d["rc"])


def interleaved(sides: dict[str, Callable[[], T]], runs: int, warm: bool = True) -> dict[str, list[T]]:
    """``runs`` results of each side, taken in rounds A B, B A, A B, ... (each round's order
    reversed from the one before), so a machine whose speed drifts moves every side alike. With
    ``warm``, one uncounted run of each first (file cache, bytecode)."""
    names = list(sides)
    if warm:
        for name in names:
            sides[name]()
    out: dict[str, list[T]] = {n: [] for n in names}
    for i in range(runs):
        for name in (names if i % 2 == 0 else names[::-1]):
            out[name].append(sides[name]())
    return out


def spread(xs: list[float], scale: float = 1.0, fmt: str = ".2f") -> str:
    """``median (min-max, n runs)``, each value times ``scale``."""
    return (f"{statistics.median(xs) * scale:{fmt}} ({min(xs) * scale:{fmt}}-{max(xs) * scale:{fmt}}, "
            f"{len(xs)} runs)")


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` and every descendant alive now, with the
    children each has already waited for: every thread of every process in the tree."""
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:  # ended meanwhile: its parent's children_* hold it once waited for
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def timed(cmd: list[str], env: dict) -> float:
    """Seconds ``cmd`` took; it must exit 0 or 4 (some servers unread, on purpose)."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode not in (0, 4):
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return dt


def median_of(cmd: list[str], env: dict, runs: int) -> float:
    """The median of ``runs`` runs, after one that warms the file cache."""
    timed(cmd, env)
    return statistics.median(timed(cmd, env) for _ in range(runs))


def zmq_rtts(connection_file: Path, n: int) -> list[float]:
    """``n`` round trips of ``1+1`` through jupyter_client over ZMQ (after one warm-up)."""
    from jupyter_client import BlockingKernelClient

    kc = BlockingKernelClient(connection_file=str(connection_file))
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        kc.execute_interactive("1+1", output_hook=lambda m: None, timeout=30)
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            kc.execute_interactive("1+1", output_hook=lambda m: None, timeout=30)
            out.append(time.perf_counter() - t0)
        return out
    finally:
        kc.stop_channels()


async def channel_rtts(url: str, token: str | None, kid: str, n: int) -> list[float]:
    """``n`` round trips of ``1+1`` through nbtui's own kernel channels (after one warm-up)."""
    from nbtui.jupyter.channels import WebsocketChannels
    from nbtui.jupyter.rest import ServerClient
    async with ServerClient("bench", url, token) as client:
        async with WebsocketChannels(client, kid) as ch:
            await (await ch.execute("1+1")).wait()
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                await (await ch.execute("1+1")).wait()
                out.append(time.perf_counter() - t0)
            return out
