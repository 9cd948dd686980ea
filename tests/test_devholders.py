"""Every byte has a name: GPU memory NVML lists no process for, explained by the processes
that hold the GPU's device node (found as `fuser -v /dev/nvidia*` would), end to end through
the real `nbtui` command line.

No GPU exists here: NVML is the recorded ``FakeNvml`` (tests/nvml_stub), reporting a GPU
whose used memory no process is listed for, and the device node is a file each test creates
and names as the node pattern (``NBTUI_GPU_DEVICE_NODES``). The holders are real processes
this test starts: a plain program, and a zombie whose live thread still holds the node.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from nbtui.host import devholders
from nbtui.core.model import UNKILLABLE, DeviceHolder, GpuDevice, GpuLedger
from tests.conftest import run_nbtui
from tests.jupyter import wait_for
from tests.localuser import SYSTEM_PYTHON, local_user  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parent.parent
STUB = Path(__file__).resolve().parent / "nvml_stub"
GIB = 1024**3

HOLDER = "import sys, time; f = open(sys.argv[1]); print('ready', flush=True); time.sleep(600)"
# A child whose main thread ends alone (the exit syscall, not exit_group): it shows as a
# zombie (Z, <defunct>) while its other thread lives on holding the node, as a process stuck
# in the driver does. Its parent never reaps it.
SYS_EXIT = {"x86_64": 60, "aarch64": 93}
ZOMBIE_HOLDER = f"""
import ctypes, os, sys, threading, time
pid = os.fork()
if pid == 0:
    f = open(sys.argv[1])
    threading.Thread(target=time.sleep, args=(600,)).start()
    ctypes.CDLL(None).syscall({SYS_EXIT.get(os.uname().machine, -1)}, 0)
    os._exit(1)
print(pid, flush=True)
time.sleep(600)
"""


@pytest.fixture
def node(tmp_path) -> Path:
    """A stand-in device node, and the environment that makes nbtui take it for one
    (with a GPU that has 2 GiB used and no process listed)."""
    path = tmp_path / "dev" / "nvidia0"
    path.parent.mkdir()
    path.touch()
    return path


def env_for(node: Path) -> dict:
    return {"PYTHONPATH": os.pathsep.join([str(STUB), str(ROOT)]), "NBTUI_TEST_NVML": json.dumps({"used": 2 * GIB}),
            devholders.ENV: str(node.parent / "nvidia*")}


@pytest.fixture
def started():
    """Processes this test starts, killed (with their children) at teardown by PID."""
    procs: list[subprocess.Popen] = []
    extra: list[int] = []

    def start(code: str, *args: str) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
        procs.append(p)
        return p

    start.children = extra  # type: ignore[attr-defined]
    yield start
    for pid in extra:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    for p in procs:
        p.kill()
        p.wait()


def state_of(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[0].decode()


def ls_json(node: Path) -> dict:
    r = run_nbtui("--no-discover", "ls", "--json", env=env_for(node))
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_program_holding_the_device_node_is_named_as_a_holder_in_ls(node, started):
    p = started(HOLDER, str(node), "train-\x1b[2J-marker")
    assert p.stdout.readline().strip() == "ready"
    gpu = ls_json(node)["gpus"][0]
    assert gpu["ledger"]["unassigned"] == 2 * GIB  # used, and NVML lists no process for it
    mine = [h for h in gpu["holders"] if h["pid"] == p.pid]
    assert mine == [{"pid": p.pid, "user": psutil.Process(p.pid).username(),
                     "cmdline": f"{sys.executable} -c {HOLDER} {node} train-\x1b[2J-marker",
                     "state": "S", "unkillable": False, "nodes": [str(node)]}]
    # `nbtui ls` names it, the command line's escape shown, never sent to the terminal.
    r = run_nbtui("--no-discover", "ls", env={**env_for(node), "COLUMNS": "300"})
    assert r.returncode == 0, r.stderr
    assert "GPU 0: 2.0G used that NVML names no process for; its device is held by:" in r.stdout
    line = next(x for x in r.stdout.splitlines() if f"pid {p.pid} " in x)
    assert "train-\\x1b[2J-marker" in line and "\x1b" not in r.stdout
    assert UNKILLABLE not in line


def test_a_zombie_holding_the_node_is_unkillable_and_kill_refuses_it(node, started):
    if os.uname().machine not in SYS_EXIT:
        pytest.skip(f"no exit syscall number known for {os.uname().machine}")
    parent = started(ZOMBIE_HOLDER, str(node))
    child = int(parent.stdout.readline())
    started.children.append(child)  # type: ignore[attr-defined]
    wait_for(lambda: state_of(child) == "Z", 10, what="the child's main thread to exit")
    holder = next(h for h in ls_json(node)["gpus"][0]["holders"] if h["pid"] == child)
    assert (holder["state"], holder["unkillable"], holder["nodes"]) == ("Z", True, [str(node)])
    assert holder["cmdline"].endswith("<defunct>")
    r = run_nbtui("--no-discover", "ls", env={**env_for(node), "COLUMNS": "300"})
    assert f"Z [{psutil.Process(child).name()}] <defunct> — {UNKILLABLE}" in r.stdout

    r = run_nbtui("--no-discover", "kill", f"pid:{child}", "--yes", env=env_for(node))
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert f"pid {child} is in state Z (zombie) with {node} open: {UNKILLABLE}" in r.stdout + r.stderr
    assert state_of(child) == "Z" and len(os.listdir(f"/proc/{child}/task")) == 2  # nothing was signalled


def test_holders_go_on_the_gpu_whose_node_they_hold_and_never_on_one_whose_bytes_are_named():
    a = DeviceHolder(pid=10, user="bob", cmdline="python a.py", state="S", nodes=("/dev/nvidia0", "/dev/nvidiactl"))
    b = DeviceHolder(pid=11, user="ann", cmdline="python b.py", state="D", nodes=("/dev/nvidia1",))
    ctl = DeviceHolder(pid=12, user="ann", cmdline="nvidia-smi", state="S", nodes=("/dev/nvidiactl",))
    listed = DeviceHolder(pid=13, user="ann", cmdline="python c.py", state="S", nodes=("/dev/nvidia0",))
    found = devholders.Found((a, b, ctl, listed), note="holders: only your own processes were looked at")
    gpus = (GpuDevice(0, "GPU-a", "H100", 5 * GIB, 80 * GIB, 0.0, ledger=GpuLedger(kernels=4 * GIB, unassigned=GIB)),
            GpuDevice(1, "GPU-b", "H100", 3 * GIB, 80 * GIB, 0.0, ledger=GpuLedger(unattributed=3 * GIB)),
            GpuDevice(2, "GPU-c", "H100", GIB, 80 * GIB, 0.0, ledger=GpuLedger(kernels=GIB)))
    # The driver says which minor each GPU is: each holder on its own GPU; 13 is NVML's already.
    g0, g1, g2 = devholders.attach(gpus, found, booked={13}, minors={"GPU-a": 0, "GPU-b": 1, "GPU-c": 2})
    assert [h.pid for h in g0.holders] == [10] and [h.pid for h in g1.holders] == [11]
    assert g1.holders[0].unkillable and g0.holders_note == found.note
    assert (g2.holders, g2.holders_note) == ((), None)  # every byte named: no holders to look for
    # Where the host does not say, never guessed onto one GPU: listed on each with unnamed memory.
    g0, g1, _ = devholders.attach(gpus, found, booked={13}, minors={})
    assert [h.pid for h in g0.holders] == [h.pid for h in g1.holders] == [10, 11]


def test_the_fleet_screen_names_the_holders_below_its_servers_and_shows_a_hostile_command_as_text():
    from types import SimpleNamespace

    from nbtui.core.model import Snapshot
    from nbtui.tui.fleet_header import server_lines
    stuck = DeviceHolder(pid=4242, user="bob\x1b[31m", cmdline="[python] <defunct>", state="Z", nodes=("/dev/nvidia0",))
    evil = DeviceHolder(pid=4343, user="ann", cmdline="python \x1b]0;owned\x07x.py", state="S", nodes=("/dev/nvidia0",))
    gpu = GpuDevice(0, "GPU-a", "H100", 3 * GIB, 80 * GIB, 0.0, ledger=GpuLedger(unassigned=3 * GIB), holders=(stuck, evil))
    text = server_lines(Snapshot(generated_at=None, gpus=(gpu,)), 100, theme=SimpleNamespace(success="green"))  # type: ignore[arg-type]
    assert text.plain.splitlines() == [
        "GPU 0 3.0G used: unassigned 3.0G",  # the GPU strip's line, then who holds what it cannot name
        "GPU 0: 3.0G used that NVML names no process for; its device is held by:",
        f"  pid 4242 (bob\\x1b[31m) Z [python] <defunct> — {UNKILLABLE}",
        "  pid 4343 (ann) S python \\x1b]0;owned\\x07x.py",
    ]


def test_as_a_user_only_ones_own_holders_are_found_and_it_says_so(local_user, started):  # noqa: F811
    node = local_user.base / "dev" / "nvidia0"  # where the user can read it
    node.parent.mkdir()
    node.touch()
    node.chmod(0o644)
    roots = started(HOLDER, str(node))
    assert roots.stdout.readline().strip() == "ready"
    log = local_user.base / "holder.log"
    local_user.popen(SYSTEM_PYTHON, "-c", HOLDER, str(node), log=log)  # ended with the user at teardown
    wait_for(lambda: "ready" in log.read_text(), 20, what="the user's holder to open the node")
    code = ("import json; from nbtui.host import devholders; "
            f"f = devholders.scan({str(node.parent / 'nvidia*')!r}); "
            "print(json.dumps([[h.user for h in f.holders], f.note]))")
    r = subprocess.run(["runuser", "-u", local_user.name, "--", *local_user.env(), SYSTEM_PYTHON, "-c", code],
                       capture_output=True, text=True, timeout=60, cwd=local_user.base)
    assert r.returncode == 0, r.stderr
    users, note = json.loads(r.stdout)
    assert users == [local_user.name]  # root's holder is not the user's to see
    assert note == "holders: only your own processes were looked at (run as root to see every holder)"


def test_gpus_with_the_same_holders_share_their_lines():
    from nbtui.display import report
    from nbtui.core.model import Snapshot
    daemon = DeviceHolder(pid=77, user="root", cmdline="/usr/bin/nvidia-persistenced", state="S", nodes=("/dev/nvidia0",))
    gpus = tuple(GpuDevice(i, f"GPU-{i}", "H100", GIB, 80 * GIB, 0.0, ledger=GpuLedger(unassigned=GIB), holders=(daemon,))
                 for i in range(3))
    none = GpuDevice(3, "GPU-3", "H100", GIB, 80 * GIB, 0.0, ledger=GpuLedger(unassigned=GIB), holders=(),
                     holders_note="holders: only your own processes were looked at")
    snap = Snapshot(generated_at=None, gpus=(*gpus, none))  # type: ignore[arg-type]
    assert report.holder_lines(snap, width=120) == [
        "GPUs 0, 1, 2: 3.0G used that NVML names no process for; their devices are held by:",
        "  pid 77 (root) S /usr/bin/nvidia-persistenced",
        "GPU 3: 1.0G used that NVML names no process for; no holder of its device found:",
        "  (holders: only your own processes were looked at)",
    ]
    assert report.holder_lines(snap, width=120, found_only=True) == report.holder_lines(snap, width=120)[:2]
