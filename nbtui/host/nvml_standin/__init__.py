"""A stand-in ``libnvidia-ml.so.1`` (``standin.c``) for tests, benchmarks and the demo.

The C source ships in the package and is compiled on first use, with the system C compiler
against the real ``nvml.h`` (PyPI: ``nvidia-nvml-dev``), into a private folder of the user's
cache (0700, created through ``nbtui.files.safefile``; a folder another user could write to would
let them put code into every process that loads the library). A process loads it through
``LD_LIBRARY_PATH`` with the scenario in ``$NBTUI_NVML_STANDIN`` (format: ``standin.c``'s
head); :func:`env` gives both. Processes hold memory through :mod:`.holder`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

SCENARIO_ENV = "NBTUI_NVML_STANDIN"
LIBRARY = "libnvidia-ml.so.1"
SOURCE = Path(__file__).with_name("standin.c")
LAYOUTS = ("v1", "v2", "v3", "v3-v2", "v3-v1")


class Unavailable(Exception):
    """The stand-in cannot be built here; the message is one line saying why."""


def header() -> Optional[Path]:
    """The real ``nvml.h`` from the ``nvidia-nvml-dev`` wheel (``nvidia/cu*/include``), if installed."""
    try:
        import nvidia  # namespace package of NVIDIA's wheels
    except ImportError:
        return None
    for root in getattr(nvidia, "__path__", []):
        found = sorted(Path(root).glob("*/include/nvml.h")) + sorted(Path(root).glob("include/nvml.h"))
        if found:
            return found[-1]
    return None


def _cache_root() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("nbtui")) / "nvml-standin"


def build(cache: Optional[Path] = None) -> Path:
    """The folder holding the compiled ``libnvidia-ml.so.1`` (compiled once per source and header)."""
    from nbtui.files.safefile import ensure_dir
    h = header()
    if h is None:
        raise Unavailable("no nvml.h to build the simulated GPU against (pip install nvidia-nvml-dev)")
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise Unavailable("no C compiler to build the simulated GPU (install gcc)")
    digest = hashlib.sha256(SOURCE.read_bytes() + h.read_bytes()).hexdigest()[:16]
    root = ensure_dir(cache or _cache_root())
    out = ensure_dir(root / digest)
    lib = out / LIBRARY
    if lib.is_file() and not lib.is_symlink():
        return out
    tmp = out / f".{LIBRARY}.{os.getpid()}"
    # The soname lets a process that loaded it by path (``preload``) answer pynvml's dlopen of the name.
    cmd = [cc, "-shared", "-fPIC", "-O2", "-Wall", "-Wno-format-truncation", f"-Wl,-soname,{LIBRARY}",
           f"-I{h.parent}", "-o", str(tmp), str(SOURCE)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise Unavailable(f"the C compiler failed to build the simulated GPU ({e})") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise Unavailable(f"the C compiler failed to build the simulated GPU: {last}")
    os.replace(tmp, lib)
    return out


@dataclass
class Gpu:
    uuid: str
    total: int
    reserved: int = 0
    util: int = 0
    name: str = "NVIDIA H100 80GB HBM3 (simulated)"
    # (gpu instance, compute instance, uuid, total bytes): MIG mode on when any
    migs: list[tuple[int, int, str, int]] = field(default_factory=list)


@dataclass
class Scenario:
    """A scenario file's content; :meth:`write` puts it where ``$NBTUI_NVML_STANDIN`` will name it."""

    registry: Path
    gpus: list[Gpu] = field(default_factory=list)
    layout: str = "v3-v2"
    procs: list[tuple[str, int, int, int, str]] = field(default_factory=list)  # gpu id, pid, bytes, sm, c|g|cg
    samples: list[tuple[str, int, int, int]] = field(default_factory=list)  # gpu id, pid, sm, age in µs
    errors: list[tuple[str, str, str, Optional[int]]] = field(default_factory=list)  # function, gpu|*, error, times

    def text(self) -> str:
        lines = [f"layout {self.layout}", f"registry {self.registry}"]
        for i, g in enumerate(self.gpus):
            lines.append(f"gpu {i} {g.uuid} {g.total} {g.reserved} {g.util} {g.name}")
            lines += [f"mig {i} {gi} {ci} {uuid} {total} MIG instance" for gi, ci, uuid, total in g.migs]
        lines += [f"proc {g} {pid} {b} {sm} {kind}" for g, pid, b, sm, kind in self.procs]
        lines += [f"sample {g} {pid} {sm} {age}" for g, pid, sm, age in self.samples]
        lines += [f"error {fn} {g} {err}" + ("" if times is None else f" {times}") for fn, g, err, times in self.errors]
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> Path:
        from nbtui.files.safefile import ensure_dir, replace_file
        ensure_dir(self.registry)
        node = self.registry / DEVICE_NODE
        if not node.exists():
            replace_file(node, "")
        replace_file(path, self.text())
        return path


def preload(libdir: Path, scenario: Path) -> None:
    """Make this process's NVML the stand-in: set the scenario and load the library by path
    before pynvml dlopens ``libnvidia-ml.so.1`` (the loader answers that name with the library
    already loaded under that soname; ``LD_LIBRARY_PATH`` is read only at process start)."""
    import ctypes

    os.environ[SCENARIO_ENV] = str(scenario)
    ctypes.CDLL(str(libdir / LIBRARY), mode=ctypes.RTLD_GLOBAL)


def env(libdir: Path, scenario: Path, base: Optional[dict] = None) -> dict:
    """An environment whose processes load the stand-in and read ``scenario``."""
    out = dict(os.environ if base is None else base)
    out["LD_LIBRARY_PATH"] = os.pathsep.join([str(libdir)] + [p for p in out.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p])
    out[SCENARIO_ENV] = str(scenario)
    return out


DEVICE_NODE = "nvidia0"  # in the registry folder: the stand-in's device node, which a holder keeps open


def device_prefix() -> Optional[str]:
    """The path prefix of the stand-in's device node (``REGISTRY/nvidia``) when this process
    reads a stand-in scenario, so a holder of its memory is confirmed as a driver's user of
    ``/dev/nvidia*`` is; None otherwise. The environment that chooses the driver library
    (``LD_LIBRARY_PATH``) chooses this too: it grants nothing that environment does not."""
    path = os.environ.get(SCENARIO_ENV)
    return _prefix_of(path) if path else None


@functools.lru_cache(maxsize=4)
def _prefix_of(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("registry "):
                    return os.path.join(line[len("registry "):].rstrip("\n"), "nvidia")
    except OSError:
        return None
    return None


def registrations(registry: Path) -> Iterable[int]:
    """PIDs that registered memory in ``registry`` (alive or not)."""
    try:
        return sorted(int(n) for n in os.listdir(registry) if n.isdigit())
    except OSError:
        return []
