"""The demo's GPU: this host's, else a simulated one (the stand-in), else none, with one line saying which.

On a host without an NVIDIA GPU the demo's kernels hold memory on a simulated 80 GB GPU, so a
newcomer sees what nbtui is for: one notebook holding GPU memory and using it, one holding it
idle, and a worker whose kernel is gone still holding it. Everything shown of it says
"simulated". Kernels reach the holder helper by its file path (standard library only), so no
import of nbtui is needed in them.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from nbtui.host import nvml_standin as standin

GIB = 1 << 30
HOLDER = Path(__file__).with_name("holder.py")
SIMULATED_UUID = "GPU-51a7ed00-0000-4000-8000-00000000d3e0"


@dataclass
class DemoGpu:
    mode: str  # "real" | "simulated" | "none"
    note: str  # one line for the user
    env: dict = field(default_factory=dict)  # for the demo server and its kernels
    registry: Optional[Path] = None

    @property
    def simulated(self) -> bool:
        return self.mode == "simulated"


def _real_gpus() -> Optional[int]:
    """GPUs this host's NVIDIA library sees: 0 without the library, None when it loads but
    cannot say (no driver): then no stand-in can take its name in this process either."""
    try:
        lib = ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return 0
    count = ctypes.c_uint(0)
    try:
        if lib.nvmlInit_v2() != 0 or lib.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0:
            return None
    except AttributeError:
        return None
    return count.value or None


def choose(base: Path) -> DemoGpu:
    """Decide the demo's GPU; for a simulated one, build and load the stand-in in this process
    (before anything reads NVML) and write its scenario under ``base``."""
    real = _real_gpus()
    if real:
        return DemoGpu("real", f"nbtui demo: using this host's NVIDIA GPU{'s' if real > 1 else ''} ({real}); "
                               "the sample kernels allocate nothing on it")
    if real is None:
        return DemoGpu("none", "nbtui demo: an NVIDIA library is here but no usable GPU: GPU figures stay —")
    try:
        libdir = standin.build()
    except (standin.Unavailable, OSError) as e:
        return DemoGpu("none", f"nbtui demo: no NVIDIA GPU here and no simulated one: {e}")
    registry = base / "simulated-gpu"
    scenario = standin.Scenario(registry=registry, gpus=[
        standin.Gpu(SIMULATED_UUID, 80 * GIB, 600 * (1 << 20), 0, name="NVIDIA H100 80GB HBM3 (simulated)")])
    path = scenario.write(base / "simulated-gpu.scenario")
    standin.preload(libdir, path)
    return DemoGpu("simulated", "nbtui demo: no NVIDIA GPU here: the kernels hold memory on a simulated one",
                   env=standin.env(libdir, path, base={"LD_LIBRARY_PATH": os.environ.get("LD_LIBRARY_PATH", "")}),
                   registry=registry)


def hold_code(nbytes: int, sm: int) -> str:
    """Kernel code: hold ``nbytes`` on the simulated GPU 0 at ``sm`` % SM."""
    return ("import importlib.util as _u\n"
            f"_s = _u.spec_from_file_location('nbtui_gpu_holder', {str(HOLDER)!r})\n"
            "_gpu = _u.module_from_spec(_s); _s.loader.exec_module(_gpu)\n"
            f"_gpu.hold('0', {nbytes}, {sm})\n")


def orphan_code(nbytes: int, demo_pid: int) -> str:
    """Kernel code that starts a worker holding ``nbytes``, in a session of its own, which
    outlives the kernel; it leaves when the demo's folder or the demo itself is gone."""
    worker = (hold_code(nbytes, 0) +
              "import os, time\n"
              f"while os.path.isfile(os.environ['{standin.SCENARIO_ENV}']):\n"
              f"    try:\n        os.kill({demo_pid}, 0)\n    except OSError:\n        break\n"
              "    time.sleep(1)\n")
    return ("import subprocess, sys\n"
            f"worker = subprocess.Popen([sys.executable, '-c', {worker!r}], start_new_session=True,\n"
            "                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n")
