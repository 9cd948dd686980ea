"""Hold stand-in GPU memory from a real process (a kernel imports this; so does a child it starts).

``hold("0", 2 << 30)`` registers that this process holds 2 GiB on GPU 0 (``"0/1/0"``: a MIG
instance) with the stand-in ``libnvidia-ml`` named by ``$NBTUI_NVML_STANDIN``; the stand-in
reports it while this PID lives (same start time, not a zombie), as a driver does. Standard
library only: it runs in any kernel.
"""

from __future__ import annotations

import os

SCENARIO_ENV = "NBTUI_NVML_STANDIN"


def _registry() -> str:
    with open(os.environ[SCENARIO_ENV]) as f:
        for line in f:
            if line.startswith("registry "):
                return line[len("registry "):].rstrip("\n")
    raise RuntimeError("the stand-in scenario names no registry")


def _start_time() -> str:
    with open("/proc/self/stat") as f:
        stat = f.read()
    return stat[stat.rindex(")") + 2:].split()[19]


def _write(held: dict[str, tuple[int, int, str]]) -> None:
    path = os.path.join(_registry(), str(os.getpid()))
    if not held:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    body = f"start {_start_time()}\n" + "".join(f"{g} {b} {sm} {kind}\n" for g, (b, sm, kind) in held.items())
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(body)
    os.replace(tmp, path)


_held: dict[str, tuple[int, int, str]] = {}
_pid = os.getpid()
_device = None  # the stand-in's device node, open while this process holds memory (as /dev/nvidia0 is)


def _open_device() -> None:
    global _device
    if _device is None:
        _device = open(os.path.join(_registry(), "nvidia0"), "rb")  # noqa: SIM115 (held open on purpose)


def hold(gpu: str = "0", nbytes: int = 1 << 30, sm: int = 0, kind: str = "c") -> None:
    """Hold ``nbytes`` on ``gpu`` with ``sm`` % utilisation (0: idle, no samples); replaces this GPU's figure."""
    global _pid
    if os.getpid() != _pid:  # a forked child holds its own memory, not its parent's
        _held.clear()
        _pid = os.getpid()
    _open_device()
    _held[str(gpu)] = (int(nbytes), int(sm), kind)
    _write(_held)


def release(gpu: str | None = None) -> None:
    """Free this process's memory on ``gpu`` (every GPU when None)."""
    if gpu is None:
        _held.clear()
    else:
        _held.pop(str(gpu), None)
    _write(_held)
