"""Pure rules: what in a fleet snapshot is left over, and why.

Reason names are the CLI contract's: no-session, disconnected-idle, notebook-missing,
server-gone, kernel-gone. Sources report facts (a host view: is a process's server alive,
is its kernel); every reason, kernel and process, is decided here, and ``is_idle`` is the
one idle rule that orphans, cull, the GPU summary, ``ls`` and the TUI all count by.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, replace
from typing import Iterable, Mapping, Optional, TypeVar

from nbtui.core import model
from nbtui.core.model import GpuUse, Kernel, Process, Terminal
from nbtui.core.units import human_bytes, human_duration

NO_SESSION = "no-session"
DISCONNECTED_IDLE = "disconnected-idle"
NOTEBOOK_MISSING = "notebook-missing"
SERVER_GONE = "server-gone"
KERNEL_GONE = "kernel-gone"


def is_idle(idle_seconds: Optional[float], state: Optional[str], threshold: float) -> bool:
    """The one idle rule: idle for a known time at or past ``threshold``, and not busy.

    Unknown idle time is never idle. Orphans (``disconnected-idle``), cull, the GPU
    summary's idle memory, ``ls``'s summary and the TUI's all count by it.
    """
    return idle_seconds is not None and idle_seconds >= threshold and state != "busy"


def kernel_is_idle(kernel: Kernel, threshold: float) -> bool:
    return is_idle(kernel.idle_seconds, kernel.state, threshold)


def idle_kernels(kernels: Iterable[Kernel], threshold: float) -> list[Kernel]:
    """The kernels ``kernel_is_idle`` says are idle, their idle times as of one clock reading
    (a summary of 5,000 kernels reads the clock once, not once each)."""
    now = model.clock()
    if threshold <= 0:  # (every known idle time is at or past it)
        return [k for k in kernels if k.seen_at is not None and k.state != "busy"]
    # (model.idle_since and is_idle, inline: asked of every kernel on every refresh; with a
    # threshold above 0, ``max(0.0, now - seen) >= threshold`` is ``now - seen >= threshold``)
    return [k for k in kernels if (seen := k.seen_at) is not None and now - seen >= threshold and k.state != "busy"]


def kernel_reasons(
    kernel: Kernel,
    *,
    idle_threshold: float,
    own_connections: int = 0,
    notebook_exists: Optional[bool] = None,
    now: Optional[float] = None,
) -> tuple[str, ...]:
    """Reasons a kernel of a reachable server is an orphan (empty: it is not).

    ``own_connections`` are nbtui's own websockets to the kernel, which do not count as
    someone being connected. ``notebook_exists`` is None when nobody checked. ``now``: the
    clock reading its idle time is as of (a read judging many kernels reads it once).
    """
    reasons: list[str] = []
    if kernel.session is None:
        reasons.append(NO_SESSION)
    if kernel.connections is not None and kernel.connections - own_connections <= 0:
        seen = kernel.seen_at
        if seen is not None and is_idle(max(0.0, (model.clock() if now is None else now) - seen), kernel.state,
                                        idle_threshold):
            reasons.append(DISCONNECTED_IDLE)
    if kernel.session is not None and notebook_exists is False:
        reasons.append(NOTEBOOK_MISSING)
    return tuple(reasons)


def orphans_only(kernels: Iterable[Kernel]) -> tuple[Kernel, ...]:
    return tuple(k for k in kernels if k.orphan_reasons)


def process_reasons(*, server_alive: Optional[bool], kernel_alive: Optional[bool]) -> tuple[str, ...]:
    """Reasons a local Jupyter process outside every live kernel is left over.

    ``server_alive``: whether the server that launched it (JPY_PARENT_PID or its runtime
    file) still runs; ``kernel_alive``: whether the kernel it belongs to still runs and a
    reachable server lists it. None means unknown, which is never a reason.
    """
    reasons: list[str] = []
    if server_alive is False:
        reasons.append(SERVER_GONE)
    if kernel_alive is False:
        reasons.append(KERNEL_GONE)
    return tuple(reasons)


@dataclass(frozen=True)
class ProcessFacts:
    """What a host knows of a leftover Jupyter process; None: nobody can say.

    ``server_alive``: whether the server that launched it (JPY_PARENT_PID or its runtime
    file) still runs; ``kernel_alive``: whether the kernel it belongs to still runs and a
    reachable server lists it.
    """

    server_alive: Optional[bool] = None
    kernel_alive: Optional[bool] = None


def judge_processes(processes: Iterable[Process], facts: Mapping[int, ProcessFacts]) -> tuple[Process, ...]:
    """The processes with their orphan reasons, from the host's facts (by PID)."""
    out = []
    for p in processes:
        f = facts.get(p.pid)
        reasons = process_reasons(server_alive=f.server_alive, kernel_alive=f.kernel_alive) if f else ()
        out.append(replace(p, orphan_reasons=reasons) if reasons != p.orphan_reasons else p)
    return tuple(out)


# -- notebook-missing: which sessions are checked, and how often (nbtui.jupyter.notebooks) ------

NOTEBOOK_CHECK_TTL = 60.0
CHECKED_SESSION_TYPES = ("notebook", "file")


def session_checkable(kernel: Kernel) -> bool:
    """Whether a kernel's session names a file worth checking (not a console's pseudo path)."""
    s = kernel.session
    return s is not None and bool(s.path) and s.type in CHECKED_SESSION_TYPES


# -- stale runtime files ------------------------------------------------------------------------

_KERNEL_FILE = re.compile(r"kernel-([0-9A-Za-z-]+)\.json$")


def kernel_file_id(path: str) -> Optional[str]:
    m = _KERNEL_FILE.search(path.replace("\\", "/").rsplit("/", 1)[-1])
    return m.group(1) if m else None


def stale_kernel_files(
    files: Iterable[str], *, live_kernel_ids: Iterable[str], running_kernel_ids: Iterable[str]
) -> tuple[str, ...]:
    """Kernel connection files that nothing uses any more.

    A file is stale when no live kernel of a reachable server has its id and no running
    local process names it on its command line (``running_kernel_ids``).
    """
    keep = set(live_kernel_ids) | set(running_kernel_ids)
    return tuple(sorted(f for f in files if (kid := kernel_file_id(f)) is not None and kid not in keep))


# -- explanations, built from the same data as the reasons --------------------------------------

REASON_TEXT = {
    NO_SESSION: "no session (no notebook or console) refers to it",
    DISCONNECTED_IDLE: "no client connected and idle for {idle}",
    NOTEBOOK_MISSING: "no notebook file at {path} on the server",  # it may never have existed
    SERVER_GONE: "its Jupyter server{server} is gone",
    KERNEL_GONE: "its kernel{kernel} is gone",
}


def _gpu_text(gpu_bytes: Optional[int], gpus: Iterable[GpuUse]) -> Optional[str]:
    gpus = [g for g in gpus if g.memory_bytes]
    if gpus:
        parts = [f"{human_bytes(g.memory_bytes)} on GPU {g.label}" for g in gpus]
        return "holds " + ", ".join(parts)
    if gpu_bytes:
        return f"holds {human_bytes(gpu_bytes)} of GPU memory"
    return None


def explain_kernel(kernel: Kernel) -> str:
    """One line for the user: why this kernel is listed as an orphan, and what it holds."""
    if not kernel.orphan_reasons:
        return ""
    where = kernel.session.path if kernel.session else "no session"
    parts = []
    for r in kernel.orphan_reasons:
        if r == DISCONNECTED_IDLE:
            parts.append(REASON_TEXT[r].format(idle=human_duration(kernel.idle_seconds)))
        elif r == NOTEBOOK_MISSING:
            parts.append(REASON_TEXT[r].format(path=where))
        elif r == GPU_IDLE:
            parts.append(REASON_TEXT[r].format(idle=human_duration(kernel.gpu_idle_seconds)))
        else:
            parts.append(REASON_TEXT.get(r, r))
    text = f"kernel {kernel.kernel_id[:8]} ({where}) on server {kernel.server}: " + "; ".join(parts)
    u = kernel.usage
    held = _gpu_text(u.gpu_memory_bytes, u.gpus) if u else None
    if held:
        text += f"; {held}"
    return text


def explain_process(p: Process) -> str:
    """``child of kernel 80442938 (gpu.ipynb) on server pid 420, which is gone; holds 1.5G on GPU 0``."""
    is_kernel = bool(p.kernel_id) and f"kernel-{p.kernel_id}.json" in p.cmdline
    if p.kernel_id:
        text = f"{'kernel' if is_kernel else 'child of kernel'} {p.kernel_id[:8]}"
    else:
        text = "Jupyter process"
    if p.notebook:
        text += f" ({p.notebook})"
    if p.hub_user:  # a single-user server's: named by its hub user (and server, where known)
        text += f" of hub user {p.hub_user}'s server" + (f" {p.hub_server}" if p.hub_server else (
            f" {p.hub_server_name}" if p.hub_server_name else ""))
        text += f" (pid {p.server_pid})" if p.server_pid is not None else ""
    elif p.server_pid is not None:
        text += f" on server pid {p.server_pid}"
    if p.server_pid is not None or p.hub_user:
        if SERVER_GONE in p.orphan_reasons:
            text += ", which is gone"
    elif SERVER_GONE in p.orphan_reasons:
        text += "; its server is gone"
    if KERNEL_GONE in p.orphan_reasons:
        text += "; no server lists this kernel" if is_kernel else "; the kernel is gone"
    held = _gpu_text(p.gpu_memory_bytes, p.gpus)
    if held:
        text += f"; {held}"
        if GPU_IDLE in p.orphan_reasons:
            text += f" at 0 % SM for {human_duration(p.gpu_idle_seconds)}"
    elif p.memory_bytes:
        text += f"; holds {human_bytes(p.memory_bytes)} of memory"
    return text


# -- terminals and gpu-idle (holders beyond kernels) -----------------------------------------

TERMINAL_IDLE = "terminal-idle"
GPU_IDLE = "gpu-idle"
REASON_TEXT[TERMINAL_IDLE] = "a terminal idle for {idle} whose processes hold GPU memory"
REASON_TEXT[GPU_IDLE] = "holds GPU memory at 0 % SM utilisation for {idle}"


def terminal_reasons(terminal: Terminal, *, idle_threshold: float) -> tuple[str, ...]:
    """A terminal idle past the threshold (no input or output) with a GPU-holding job is
    reported like an idle kernel. Unknown idle or unknown GPU memory is never a reason."""
    u = terminal.usage
    if is_idle(terminal.idle_seconds, None, idle_threshold) and u and u.gpu_memory_bytes:
        return (TERMINAL_IDLE,)
    return ()


_Row = TypeVar("_Row", Kernel, Terminal, Process)


class GpuIdleTracker:
    """gpu-idle needs history: per holder (a kernel, a terminal, a leftover process by PID
    and create time), since when it has held GPU memory with 0 % SM in every sample seen.

    ``seconds`` is None (unknown) until two samples agree, so a one-shot read never guesses;
    a sample with SM above 0, or with SM or memory unknown, starts the count again.
    """

    def __init__(self, threshold: float = 1800.0):
        self.threshold = threshold
        self._since: dict[str, tuple[float, int]] = {}  # key -> (first all-zero sample, samples)

    def observe(self, key: str, at: float, gpu_bytes: Optional[int], sm_percent: Optional[float]) -> Optional[float]:
        if not gpu_bytes or sm_percent is None:
            self._since.pop(key, None)
            return None
        if sm_percent > 0:
            self._since.pop(key, None)
            return 0.0
        first, count = self._since.get(key, (at, 0))
        self._since[key] = (first, count + 1)
        return None if count + 1 < 2 else max(0.0, at - first)

    def apply(self, now: _dt.datetime, kernels: Iterable[Kernel], terminals: Iterable[Terminal],
              processes: Iterable[Process]) -> tuple[list[Kernel], list[Terminal], list[Process]]:
        """The rows with ``gpu_idle_seconds`` and, past the threshold, the gpu-idle reason."""
        from dataclasses import replace

        at = now.timestamp()
        seen: set[str] = set()

        def mark(row: _Row, key: str, gpu_bytes: Optional[int], sm: Optional[float]) -> _Row:
            seen.add(key)
            secs = self.observe(key, at, gpu_bytes, sm)
            reasons = row.orphan_reasons
            if secs is not None and secs >= self.threshold and GPU_IDLE not in reasons:
                reasons = reasons + (GPU_IDLE,)
            if secs == row.gpu_idle_seconds and reasons is row.orphan_reasons:
                return row  # nothing to change (no GPU held: most rows): no copy of it
            return replace(row, gpu_idle_seconds=secs, orphan_reasons=reasons)

        # A kernel holding no GPU memory, with no count yet, stays as it is (most of them):
        # what ``mark`` would do, without its calls; its history goes with ``seen`` below.
        ks = [k if k.gpu_idle_seconds is None and not (k.usage and k.usage.gpu_memory_bytes)
              else mark(k, k.key, k.usage.gpu_memory_bytes if k.usage else None,
                        k.usage.gpu_percent if k.usage else None)
              for k in kernels]
        ts = [mark(t, t.key, t.usage.gpu_memory_bytes if t.usage else None, t.usage.gpu_percent if t.usage else None)
              for t in terminals]
        ps = [mark(p, f"pid:{p.pid}:{p.create_time}", p.gpu_memory_bytes, p.gpu_percent) for p in processes]
        self._since = {k: v for k, v in self._since.items() if k in seen}
        return ks, ts, ps


def explain_terminal(t: Terminal) -> str:
    """One line: why a terminal is listed, and what it holds."""
    parts = []
    for r in t.orphan_reasons:
        secs = t.gpu_idle_seconds if r == GPU_IDLE else t.idle_seconds
        parts.append(REASON_TEXT.get(r, r).format(idle=human_duration(secs)) if r in REASON_TEXT else r)
    from nbtui.core.text import visible
    text = f"terminal {visible(t.server)}/{visible(t.name)}" + (f" (shell pid {t.pid})" if t.pid else "")
    if parts:
        text += ": " + "; ".join(parts)
    u = t.usage
    held = _gpu_text(u.gpu_memory_bytes, u.gpus) if u else None
    if held:
        text += f"; {held}"
    return text
