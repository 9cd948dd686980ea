"""`nbtui demo` on a host without an NVIDIA GPU: its kernels hold memory on a simulated GPU,
labelled so wherever a GPU figure appears, and the demo's stop frees all of it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import psutil
import pytest

from nbtui.host import nvml_standin as standin
from tests.conftest import ROOT, run_nbtui
from tests.jupyter import wait_for

GIB = 1 << 30


@pytest.mark.skipif(standin.header() is None, reason="no nvml.h (the test extra installs nvidia-nvml-dev)")
def test_the_demo_tells_the_gpu_story_on_a_simulated_gpu(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "cache"))  # its own build
    proc = subprocess.Popen([sys.executable, "-m", "nbtui", "demo", "--no-tui", "--no-discover"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    worker = None
    try:
        info = json.loads(proc.stdout.readline())
        assert info["gpu"] == "simulated"
        ls_env = dict(info["gpu_env"], JUPYTER_RUNTIME_DIR=os.path.join(info["base"], "runtime"))

        def story():
            r = run_nbtui("ls", "--json", env=ls_env)
            data = json.loads(r.stdout)
            held = [p for p in data["processes"] if (p["notebook"] or "").endswith("demo/prep.ipynb")]
            # The worker alone: while its kernel's process ends (the server no longer lists it),
            # that process is a leftover of the same notebook for a moment too.
            return len(held) == 1 and data

        data = wait_for(story, 60, 0.5, "the orphaned worker")
        (gpu,) = data["gpus"]
        assert gpu["simulated"] is True and "simulated" in gpu["name"]
        ks = {k["session"]["path"]: k for k in data["kernels"] if k["session"]}
        assert ks["demo/train.ipynb"]["gpu_memory_bytes"] == 12 * GIB  # held, idle on the GPU
        assert ks["demo/busy-loop.ipynb"]["gpu_memory_bytes"] == 6 * GIB
        (left,) = [p for p in data["processes"] if (p["notebook"] or "").endswith("demo/prep.ipynb")]
        assert left["gpu_memory_bytes"] == 3 * GIB and "kernel-gone" in left["orphan_reasons"]
        worker = psutil.Process(left["pid"])
        assert gpu["ledger"]["leftovers"] == 3 * GIB and gpu["ledger"]["kernels"] == 18 * GIB
        text = run_nbtui("ls", env=ls_env).stdout
        assert "GPU 0 (simulated)" in text
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        assert "simulated" in proc.stderr.read()
        wait_for(lambda: not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE, 30, 0.2,
                 "the orphaned worker to go with the demo")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if worker is not None and worker.is_running():
            worker.kill()


def test_without_a_c_compiler_the_demo_says_so_in_one_line_and_shows_no_gpu(tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "cache"), CC=str(tmp_path / "no-cc"))
    proc = subprocess.Popen([sys.executable, "-m", "nbtui", "demo", "--no-tui", "--no-discover"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        info = json.loads(proc.stdout.readline())
        assert info["gpu"] == "none" and info["gpu_env"] == {}
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        said = [line for line in proc.stderr.read().splitlines() if "GPU" in line]
        assert len(said) == 1 and "no simulated one" in said[0] and "C compiler" in said[0], said
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
