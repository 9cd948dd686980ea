"""``pynvml`` for an nbtui process a test starts (put this folder first on its PYTHONPATH):
``FakeNvml`` of tests/test_gpu_attribution.py as a module, one GPU answering from
``$NBTUI_TEST_NVML`` (JSON ``{"used": BYTES, "total": BYTES, "procs": [[PID, BYTES], ...]}``).
With no ``procs``, the GPU's used memory is held by no process NVML lists.
"""

import json
import os
from types import SimpleNamespace

from tests.test_gpu_attribution import FakeNvml, NVMLError  # noqa: F401  (NVMLError: as pynvml has it)

_cfg = json.loads(os.environ.get("NBTUI_TEST_NVML") or "{}")
_gpu = SimpleNamespace(uuid="GPU-00000000-test", name="Test GPU", memory_used=int(_cfg.get("used", 2 * 1024**3)),
                       memory_total=int(_cfg.get("total", 80 * 1024**3)), utilization=0.0)
_fake = FakeNvml(devices=(_gpu,), procs={0: [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in _cfg.get("procs", [])]},
                 samples={})


def __getattr__(name):
    return getattr(_fake, name)
