"""Signalling local process trees safely: identity, protection, SIGTERM, grace, SIGKILL.

A process is named by its identity (PID, create time, owner) taken when it was listed;
right before each signal the identity is read again, and a PID that now belongs to
another program is refused, never signalled.
"""

from __future__ import annotations

import getpass
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Iterable, Optional

import psutil

from nbtui.files.secrets import redact_cmdline

# Fates of one PID, as reported to the user and in the audit log.
EXITED = "exited after SIGTERM"
KILLED = "killed with SIGKILL"
ALREADY_GONE = "already gone"
SURVIVED = "survived SIGKILL"
DENIED = "permission denied"
WENT_WITH_KERNEL = "exited with its kernel"
WENT_WITH_TERMINAL = "exited with its terminal"  # its terminal was ended: the kill's aim, a success
SHUT_DOWN = "shut down by its server"
INTERRUPTED = "interrupted: SIGTERM sent, no SIGKILL (ctrl+c)"

_SERVER_MARKERS = ("jupyter_server", "jupyter-server", "jupyter-lab", "jupyterlab", "jupyter-notebook",
                   "notebook.app", "jupyterhub", "jupyter_server.serverapp", "jupyter-labhub", "jupyterhub-singleuser")


@dataclass(frozen=True)
class Ident:
    """Who a process is: a PID alone can be reused, a (PID, create time) pair cannot."""

    pid: int
    create_time: float
    user: Optional[str]
    cmdline: str
    ppid: Optional[int] = None


@dataclass(frozen=True)
class Fate:
    pid: int
    user: Optional[str]
    cmdline: str
    fate: str

    @property
    def ok(self) -> bool:
        return self.fate in (EXITED, KILLED, ALREADY_GONE, WENT_WITH_KERNEL, WENT_WITH_TERMINAL, SHUT_DOWN)

    def json(self) -> dict:
        return {"pid": self.pid, "user": self.user, "cmdline": self.cmdline, "fate": self.fate}


def _ident(p: psutil.Process) -> Optional[Ident]:
    try:
        with p.oneshot():
            if p.status() == psutil.STATUS_ZOMBIE:
                return None
            create = p.create_time()
            ppid = p.ppid()
            try:
                user = p.username()
            except (psutil.AccessDenied, KeyError):
                user = None
            try:
                cmd = redact_cmdline(" ".join(p.cmdline()) or p.name())
            except (psutil.AccessDenied, psutil.ZombieProcess):
                cmd = p.name()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return Ident(p.pid, 0.0, None, "?")
    return Ident(p.pid, create, user, cmd, ppid)


def identify(pid: int) -> Optional[Ident]:
    """The process now running as ``pid``, or None (no such process, or a zombie)."""
    try:
        return _ident(psutil.Process(pid))
    except (psutil.NoSuchProcess, ValueError):
        return None


def zombie(pid: int) -> Optional[Ident]:
    """A process that has exited but was not reaped yet (it holds nothing any more)."""
    try:
        p = psutil.Process(pid)
        if p.status() != psutil.STATUS_ZOMBIE:
            return None
        return Ident(pid, p.create_time(), None, "<defunct>", None)
    except (psutil.Error, ValueError):
        return None


def same_process(expected: Ident, now: Optional[Ident]) -> bool:
    if now is None:
        return False
    if abs(now.create_time - expected.create_time) > 0.01:
        return False
    return expected.user is None or now.user is None or now.user == expected.user


def descendants(pid: int) -> list[Ident]:
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return []
    return [i for i in (_ident(k) for k in kids) if i is not None]


def find_kernel_process(kernel_id: str) -> Optional[Ident]:
    """The local process of a kernel (the one naming its connection file), found by a scan."""
    from nbtui.host.procs import ProcessTable
    pid = ProcessTable().scan().kernel_roots().get(kernel_id)
    return identify(pid) if pid is not None else None


def running_kernel_ids() -> set[str]:
    """Kernel ids whose connection file a running local process names."""
    from nbtui.host.procs import ProcessTable
    return set(ProcessTable().scan().kernel_roots())


def ancestors_of_self() -> set[int]:
    out: set[int] = set()
    try:
        p = psutil.Process(os.getpid()).parent()
        while p is not None and p.pid not in out:
            out.add(p.pid)
            p = p.parent()
    except psutil.Error:
        pass
    return out


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return str(os.geteuid())


def is_root() -> bool:
    return os.geteuid() == 0


def looks_like_server(ident: Ident, server_pids: Iterable[int] = ()) -> bool:
    if ident.pid in set(server_pids):
        return True
    cmd = ident.cmdline.lower()
    return any(m in cmd for m in _SERVER_MARKERS) and "ipykernel" not in cmd


PF_KTHREAD = 0x00200000  # include/linux/sched.h: the task is a kernel thread


def is_kernel_thread(pid: int) -> bool:
    """Whether ``pid`` is a kernel thread (kthreadd and its children: no program, no
    command line), read from the flags in ``/proc/PID/stat`` (False where there is none)."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rindex(b")") + 2:].split()  # the name in (...) may hold spaces and ')'
        return bool(int(fields[6]) & PF_KTHREAD)  # state ppid pgrp session tty_nr tpgid flags
    except (OSError, ValueError, IndexError):
        return False


def never_signalled(pid: int, protected: Optional[set[int]] = None) -> Optional[str]:
    """Why no signal from nbtui may ever reach ``pid``, whoever asks and however it was
    named (None: this rule does not stop it): PID 1, nbtui itself and the processes it runs
    inside (``protected``: its ancestors, read now when not given), kernel threads."""
    if pid == 1:
        return "PID 1 is never signalled (the init process: the whole host or container goes with it)"
    if pid == os.getpid():
        return "that is nbtui itself"
    if pid in (protected if protected is not None else ancestors_of_self()):
        return "that is nbtui's parent (or one of its ancestors): nbtui runs inside it"
    if is_kernel_thread(pid):
        return f"PID {pid} is a kernel thread (part of the operating system), never signalled"
    return None


def refusal(ident: Ident, *, explicit: bool, server_pids: Iterable[int] = (),
            protected: Optional[set[int]] = None, me: Optional[str] = None,
            root: Optional[bool] = None) -> Optional[str]:
    """Why nbtui must not signal this process (None: it may). ``me``/``root``: who nbtui
    runs as (read from the OS when not given)."""
    never = never_signalled(ident.pid, protected)
    if never:
        return never
    me = me or current_user()
    root = is_root() if root is None else root
    if ident.user is not None and ident.user != me and not root:
        return f"owned by {ident.user}, and nbtui runs as {me} (not root)"
    if ident.user is None and not root:
        return "its owner cannot be read"
    if looks_like_server(ident, server_pids) and not explicit:
        return f"PID {ident.pid} is a Jupyter server; name it as pid:{ident.pid} to kill it"
    return None


def _gone_or_other(expected: Ident) -> bool:
    return not same_process(expected, identify(expected.pid))


def terminate(targets: Iterable[Ident], grace: float = 5.0, *, kill_wait: float = 1.0,
              poll: float = 0.05, stop: Optional[threading.Event] = None) -> list[Fate]:
    """SIGTERM every target, wait up to ``grace`` seconds, SIGKILL what remains; each PID's fate.

    Each target's identity is re-read right before each signal: a PID that now belongs
    to another program (or is gone) is never signalled. Once ``stop`` is set (the user
    pressed ctrl+c) the wait ends and nothing more is signalled: what still runs is
    ``INTERRUPTED``.
    """
    targets = list(dict((t.pid, t) for t in targets).values())
    protected = ancestors_of_self()  # the last gate: never_signalled, right before the first signal
    fates: dict[int, str] = {}
    termed: list[Ident] = []
    for t in targets:
        now = identify(t.pid)
        if now is None:
            fates[t.pid] = ALREADY_GONE
        elif not same_process(t, now):
            fates[t.pid] = "refused: the PID now belongs to another program (create time or owner changed)"
        elif never_signalled(t.pid, protected):
            fates[t.pid] = f"refused: {never_signalled(t.pid, protected)}"
        else:
            fates[t.pid] = _signal(t.pid, signal.SIGTERM) or ""
            if not fates[t.pid]:
                termed.append(t)
    left = _wait(termed, grace, poll, stop)
    for t in termed:
        if t not in left:
            fates[t.pid] = EXITED
    if stop is not None and stop.is_set():
        for t in left:
            fates[t.pid] = EXITED if _gone_or_other(t) else INTERRUPTED
        return [Fate(t.pid, t.user, t.cmdline, fates.get(t.pid, INTERRUPTED)) for t in targets]
    killed = []
    for t in left:
        if _gone_or_other(t):
            fates[t.pid] = EXITED
            continue
        err = _signal(t.pid, signal.SIGKILL)
        if err:
            fates[t.pid] = err
        else:
            killed.append(t)
    still = _wait(killed, kill_wait, poll)
    for t in killed:
        fates[t.pid] = SURVIVED if t in still else KILLED
    return [Fate(t.pid, t.user, t.cmdline, fates[t.pid]) for t in targets]


def _signal(pid: int, sig: int) -> Optional[str]:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return None  # it went on its own; the wait sees it gone
    except PermissionError:
        return f"failed: {DENIED}"
    return None


def _wait(procs: list[Ident], timeout: float, poll: float,
          stop: Optional[threading.Event] = None) -> list[Ident]:
    deadline = time.monotonic() + timeout
    left = list(procs)
    while left:
        left = [t for t in left if not _gone_or_other(t)]
        if not left or time.monotonic() >= deadline or (stop is not None and stop.is_set()):
            break
        if stop is not None:
            stop.wait(poll)
        else:
            time.sleep(poll)
    return left

