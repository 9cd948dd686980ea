"""The stand-in libnvidia-ml for tests: built once per test session, scenarios written per test.

Processes a test starts with ``StandIn.env()`` load the stand-in through ``LD_LIBRARY_PATH``
(the real ``pynvml`` dlopens ``libnvidia-ml.so.1``); a kernel holds memory with
``HOLD.format(...)`` (``nbtui.host.nvml_standin.holder``), and frees it by exiting.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import pytest

from nbtui.host import nvml_standin as standin
from tests.jupyter import wait_for

GIB = 1 << 30
MIB = 1 << 20
HOLD = "from nbtui.host.nvml_standin import holder; holder.hold({gpu!r}, {nbytes}, {sm}, {kind!r})"


def child(gpu: str, nbytes: int, sm: int) -> str:
    """Kernel code that starts a child holding GPU memory, which outlives it (a DataLoader worker)."""
    code = HOLD.format(gpu=gpu, nbytes=nbytes, sm=sm, kind="c") + "; import time; time.sleep(3600)"
    return f"import subprocess, sys\nchild = subprocess.Popen([sys.executable, '-c', {code!r}])"


def absent_pid() -> int:
    """A PID no process has here (NVML in a container reports host PIDs like it)."""
    pid = 4_000_000
    while os.path.exists(f"/proc/{pid}"):
        pid -= 1
    return pid


class StandIn:
    def __init__(self, base: Path):
        try:
            self.libdir = standin.build(base / "cache")
        except standin.Unavailable as e:
            pytest.skip(str(e))
        self.registry = base / "registry"
        self.path = base / "scenario"
        self.scenario = standin.Scenario(registry=self.registry)

    def write(self, scenario: Optional[standin.Scenario] = None, path: Optional[Path] = None) -> Path:
        return (scenario or self.scenario).write(path or self.path)

    def env(self, scenario_path: Optional[Path] = None, **extra: str) -> dict:
        out = standin.env(self.libdir, scenario_path or self.path, base={})
        out.update(extra)
        return out

    def holds(self, pid: int, timeout: float = 30) -> None:
        """Wait until ``pid`` has registered memory with the stand-in."""
        wait_for(lambda: pid in standin.registrations(self.registry), timeout, 0.05, f"pid {pid} to hold GPU memory")

    def variant(self, name: str, **changes) -> Path:
        """Another scenario file beside this one (same registry), for one command."""
        from dataclasses import replace

        return replace(self.scenario, **changes).write(self.path.with_name(f"scenario-{name}"))


def wait_gone(pid: int, timeout: float = 30) -> None:
    def gone() -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    wait_for(gone, timeout, 0.05, f"pid {pid} to exit")
