"""GPU truth through the real nvidia-ml-py and a stand-in libnvidia-ml (C, the real nvml.h).

Real Jupyter servers whose kernels (and a kernel's child) hold stand-in GPU memory; `nbtui`
runs as a user runs it, with the stand-in on its LD_LIBRARY_PATH, and must name the right
pids, bytes and notebooks whatever process-info layout the "driver" fills.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from nbtui.host import nvml_standin as standin
from tests.conftest import run_nbtui
from tests.gpu_standin import GIB, HOLD, MIB, StandIn, absent_pid, child, wait_gone
from tests.jupyter import JupyterServer, wait_for

RESERVED = 300 * MIB  # the driver's own, on every GPU: "unassigned" in the ledger
GHOST = absent_pid()


@pytest.fixture(scope="module")
def gpu(tmp_path_factory):
    s = StandIn(tmp_path_factory.mktemp("standin"))
    s.scenario.gpus = [standin.Gpu("GPU-00000000-aaaa", 80 * GIB, RESERVED, 37),
                       standin.Gpu("GPU-11111111-bbbb", 40 * GIB, RESERVED, 0, name="NVIDIA A100-SXM4-40GB"),
                       standin.Gpu("GPU-22222222-cccc", 80 * GIB, RESERVED, 0, name="NVIDIA H100 80GB HBM3",
                                   migs=[(1, 0, "MIG-aaaaaaaa-1111", 20 * GIB), (2, 0, "MIG-bbbbbbbb-2222", 40 * GIB)])]
    # A PID from another namespace, and a figure no GPU can hold (from this test's own live PID).
    s.scenario.procs = [("0", GHOST, 123 * MIB, -1, "c"), ("1", os.getpid(), 1 << 50, -1, "c")]
    s.write()
    return s


@pytest.fixture(scope="module")
def server(gpu, tmp_path_factory):
    srv = JupyterServer(tmp_path_factory.mktemp("jupyter-gpu"), name="gpu", env=gpu.env()).start()
    try:
        _populate(srv, gpu)
    except BaseException:
        srv.stop()
        raise
    yield srv
    srv.stop()


def _populate(srv, gpu):
    kernels = {}
    # train.ipynb's kernel is in both NVML lists (compute and graphics: counted once), idle.ipynb's a
    # graphics process only (it counts too).
    # mig.ipynb's kernel holds memory on a MIG instance of GPU 2.
    for nb, gid, nbytes, sm, kind in (("train.ipynb", "0", 2 * GIB, 40, "cg"), ("idle.ipynb", "1", 1 * GIB, 0, "g"),
                                      ("mig.ipynb", "2/2/0", 6 * GIB, 30, "c")):
        srv.write_notebook(nb)
        kid = srv.create_session(nb)["kernel"]["id"]
        assert srv.run_code(kid, HOLD.format(gpu=gid, nbytes=nbytes, sm=sm, kind=kind))["content"]["status"] == "ok"
        kernels[nb] = kid
    # train.ipynb's kernel starts a worker that holds 512 MiB more (and uses the SM).
    reply = srv.run_code(kernels["train.ipynb"], child("0", 512 * MIB, 20))
    assert reply["content"]["status"] == "ok"
    srv.kernel_ids = kernels
    for kid in kernels.values():
        gpu.holds(srv.kernel_pid(kid))
    wait_for(lambda: len(standin.registrations(gpu.registry)) >= 4, 30, 0.05, "the worker to hold GPU memory")


def ls(gpu, server, scenario=None, *args):
    r = run_nbtui("ls", "--json", *args, env=gpu.env(scenario, JUPYTER_RUNTIME_DIR=str(server.runtime_dir)))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return json.loads(r.stdout)


def by_notebook(data):
    return {k["session"]["path"]: k for k in data["kernels"] if k["session"]}


def check_the_story(data):
    ks = by_notebook(data)
    train, idle = ks["train.ipynb"], ks["idle.ipynb"]
    assert train["gpu_memory_bytes"] == 2 * GIB + 512 * MIB  # the kernel and its worker
    assert [(g["id"], g["memory_bytes"]) for g in train["gpus"]] == [("0", 2 * GIB + 512 * MIB)]
    assert idle["gpu_memory_bytes"] == 1 * GIB
    assert [(g["id"], g["uuid"]) for g in idle["gpus"]] == [("1", "GPU-11111111-bbbb")]
    assert [(u["gpu_id"], u["pid"], u["memory_bytes"]) for u in data["unattributed_gpu"]] == [("0", GHOST, 123 * MIB)]
    gpus = {g["id"]: g for g in data["gpus"]}
    for g in gpus.values():  # every byte has a part
        assert sum(v for k, v in g["ledger"].items() if isinstance(v, int)) == g["memory_used"]
    assert gpus["0"]["ledger"]["kernels"] == 2 * GIB + 512 * MIB
    assert gpus["0"]["ledger"]["unattributed"] == 123 * MIB
    assert gpus["0"]["ledger"]["unassigned"] == RESERVED
    assert gpus["1"]["ledger"]["kernels"] == 1 * GIB
    assert gpus["1"]["ledger"]["other"] == 0  # the impossible figure is reported, never booked
    assert "cannot be true" in data["gpu_note"] and str(os.getpid()) in data["gpu_note"]
    return train, idle


@pytest.mark.parametrize("layout", standin.LAYOUTS)
def test_every_struct_layout_gives_the_same_pids_bytes_and_notebooks(gpu, server, layout):
    data = ls(gpu, server, gpu.variant(f"layout-{layout}", layout=layout))
    train, idle = check_the_story(data)
    assert train["gpu_percent"] == 60.0 and idle["gpu_percent"] == 0.0  # 40 % + the worker's 20 %


def test_the_binding_alone_misreads_the_535_43_layout(gpu, server):
    # What nbtui's probe is for: nvidia-ml-py decodes driver 535.43's records with the v2 struct.
    code = ("import pynvml as n; n.nvmlInit(); h = n.nvmlDeviceGetHandleByIndex(0); "
            "print(sorted(p.pid for p in n.nvmlDeviceGetComputeRunningProcesses(h)))")
    env = dict(os.environ) | gpu.env(gpu.variant("layout-v3", layout="v3"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert server.kernel_pid(server.kernel_ids["train.ipynb"]) not in json.loads(out)


def test_a_first_read_asks_for_recent_samples_only(gpu, server):
    # lastSeenTimeStamp: a sample a minute old is not today's use; one a second old is.
    pid = server.kernel_pid(server.kernel_ids["idle.ipynb"])
    stale = ("1", pid, 90, 60_000_000)
    assert by_notebook(ls(gpu, server, gpu.variant("stale", samples=[stale])))["idle.ipynb"]["gpu_percent"] == 0.0
    fresh = ("1", pid, 50, 1_000_000)
    data = ls(gpu, server, gpu.variant("fresh", samples=[stale, fresh]))
    assert by_notebook(data)["idle.ipynb"]["gpu_percent"] == 50.0


ERRORS = [
    # (function, gpu, error, times), what nbtui says, and what it cannot know
    (("nvmlInit", "*", "DRIVER_NOT_LOADED", None), "the NVIDIA driver is not loaded", "all"),
    (("nvmlDeviceGetComputeRunningProcesses", "0", "NOT_SUPPORTED", None), "GPU 0: per-process memory unavailable",
     "memory"),
    (("nvmlDeviceGetComputeRunningProcesses", "0", "GPU_IS_LOST", None), "GPU 0: per-process memory unavailable",
     "memory"),
    (("nvmlDeviceGetMemoryInfo", "0", "GPU_IS_LOST", None), "GPU 0: a GPU fell off the bus", "memory"),
    (("nvmlDeviceGetProcessUtilization", "0", "NOT_SUPPORTED", None), None, "percent"),
    (("nvmlDeviceGetProcessUtilization", "*", "NOT_FOUND", None), None, "none"),  # no new sample: a measured 0
    (("nvmlDeviceGetComputeRunningProcesses", "0", "INSUFFICIENT_SIZE", 3), None, "none"),  # grew 3 times: retried
]


@pytest.mark.parametrize("error,says,unknown", ERRORS, ids=[f"{e[0][0]}-{e[0][2]}" for e in ERRORS])
def test_every_injected_error_is_one_line_and_unknown_never_zero(gpu, server, error, says, unknown):
    data = ls(gpu, server, gpu.variant("error", errors=[error]))
    note = data["gpu_note"] or ""
    assert "\n" not in note
    if says:
        assert says in note
    train = by_notebook(data)["train.ipynb"]
    if unknown == "all":
        assert data["gpus"] == [] and train["gpu_memory_bytes"] is None and train["gpu_percent"] is None
    elif unknown == "memory":
        assert train["gpu_memory_bytes"] is None  # never 0
        assert all(g["ledger"] is None for g in data["gpus"] if g["id"] == "0")
    elif unknown == "percent":
        assert train["gpu_percent"] is None and train["gpu_memory_bytes"] == 2 * GIB + 512 * MIB
    else:
        assert train["gpu_memory_bytes"] == 2 * GIB + 512 * MIB
        assert train["gpu_percent"] == (0.0 if error[2] == "NOT_FOUND" else 60.0)


def test_kill_frees_the_memory(gpu, server):
    server.write_notebook("free-me.ipynb")
    kid = server.create_session("free-me.ipynb")["kernel"]["id"]
    server.run_code(kid, HOLD.format(gpu="0", nbytes=3 * GIB, sm=0, kind="c"))
    pid = server.kernel_pid(kid)
    gpu.holds(pid)
    before = {g["id"]: g for g in ls(gpu, server)["gpus"]}["0"]
    assert before["ledger"]["kernels"] == 2 * GIB + 512 * MIB + 3 * GIB
    env = gpu.env(JUPYTER_RUNTIME_DIR=str(server.runtime_dir))
    r = run_nbtui("kill", kid, "--yes", env=env)
    assert r.returncode == 0, r.stderr
    wait_gone(pid)
    after = ls(gpu, server)
    g0 = {g["id"]: g for g in after["gpus"]}["0"]
    assert g0["memory_used"] == before["memory_used"] - 3 * GIB  # the driver freed it
    assert g0["ledger"]["kernels"] == 2 * GIB + 512 * MIB
    assert "free-me.ipynb" not in by_notebook(after)


def test_gpu_idle_fires_for_a_kernel_holding_memory_with_no_utilisation(gpu, server, config_dir):
    (config_dir / "config.toml").write_text('[orphans]\ngpu_idle = "1s"\n')
    env = gpu.env(JUPYTER_RUNTIME_DIR=str(server.runtime_dir))
    r = run_nbtui("cull", "--gpu-idle", "2s", "--dry-run", "--json", env=env)
    assert r.returncode == 0, r.stderr
    steps = json.loads(r.stdout)["plan"]
    # The kernel holding 1 GiB at 0 % SM, not the one at 40 % (nor the free-me one, if present).
    assert [(s["notebook"], s["reasons"]) for s in steps if s["notebook"] in ("idle.ipynb", "train.ipynb")] == [
        ("idle.ipynb", ["gpu-idle"])]


def test_a_sigkilled_servers_child_holds_gpu_memory_until_killed_by_pid(gpu, tmp_path_factory):
    srv = JupyterServer(tmp_path_factory.mktemp("jupyter-crash"), name="crash", env=gpu.env()).start()
    try:
        srv.write_notebook("lost/orphan.ipynb")
        kid = srv.create_session("lost/orphan.ipynb")["kernel"]["id"]
        kpid = srv.kernel_pid(kid)
        reply = srv.run_code(kid, child("1", 1536 * MIB, 0))
        assert reply["content"]["status"] == "ok"
        worker = wait_for(lambda: next((p for p in standin.registrations(gpu.registry)
                                        if _parent(p) == kpid), None), 30, 0.05, "the kernel's child to hold memory")
        srv.kill_hard()
        wait_gone(kpid)  # the kernel follows its server; its child does not
        env = gpu.env(JUPYTER_RUNTIME_DIR=str(srv.runtime_dir))
        r = run_nbtui("ls", "--json", "--orphans", env=env)
        data = json.loads(r.stdout)
        left = {p["pid"]: p for p in data["processes"]}
        assert worker in left, r.stdout
        assert left[worker]["notebook"].endswith("lost/orphan.ipynb")
        assert left[worker]["gpu_memory_bytes"] == 1536 * MIB
        assert "server-gone" in left[worker]["orphan_reasons"]
        leftovers = {g["id"]: g for g in data["gpus"]}["1"]["ledger"]["leftovers"]
        assert leftovers >= 1536 * MIB  # (the module's server is not read here: its kernels are leftovers too)
        r = run_nbtui("kill", f"pid:{worker}", "--yes", env=env)
        assert r.returncode == 0, r.stderr
        wait_gone(worker)
        r = run_nbtui("ls", "--json", env=env)
        data = json.loads(r.stdout)
        assert worker not in {p["pid"] for p in data["processes"]}
        assert {g["id"]: g for g in data["gpus"]}["1"]["ledger"]["leftovers"] == leftovers - 1536 * MIB
    finally:
        srv.stop()


def _parent(pid: int):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def test_mig_instances_are_gpus_of_their_own(gpu, server):
    data = ls(gpu, server)
    gpus = {g["id"]: g for g in data["gpus"]}
    assert set(gpus) == {"0", "1", "2/1/0", "2/2/0"}  # the MIG-enabled GPU 2 is its instances
    g = gpus["2/2/0"]
    assert (g["uuid"], g["parent_uuid"], g["mig"], g["index"]) == ("MIG-bbbbbbbb-2222", "GPU-22222222-cccc", True, 2)
    assert (g["memory_used"], g["memory_total"], g["ledger"]["kernels"]) == (6 * GIB, 40 * GIB, 6 * GIB)
    assert g["utilization"] is None and g["utilization_note"] == "not supported on MIG"
    assert gpus["2/1/0"]["memory_used"] == 0 and gpus["0"]["parent_uuid"] is None
    k = by_notebook(data)["mig.ipynb"]
    assert [(x["id"], x["uuid"], x["memory_bytes"]) for x in k["gpus"]] == [("2/2/0", "MIG-bbbbbbbb-2222", 6 * GIB)]
    assert k["gpu_memory_bytes"] == 6 * GIB and k["gpu_percent"] is None  # no per-process SM on MIG
    r = run_nbtui("ls", env=gpu.env(JUPYTER_RUNTIME_DIR=str(server.runtime_dir)))
    assert "GPU 2/2/0 (MIG, simulated) 6.0G used, SM not supported on MIG: kernels 6.0G" in r.stdout, r.stdout


def test_the_exporter_labels_gpus_and_kernels_with_the_right_bytes(gpu, server, tmp_path):
    log = tmp_path / "exporter.log"
    env = dict(os.environ) | gpu.env(JUPYTER_RUNTIME_DIR=str(server.runtime_dir))
    proc = subprocess.Popen([sys.executable, "-m", "nbtui", "exporter", "--listen", "127.0.0.1:0", "--per-kernel"],
                            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        line = wait_for(lambda: "serving http" in log.read_text() and log.read_text(), 60, 0.1, "the exporter")
        url = line.split("serving ", 1)[1].split()[0]
        import httpx

        def scraped():
            body = httpx.get(url, timeout=10).text
            return "nbtui_kernel_gpu_memory_bytes{" in body and body

        body = wait_for(scraped, 60, 0.2, "GPU series")
        kid = server.kernel_ids["train.ipynb"]
        series = [s for s in body.splitlines() if s.startswith("nbtui_kernel_gpu_memory_bytes{") and kid in s]
        assert len(series) == 1 and 'gpu="0"' in series[0]
        assert float(series[0].rsplit(" ", 1)[1]) == 2 * GIB + 512 * MIB
        parts = {s.split('holder="')[1].split('"')[0]: float(s.rsplit(" ", 1)[1]) for s in body.splitlines()
                 if s.startswith("nbtui_gpu_memory_bytes{") and 'gpu="0"' in s}
        assert parts["kernels"] >= 2 * GIB + 512 * MIB and parts["unattributed"] == 123 * MIB
        mig = [x for x in body.splitlines() if x.startswith("nbtui_kernel_gpu_memory_bytes{")
               and server.kernel_ids["mig.ipynb"] in x]
        assert len(mig) == 1 and 'gpu="2/2/0"' in mig[0] and float(mig[0].rsplit(" ", 1)[1]) == 6 * GIB
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it where it can)")
def test_the_tui_shows_the_gpu_strip_and_the_kernels_bytes(gpu, server, tmp_path, config_dir):
    from tests.test_tui_terminal import Tmux

    term = Tmux(tmp_path, 150, 30)
    env = gpu.env(JUPYTER_RUNTIME_DIR=str(server.runtime_dir), NBTUI_CONFIG=str(config_dir),
                  NBTUI_STATE_DIR=os.environ["NBTUI_STATE_DIR"], TERM="xterm-256color", NBTUI_ROOT_DISCOVERY="0")
    term.start(f"{sys.executable} -m nbtui", env)
    try:
        screen = wait_for(lambda: "train.ipynb" in term.screen() and "GPU 1 (simulated)" in term.screen()
                          and term.screen(), 90, 0.2, "the kernels and the GPU strip")
        assert "GPU 0 (simulated)" in screen and "kernels 2.5G" in screen  # the kernel and its worker
        row = next(line for line in screen.splitlines() if "train.ipynb" in line)
        assert "2.5G" in row
        term.keys("q")
    finally:
        term.kill()
