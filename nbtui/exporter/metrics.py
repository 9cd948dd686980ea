"""The fleet as Prometheus metrics: a collector over the latest snapshot.

A background thread reads the fleet every ``refresh`` seconds (the same sources as the
TUI: REST reads and the local host, never a kernel's channels, so no kernel's
``last_activity`` or ``connections`` moves) and renders the exposition once per snapshot.
A scrape never waits for a server: it answers from the last rendering, plus
``nbtui_snapshot_age_seconds`` computed at the scrape.

Metric names follow the Prometheus conventions: prefix ``nbtui_``, base units (bytes,
seconds), ratios instead of percents, ``_total`` only on counters, descriptive strings in
``_info`` metrics. Per-kernel series (``--per-kernel``) are keyed by ``server`` and
``kernel_id`` (never a PID); a vanished kernel's series are gone from the next scrape.
Every label value from outside goes through ``nbtui.core.text.one_line``; two outside values
that read the same once sanitised give one series (the first), never a duplicate that
would make Prometheus refuse the whole scrape.

At hostile scale (a server listing 80,000 kernels) the exporter keeps at most
``max_kernels`` kernels of each server (``--max-kernels-per-server``): the rest are counted
at the read (by state, session type, idle) and dropped there, so what it holds — the read
itself (parsed one item at a time: nbtui.jupyter.capped), the snapshot, notebook checks,
per-kernel series — is bounded by the cap, not by what a server sends. ``nbtui_kernels_over_cap`` says
how many were not kept; the per-server counts stay exact.

A hub's own entry has no kernels and gets no kernel series; it gets the hub's own ones
(``nbtui_hub_*``: users, servers by state, each server's idle time as the hub sees it).

A value nobody measured is left out, never written as 0: a sum over kernels is written
when there is nothing to sum (0) or at least one part is known.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Iterator, Optional

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

from nbtui.core import model, orphans
from nbtui.service.fleet import Fleet, FleetHooks
from nbtui.service.service import FleetService, Reading
from nbtui.core.model import OverCap
from nbtui.core.text import one_line

DEFAULT_REFRESH = 15.0
DEFAULT_LISTEN = "127.0.0.1:9877"
DEFAULT_MAX_KERNELS = 1000  # kernels of one server kept (per-kernel series, usage, orphan rules)
READ_CONCURRENCY = 4  # servers read at once (Fleet.read_concurrency): 50 at once left ~90 MB of arenas behind
# A stop waits this long for the refresh thread (its cancelled read, the fleet's close and the
# hub tokens' revocation), then the process ends anyway: SIGTERM ends it within 2 s even when it
# lands in the parse of a 64 MiB answer (max_body), which holds the interpreter ~1 s here.
STOP_SECONDS = 0.5
LABEL_LIMIT = 200  # characters of one label value (notebook paths are cut with an ellipsis)
# Seconds one server's read took: REST reads on loopback take milliseconds, a hung server
# its whole timeout (5 s by default).
READ_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RESTART_STATES = ("restarting", "dead")
HOLDERS = ("kernels", "terminals", "leftovers", "other", "unattributed", "unassigned")
KERNEL_REASONS = (orphans.NO_SESSION, orphans.DISCONNECTED_IDLE, orphans.NOTEBOOK_MISSING)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# A hub user's server as the hub sees it (nbtui_hub_servers{state}).
HUB_STATES = ("ready", "pending-spawn", "pending-stop", "not-ready")
_INF = float("inf")


# The same names and paths come back every refresh: sanitise each once. A plain dict of
# strings (no objects for the cyclic GC to walk, unlike lru_cache's nodes), emptied when full.
_LABELS: dict[str, str] = {}
_LABELS_MAX = 1 << 16


def label(value: object) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    out = _LABELS.get(text)
    if out is None:
        if len(_LABELS) >= _LABELS_MAX:
            _LABELS.clear()
        out = _LABELS[text] = one_line(text, LABEL_LIMIT)
    return out


def _go(d: float) -> str:
    """A sample value as prometheus_client writes it (``floatToGoString``), finite ones inline."""
    if d != d or d in (_INF, -_INF):
        return floatToGoString(d)
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


def _known_sum(values: Iterable[Optional[float]]) -> Optional[float]:
    """Sum of the known values; 0 for no values; None when there are values and none is known."""
    values = list(values)
    known = [v for v in values if v is not None]
    if values and not known:
        return None
    return float(sum(known))


class _Sum:
    """A sum of the known values of ``n`` (``n`` counted by the caller, ``add`` per known one)."""

    __slots__ = ("n", "known", "total")

    def __init__(self) -> None:
        self.n = self.known = 0
        self.total = 0.0

    def add(self, v: float) -> None:
        self.known += 1
        self.total += v


def over_cap_of(rest: Iterable[model.Kernel], kept: int, threshold: float) -> OverCap:
    states: dict[model.KernelState, int] = {}
    types: dict[str, int] = {}
    n = idle = 0
    for k in rest:
        n += 1
        states[k.state] = states.get(k.state, 0) + 1
        if k.session is not None:
            types[k.session.type] = types.get(k.session.type, 0) + 1
        if orphans.kernel_is_idle(k, threshold):
            idle += 1
    return OverCap(kept, n, states, types, idle)


def cap_snapshot(snap: model.Snapshot, cap: Optional[int],
                 reported: Optional[dict[str, OverCap]] = None) -> tuple[model.Snapshot, dict[str, OverCap]]:
    """The snapshot with at most ``cap`` kernels per server (the first in the fleet's order:
    the longest idle), and what was left out of each. ``reported``: what the fleet already
    left out at its reads (``ExporterHooks``), taken where it still matches the snapshot."""
    reported = reported or {}
    by: dict[str, list[model.Kernel]] = {}
    for k in snap.kernels:
        by.setdefault(k.server, []).append(k)
    over: dict[str, OverCap] = {}
    trimmed = False
    for srv, ks in by.items():
        if cap is not None and len(ks) > cap:
            over[srv] = over_cap_of(ks[cap:], cap, snap.idle_threshold)
            by[srv] = ks[:cap]
            trimmed = True
    for s in snap.servers:
        r = reported.get(s.name)
        if s.ok and s.name not in over and r is not None and r.kept == len(by.get(s.name, ())):
            over[s.name] = r
    if trimmed:
        snap = replace(snap, kernels=tuple(k for ks in by.values() for k in ks))
    return snap, over


class ExporterHooks(FleetHooks):
    """The exporter's reads (public fleet hooks): each server's read timed (for the
    histogram), and at most ``cap`` kernels of a server kept from its read on, the longest
    idle, each list read one item at a time so that memory follows the cap (``over_cap``
    counts the rest, by server)."""

    def __init__(self, cap: Optional[int] = None) -> None:
        self.cap = cap
        self.read_seconds: dict[str, float] = {}
        self.over_cap: dict[str, OverCap] = {}

    def kernel_cap(self, server: str) -> Optional[int]:
        return self.cap

    def counted_over_cap(self, server: str, over: Optional[OverCap]) -> None:
        if over is None:
            self.over_cap.pop(server, None)
        else:
            self.over_cap[server] = over

    def server_read(self, server: str, seconds: float) -> None:
        self.read_seconds[server] = seconds


@dataclass
class _Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * len(READ_BUCKETS))
    count: int = 0
    total: float = 0.0

    def observe(self, value: float) -> None:
        for i, le in enumerate(READ_BUCKETS):
            if value <= le:
                self.buckets[i] += 1
        self.count += 1
        self.total += value

    def family_rows(self) -> list[tuple[str, float]]:
        return [(repr(le), float(n)) for le, n in zip(READ_BUCKETS, self.buckets)] + [("+Inf", float(self.count))]


@dataclass(frozen=True)
class State:
    """What one rendering is made of: a snapshot and the counters kept across refreshes."""

    snapshot: model.Snapshot
    restarts: dict[str, int]  # server -> state changes to restarting/dead seen
    reads: dict[str, tuple[list[tuple[str, float]], float]]  # server -> (buckets, sum)
    refreshes: int
    refresh_errors: int
    refresh_seconds: float
    hostname: str
    over_cap: dict[str, OverCap] = field(default_factory=dict)  # server -> its kernels not kept


class Tracker:
    """Counters across refreshes: kernel restarts and per-server read durations."""

    def __init__(self) -> None:
        self._states: dict[str, model.KernelState] = {}  # kernel key (server:id) -> last state seen
        self.restarts: dict[str, int] = {}
        self.reads: dict[str, _Histogram] = {}

    def add(self, snap: model.Snapshot, read_seconds: dict[str, float]) -> None:
        for s in snap.servers:
            if not is_hub_row(s):  # a hub's own entry has no kernels to restart
                self.restarts.setdefault(s.name, 0)
            took = read_seconds.get(s.name)
            if took is None and s.latency_ms is not None:  # a fleet that does not time its reads
                took = s.latency_ms / 1000
            if took is not None:
                self.reads.setdefault(s.name, _Histogram()).observe(took)
        states, now = self._states, {}
        for k in snap.kernels:
            key = k.key  # the kernel's own (a kept kernel's, made once)
            before = states.get(key)
            if before is not None and before != k.state and k.state in RESTART_STATES and before not in RESTART_STATES:
                self.restarts[k.server] = self.restarts.get(k.server, 0) + 1
            now[key] = k.state
        # Forget kernels their server no longer lists; keep those of a server that failed
        # this time, so a blip does not make their next state look like a change.
        failed = {s.name + ":" for s in snap.servers if not s.ok}
        if failed:
            for key, state in states.items():
                if key not in now and any(key.startswith(f) for f in failed):
                    now[key] = state
        self._states = now


def is_hub_row(s: model.ServerInfo) -> bool:
    """A hub's own entry (its users' servers are entries of their own)."""
    return s.source == "hub" and s.user is None


def hub_state(s: model.ServerInfo) -> str:
    """A hub user's server as the hub lists it: a spawn or stop pending, ready, or neither
    (the hub's listing gives it no route then: nbtui.jupyter.hub)."""
    if s.pending in ("spawn", "stop"):
        return "pending-" + s.pending
    return "ready" if s.route is not None else "not-ready"


def _sample_families(state: State, per_kernel: bool) -> Iterator[Metric]:
    snap = state.snapshot
    servers = snap.servers
    ok = [s for s in servers if s.ok and not is_hub_row(s)]  # servers with kernels
    over = state.over_cap
    by_server: dict[str, list[model.Kernel]] = {s.name: [] for s in servers}
    for k in snap.kernels:
        by_server.setdefault(k.server, []).append(k)
    threshold = snap.idle_threshold

    up = GaugeMetricFamily("nbtui_up", "Whether the last read of the server succeeded (1) or not (0).",
                           labels=["server"])
    info = GaugeMetricFamily("nbtui_server_info", "A Jupyter server nbtui reads; descriptive labels, value 1.",
                             labels=["server", "version", "source"])
    for s in servers:
        up.add_metric([label(s.name)], 1.0 if s.ok else 0.0)
        info.add_metric([label(s.name), label(s.version), label(s.source)], 1.0)
    error = GaugeMetricFamily("nbtui_server_error", "Why the last read of the server failed (1 per failed server).",
                              labels=["server", "kind"])
    for s in servers:
        if not s.ok:
            error.add_metric([label(s.name), label(s.error_kind or s.status)], 1.0)
    yield up
    yield info
    yield error

    kernels = GaugeMetricFamily("nbtui_kernels", "Kernels of the server by execution state.",
                                labels=["server", "state"])
    sessions = GaugeMetricFamily("nbtui_sessions", "Sessions bound to a kernel of the server, by type.",
                                 labels=["server", "type"])
    idle = GaugeMetricFamily(
        "nbtui_kernels_idle", "Kernels idle past the idle threshold (nbtui_idle_threshold_seconds).",
        labels=["server"])
    idle_mem = GaugeMetricFamily("nbtui_kernels_idle_memory_bytes",
                                 "Memory (RSS of the process tree) held by kernels idle past the threshold.",
                                 labels=["server"])
    idle_gpu = GaugeMetricFamily("nbtui_kernels_idle_gpu_memory_bytes",
                                 "GPU memory held by kernels idle past the threshold.", labels=["server"])
    kmem = GaugeMetricFamily("nbtui_kernels_memory_bytes", "Memory held by all kernels of the server (known ones).",
                             labels=["server"])
    kgpu = GaugeMetricFamily("nbtui_kernels_gpu_memory_bytes", "GPU memory held by all kernels of the server (known ones).",
                             labels=["server"])
    over_fam = GaugeMetricFamily(
        "nbtui_kernels_over_cap",
        "Kernels of the server beyond --max-kernels-per-server: in the counts above, but with no per-kernel "
        "series, usage (memory sums leave them out) or orphan verdict.", labels=["server"])
    for s in ok:  # one pass over each server's kernels
        name = label(s.name)
        counts = dict.fromkeys(model.KERNEL_STATES, 0)
        types: dict[str, int] = {}
        n_idle = 0
        idle_m, idle_g, all_mem, all_gpu = _Sum(), _Sum(), _Sum(), _Sum()
        o = over.get(s.name)
        if o is not None:  # counted at the read, not kept: their usage is unknown
            for st, n in o.states.items():
                counts[st] = counts.get(st, 0) + n
            for t, n in o.types.items():
                types[t] = types.get(t, 0) + n
            n_idle += o.idle
            all_mem.n += o.n
            all_gpu.n += o.n
            idle_m.n += o.idle
            idle_g.n += o.idle
        over_fam.add_metric([name], float(o.n if o is not None else 0))
        idle_now = orphans.kernel_is_idle  # the one idle rule (past the threshold, not busy)
        for k in by_server.get(s.name, ()):
            counts[k.state] = counts.get(k.state, 0) + 1
            if k.session is not None:
                types[k.session.type] = types.get(k.session.type, 0) + 1
            u = k.usage
            mem = gmem = None
            if u is not None:
                mem, gmem = u.memory_bytes, u.gpu_memory_bytes
            all_mem.n += 1
            all_gpu.n += 1
            if mem is not None:
                all_mem.add(mem)
            if gmem is not None:
                all_gpu.add(gmem)
            if idle_now(k, threshold):
                n_idle += 1
                idle_m.n += 1
                idle_g.n += 1
                if mem is not None:
                    idle_m.add(mem)
                if gmem is not None:
                    idle_g.add(gmem)
        for st, n in counts.items():
            kernels.add_metric([name, label(st)], float(n))
        by_type: dict[str, int] = {}
        for t, n in types.items():  # two raw types may read the same once sanitised
            by_type[label(t)] = by_type.get(label(t), 0) + n
        for t, n in sorted(by_type.items()):
            sessions.add_metric([name, t], float(n))
        idle.add_metric([name], float(n_idle))
        for fam, total in ((idle_mem, idle_m), (idle_gpu, idle_g), (kmem, all_mem), (kgpu, all_gpu)):
            if total.known or not total.n:  # unknown when there were kernels and none was measured
                fam.add_metric([name], total.total)
    yield from (kernels, sessions, idle, idle_mem, idle_gpu, kmem, kgpu, over_fam)
    yield from _hub_families(snap)

    thr = GaugeMetricFamily("nbtui_idle_threshold_seconds", "Idle time past which a kernel counts as idle.")
    thr.add_metric([], float(threshold))
    yield thr

    # Terminals: only where the snapshot lists some (a server nobody asked has none listed).
    terms = GaugeMetricFamily("nbtui_terminals", "Jupyter terminals of the server.", labels=["server"])
    tmem = GaugeMetricFamily("nbtui_terminals_memory_bytes", "Memory held by the terminals' process trees.",
                             labels=["server"])
    t_by: dict[str, list[model.Terminal]] = {}
    for term in snap.terminals:
        t_by.setdefault(term.server, []).append(term)
    for srv, ts in sorted(t_by.items()):
        terms.add_metric([label(srv)], float(len(ts)))
        v = _known_sum(term.usage.memory_bytes if term.usage else None for term in ts)
        if v is not None:
            tmem.add_metric([label(srv)], v)
    yield terms
    yield tmem

    yield from _orphan_families(snap, ok, by_server)
    yield from _gpu_families(snap, state.hostname)

    restarts = CounterMetricFamily(
        "nbtui_kernel_restarts", "Kernel state changes to restarting or dead seen across refreshes.",
        labels=["server"])
    for srv, n in sorted(state.restarts.items()):
        restarts.add_metric([label(srv)], float(n))
    yield restarts

    reads = HistogramMetricFamily("nbtui_server_read_duration_seconds",
                                  "Seconds one read of the server took (its kernels and sessions).",
                                  labels=["server"])
    for srv, (rows, seconds) in sorted(state.reads.items()):
        reads.add_metric([label(srv)], rows, seconds)
    yield reads

    refreshes = CounterMetricFamily("nbtui_refreshes", "Fleet snapshots taken by this exporter.")
    refreshes.add_metric([], float(state.refreshes))
    yield refreshes
    errors = CounterMetricFamily("nbtui_refresh_errors", "Refreshes that failed (the last snapshot stays served).")
    errors.add_metric([], float(state.refresh_errors))
    yield errors
    took = GaugeMetricFamily("nbtui_refresh_duration_seconds", "Seconds the last refresh took (every server read).")
    took.add_metric([], state.refresh_seconds)
    yield took

    if per_kernel:
        yield from _kernel_families(snap.kernels)


def _hub_families(snap: model.Snapshot) -> Iterator[Metric]:
    """The hubs' own series: of each hub whose listing succeeded, its users, its users'
    servers by state, and each server's idle time from the hub's ``last_activity``."""
    users = GaugeMetricFamily("nbtui_hub_users", "Users of the hub with a server it lists as active "
                              "(running, or a spawn or stop pending).", labels=["hub"])
    servers = GaugeMetricFamily("nbtui_hub_servers", "Users' servers of the hub by state: ready, pending-spawn, "
                                "pending-stop, not-ready.", labels=["hub", "state"])
    idle = GaugeMetricFamily("nbtui_hub_server_idle_seconds", "Seconds since the hub's last_activity of a user's "
                             "server (the hub's proxy and the server report it; absent when the hub gives none).",
                             labels=["hub", "user", "server_name"])
    now = snap.generated_at
    for h in snap.servers:
        if not (is_hub_row(h) and h.ok):  # a hub not listed this time: its figures are unknown
            continue
        hub = label(h.name)
        mine = [s for s in snap.servers if s.source == "hub" and s.hub == h.name and s.user is not None]
        users.add_metric([hub], float(len({s.user for s in mine})))
        by_state = dict.fromkeys(HUB_STATES, 0)
        for s in mine:
            by_state[hub_state(s)] += 1
        for st, n in by_state.items():
            servers.add_metric([hub, st], float(n))
        seen = set()
        for s in mine:
            key = (label(s.user), label(s.server_name))
            if s.hub_last_activity is None or key in seen:  # two hostile names that read the same: once
                continue
            seen.add(key)
            idle.add_metric([hub, *key], max(0.0, (now - s.hub_last_activity).total_seconds()))
    yield from (users, servers, idle)


def _orphan_families(snap: model.Snapshot, ok: list[model.ServerInfo],
                     by_server: dict[str, list[model.Kernel]]) -> Iterator[Metric]:
    count = GaugeMetricFamily("nbtui_orphans", "Orphans by reason: kernels and terminals of a server, and local "
                              "leftover processes (server \"\", kind process). One orphan may have several reasons.",
                              labels=["server", "kind", "reason"])
    mem = GaugeMetricFamily("nbtui_orphans_memory_bytes", "Memory held by orphans (each counted once).",
                            labels=["server", "kind"])
    gpu = GaugeMetricFamily("nbtui_orphans_gpu_memory_bytes", "GPU memory held by orphans (each counted once).",
                            labels=["server", "kind"])
    for s in ok:
        name = label(s.name)
        ks = [k for k in by_server.get(s.name, []) if k.orphan_reasons]
        reasons = dict.fromkeys(KERNEL_REASONS, 0)
        for k in ks:
            for r in k.orphan_reasons:
                reasons[r] = reasons.get(r, 0) + 1
        for r, n in reasons.items():
            count.add_metric([name, "kernel", label(r)], float(n))
        for fam, attr in ((mem, "memory_bytes"), (gpu, "gpu_memory_bytes")):
            v = _known_sum(getattr(k.usage, attr) if k.usage else None for k in ks)
            if v is not None:
                fam.add_metric([name, "kernel"], v)
    terms: dict[str, list[model.Terminal]] = {}
    for t in snap.terminals:
        if t.orphan_reasons:
            terms.setdefault(t.server, []).append(t)
    for srv, ts in sorted(terms.items()):
        reasons = {}
        for t in ts:
            for r in t.orphan_reasons:
                reasons[r] = reasons.get(r, 0) + 1
        for r, n in sorted(reasons.items()):
            count.add_metric([label(srv), "terminal", label(r)], float(n))
        for fam, attr in ((mem, "memory_bytes"), (gpu, "gpu_memory_bytes")):
            v = _known_sum(getattr(t.usage, attr) if t.usage else None for t in ts)
            if v is not None:
                fam.add_metric([label(srv), "terminal"], v)
    procs = [p for p in snap.processes if p.orphan_reasons]
    reasons = {}
    for p in procs:
        for r in p.orphan_reasons:
            reasons[r] = reasons.get(r, 0) + 1
    for r, n in sorted(reasons.items()):
        count.add_metric(["", "process", label(r)], float(n))
    for fam, attr in ((mem, "memory_bytes"), (gpu, "gpu_memory_bytes")):
        v = _known_sum(getattr(p, attr) for p in procs)
        if v is not None:
            fam.add_metric(["", "process"], v)
    yield from (count, mem, gpu)


def _gpu_families(snap: model.Snapshot, hostname: str) -> Iterator[Metric]:
    keys = ["host", "gpu"]
    info = GaugeMetricFamily("nbtui_gpu_info", "A GPU nbtui sees (a MIG instance is one: gpu=\"0/1/0\", its own "
                             "uuid); descriptive labels, value 1.", labels=keys + ["uuid", "name"])
    used = GaugeMetricFamily("nbtui_gpu_memory_used_bytes", "GPU memory in use (NVML).", labels=keys)
    total = GaugeMetricFamily("nbtui_gpu_memory_total_bytes", "GPU memory in all (NVML).", labels=keys)
    util = GaugeMetricFamily("nbtui_gpu_utilization_ratio", "GPU utilisation, 0 to 1 (NVML).", labels=keys)
    idle = GaugeMetricFamily("nbtui_gpu_idle_kernel_memory_bytes",
                             "GPU memory held by kernels idle past the threshold.", labels=keys)
    parts = GaugeMetricFamily(
        "nbtui_gpu_memory_bytes", "Who holds the GPU's used memory (the parts sum to nbtui_gpu_memory_used_bytes).",
        labels=keys + ["holder"])
    for d in snap.gpus:
        k = [label(d.host or hostname), label(d.label)]
        info.add_metric(k + [label(d.uuid), label(d.name)], 1.0)
        for fam, v in ((used, d.memory_used), (total, d.memory_total), (idle, d.idle_kernel_memory),
                       (util, None if d.utilization is None else d.utilization / 100)):
            if v is not None:
                fam.add_metric(k, float(v))
        if d.ledger is not None:
            for h in HOLDERS:
                parts.add_metric(k + [h], float(getattr(d.ledger, h)))
    yield from (info, used, total, util, idle, parts)


KERNEL_FAMILIES = (  # name, help; the labels are server and kernel_id (+ the ones named)
    ("nbtui_kernel_info", "A kernel; descriptive labels, value 1."),
    ("nbtui_kernel_memory_bytes", "Memory (RSS) of the kernel's process tree."),
    ("nbtui_kernel_cpu_ratio", "CPU of the kernel's process tree, in cores (1 = one core busy)."),
    ("nbtui_kernel_gpu_memory_bytes", "GPU memory of the kernel's process tree on one GPU."),
    ("nbtui_kernel_idle_seconds", "Seconds since the kernel's last activity."),
)


def _kernel_families(kernels: Iterable[model.Kernel]) -> Iterator[Metric]:
    keys = ["server", "kernel_id"]
    (n_info, h_info), (n_mem, h_mem), (n_cpu, h_cpu), (n_gpu, h_gpu), (n_idle, h_idle) = KERNEL_FAMILIES
    info = GaugeMetricFamily(n_info, h_info, labels=keys + ["notebook", "user", "process_user", "kernel_name"])
    mem = GaugeMetricFamily(n_mem, h_mem, labels=keys)
    cpu = GaugeMetricFamily(n_cpu, h_cpu, labels=keys)
    gpu = GaugeMetricFamily(n_gpu, h_gpu, labels=keys + ["gpu"])
    idle = GaugeMetricFamily(n_idle, h_idle, labels=keys)
    seen = set()
    for k in kernels:
        key = [label(k.server), label(k.kernel_id)]
        if tuple(key) in seen:  # two hostile ids that read the same once sanitised: the first
            continue
        seen.add(tuple(key))
        info.add_metric(key + [label(k.session.path if k.session else ""), label(k.user), label(k.process_user),
                               label(k.kernel_name)], 1.0)
        u = k.usage
        if u is not None:
            if u.memory_bytes is not None:
                mem.add_metric(key, float(u.memory_bytes))
            if u.cpu_percent is not None:
                cpu.add_metric(key, u.cpu_percent / 100)
            for g in u.gpus:
                if g.memory_bytes is not None:
                    gpu.add_metric(key + [label(g.label)], float(g.memory_bytes))
        if k.idle_seconds is not None:
            idle.add_metric(key, float(k.idle_seconds))
    yield from (info, mem, cpu, gpu, idle)


def _esc(value: str) -> str:
    """A label value as the text format quotes it (prometheus_client's own escaping)."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


class KernelLines:
    """The per-kernel part of the text exposition, written directly and byte for byte as
    prometheus_client's ``generate_latest`` writes ``_kernel_families`` (a test holds the
    two equal): at 5,000 kernels the generic path costs more than the fleet read itself.
    The label part of each kernel is kept from one rendering to the next."""

    def __init__(self) -> None:
        # server:kernel id -> (notebook, (user, process user), kernel name, info line, key labels, line prefixes)
        self._kept: dict[str, tuple] = {}

    @staticmethod
    def _labels(k: model.Kernel, about: tuple) -> tuple:
        kid, srv = _esc(label(k.kernel_id)), _esc(label(k.server))
        info = (f'nbtui_kernel_info{{kernel_id="{kid}",kernel_name="{_esc(label(about[2]))}",'
                f'notebook="{_esc(label(about[0]))}",process_user="{_esc(label(about[1][1]))}",'
                f'server="{srv}",user="{_esc(label(about[1][0]))}"}} 1.0\n')
        ids = f'kernel_id="{kid}",server="{srv}"'
        return (info, ids, f"nbtui_kernel_memory_bytes{{{ids}}} ", f"nbtui_kernel_cpu_ratio{{{ids}}} ",
                f"nbtui_kernel_idle_seconds{{{ids}}} ")

    def render(self, kernels: Iterable[model.Kernel]) -> str:
        kept, now = self._kept, {}
        info, mem, cpu, gpu, idle = [], [], [], [], []
        seen: set[str] = set()
        go = _go
        for k in kernels:
            key = k.key  # the kernel's own (a kept kernel's, made once)
            s = k.session
            path = s.path if s is not None else ""
            entry = kept.get(key)
            who = (k.user, k.process_user)
            if entry is None or entry[0] != path or entry[1] != who or entry[2] != k.kernel_name:
                entry = (path, who, k.kernel_name, *self._labels(k, (path, who, k.kernel_name)))
            if entry[4] in seen:  # two hostile ids that read the same once sanitised: the first
                continue
            seen.add(entry[4])
            now[key] = entry
            info.append(entry[3])
            u = k.usage
            if u is not None:
                if u.memory_bytes is not None:
                    mem.append(f"{entry[5]}{go(float(u.memory_bytes))}\n")
                if u.cpu_percent is not None:
                    cpu.append(f"{entry[6]}{go(u.cpu_percent / 100)}\n")
                for g in u.gpus:
                    if g.memory_bytes is not None:
                        gpu.append(f'nbtui_kernel_gpu_memory_bytes{{gpu="{_esc(label(g.label))}",{entry[4]}}} '
                                   f'{go(float(g.memory_bytes))}\n')
            if k.idle_seconds is not None:
                idle.append(f"{entry[7]}{go(float(k.idle_seconds))}\n")
        self._kept = now  # only kernels that still exist stay
        out = []
        for (name, doc), lines in zip(KERNEL_FAMILIES, (info, mem, cpu, gpu, idle)):
            out.append(f"# HELP {name} {doc}\n# TYPE {name} gauge\n")
            out.extend(lines)
        return "".join(out)


class SnapshotCollector:
    """A prometheus_client collector over the latest state (``state()`` returns it, or None)."""

    def __init__(self, state: Callable[[], Optional[State]], *, per_kernel: bool = False,
                 with_age: bool = True, wall: Callable[[], float] = time.time):
        self.state = state
        self.per_kernel = per_kernel
        self.with_age = with_age
        self.wall = wall

    def collect(self) -> Iterator[Metric]:
        st = self.state()
        if st is not None:
            yield from _sample_families(st, self.per_kernel)
        if self.with_age:
            yield age_family(st, self.wall())


def age_family(st: Optional[State], now: float) -> GaugeMetricFamily:
    age = GaugeMetricFamily("nbtui_snapshot_age_seconds",
                            "Seconds since the snapshot served was taken (absent before the first one).")
    if st is not None:
        age.add_metric([], max(0.0, now - st.snapshot.generated_at.timestamp()))
    return age


@dataclass(frozen=True)
class Rendering:
    """One state rendered once: the text exposition (without the age), and the same body
    gzip-compressed up to a compressor that a scrape copies to add the age and finish."""

    state: State
    body: bytes
    gz_head: bytes
    gz: zlib._Compress  # a zlib compress object (gzip framing) that has taken ``body``, never flushed

    def gzipped(self, tail: bytes) -> bytes:
        c = self.gz.copy()
        return self.gz_head + c.compress(tail) + c.flush()


def render(state: State, per_kernel: bool, kernel_lines: Optional[KernelLines] = None) -> Rendering:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: state, per_kernel=False, with_age=False))
    body = generate_latest(registry)
    if per_kernel:  # the per-kernel families come last in the collector's order too
        body += (kernel_lines or KernelLines()).render(state.snapshot.kernels).encode("utf-8")
    gz = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return Rendering(state, body, gz.compress(body), gz)


def scrape_tail(rendering: Optional[Rendering], now: Optional[float] = None) -> bytes:
    """The part of a scrape computed at the scrape itself: the snapshot's age."""
    registry = CollectorRegistry(auto_describe=False)
    st = rendering.state if rendering else None
    registry.register(_Fixed([age_family(st, time.time() if now is None else now)]))
    return generate_latest(registry)


class _Fixed:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def _give_back_freed_memory() -> None:
    """glibc: the heap's free pages back to the system after a refresh (``malloc_trim``):
    the answers parsed and dropped leave ~9 MB there at 50,000 kernels, held until the next
    refresh. Elsewhere (musl, macOS): nothing."""
    global _trim
    if _trim is None:
        try:
            import ctypes

            _trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            _trim = False
    if _trim:
        _trim(0)


_trim: Any = None  # glibc's malloc_trim, once looked up (False: none here)


class Exporter:
    """Refreshes the fleet on its own thread and keeps the latest rendering."""

    def __init__(self, fleet: Fleet, *, refresh: float = DEFAULT_REFRESH, per_kernel: bool = False,
                 max_kernels: Optional[int] = DEFAULT_MAX_KERNELS,
                 log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)):
        # A copy of the fleet with the exporter's hooks: the cap holds from each server's read on.
        self.hooks = ExporterHooks(max_kernels)
        self.fleet = fleet
        if isinstance(fleet, Fleet):
            self.fleet = fleet.copy(hooks=self.hooks)
            self.fleet.read_concurrency = READ_CONCURRENCY  # a few servers' answers parsed at once: a steady RSS
        # The fleet service reads it on a loop of its own: whole reads only, every server waited
        # for up to its own timeout (a scrape shows one consistent snapshot).
        self.service: FleetService[Reading] = FleetService(self.fleet, partials=False, hold_back=None)
        self.max_kernels = max_kernels
        self.refresh = refresh
        self.per_kernel = per_kernel
        self.log = log
        self.tracker = Tracker()
        self.kernel_lines = KernelLines()
        self.hostname = socket.gethostname()
        self.rendering: Optional[Rendering] = None
        self.refreshes = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._first = threading.Event()
        self._task: Optional[tuple[asyncio.AbstractEventLoop, asyncio.Task]] = None

    # -- the refresh thread ---------------------------------------------------------------

    def start(self) -> "Exporter":
        # A scrape is served from a rendering made already, on the HTTP server's thread; what
        # delays it is the refresh thread holding the interpreter (a hostile server's long list
        # parsed item by item). A shorter switch interval hands it over sooner (5 ms -> 1 ms).
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
        self._thread = threading.Thread(target=self._run, name="nbtui-exporter-refresh", daemon=True)
        self._thread.start()
        return self

    def wait_first(self, timeout: float) -> bool:
        return self._first.wait(timeout)

    def stop(self, timeout: float = STOP_SECONDS) -> bool:
        """Stop refreshing: a refresh under way is cancelled (at its next await), not waited
        for, and the fleet service ends. Whether both threads ended within ``timeout``, as a
        whole."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        task = self._task
        if task is not None:
            try:
                task[0].call_soon_threadsafe(task[1].cancel)
            except RuntimeError:  # its loop has closed: the thread is ending anyway
                pass
        ended = True
        if self._thread is not None:
            self._thread.join(timeout)
            ended = not self._thread.is_alive()
        return self.close(max(0.0, deadline - time.monotonic())) and ended

    def close(self, timeout: float = 3.0) -> bool:
        """The fleet service stops: a read under way is cancelled, the fleet's clients close;
        whether it ended within ``timeout``."""
        return self.service.close(timeout)

    def __enter__(self) -> "Exporter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        try:
            asyncio.run(self._loop())
        except asyncio.CancelledError:
            pass

    async def _loop(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._task = (asyncio.get_running_loop(), task)
        if self._stop.is_set():  # stopped before the loop began
            return
        while not self._stop.is_set():
            started = time.monotonic()
            await self.refresh_once()
            self._first.set()
            rest = self.refresh - (time.monotonic() - started)
            while rest > 0 and not self._stop.is_set():
                await asyncio.sleep(min(rest, 0.25))
                rest = self.refresh - (time.monotonic() - started)

    async def refresh_once(self) -> Optional[Rendering]:
        """One snapshot of every server, counted and rendered; the last one stays on failure."""
        t0 = time.monotonic()
        try:
            reported = self.hooks.over_cap
            snap, over = cap_snapshot((await self.service.read()).snapshot, self.max_kernels, reported)
            if reported:  # servers gone from the fleet (a hub's users come and go) are forgotten
                for name in set(reported) - {s.name for s in snap.servers}:
                    del reported[name]
            self.tracker.add(snap, dict(self.hooks.read_seconds))
            self.refreshes += 1
            state = replace(self._state(snap, time.monotonic() - t0), over_cap=over)
            self.rendering = render(state, self.per_kernel, self.kernel_lines)
            _give_back_freed_memory()
        except Exception as e:  # keep serving the last snapshot; say why
            self.errors += 1
            from nbtui.files.secrets import redact
            self.log(f"nbtui exporter: refresh failed: {redact(f'{type(e).__name__}: {e}')}")
            if self.rendering is not None:  # the same snapshot, with the error counted
                st = self.rendering.state
                self.rendering = render(replace(st, refresh_errors=self.errors), self.per_kernel)
        return self.rendering

    def _state(self, snap: model.Snapshot, took: float) -> State:
        return State(
            snapshot=snap,
            restarts=dict(self.tracker.restarts),
            reads={s: (h.family_rows(), h.total) for s, h in self.tracker.reads.items()},
            refreshes=self.refreshes,
            refresh_errors=self.errors,
            refresh_seconds=took,
            hostname=self.hostname,
        )

    # -- a scrape ---------------------------------------------------------------------------

    def scrape(self, gzip_ok: bool = False) -> tuple[bytes, bool]:
        """The exposition now: the latest rendering and the age (never waits for a server).
        With gzip, the rendering's compressed body is reused: only the tail is compressed."""
        r = self.rendering
        tail = scrape_tail(r)
        if r is None:
            return tail, False
        if gzip_ok:
            return r.gzipped(tail), True
        return r.body + tail, False

    def collector(self) -> SnapshotCollector:
        """A collector for a registry of one's own (renders at every collect)."""
        return SnapshotCollector(lambda: self.rendering.state if self.rendering else None,
                                 per_kernel=self.per_kernel)
