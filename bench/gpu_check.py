"""nbtui's own GPU check: every kind of holder on a real NVIDIA GPU, asked through nbtui's CLI.

It cannot run without a GPU (it says so in one line and exits 1). On a machine with one
(the project's device machine: Python with PyTorch, nvidia-ml-py, psutil, httpx) it builds:

- a notebook kernel holding 2 GiB, and a child process of that kernel holding 1 GiB;
- a Jupyter terminal (REST + its websocket, as JupyterLab opens one) running a job that
  holds 512 MiB;
- a process that is no Jupyter process at all holding 256 MiB;

and checks `nbtui ls --json` against NVML and psutil read by this script: nbtui's probe of
the driver's process-info layout decodes the same pids and bytes as nvidia-ml-py (on a driver
whose layout the binding knows), every GPU has its `id` and is not `simulated`, the kernel's GPU
memory is its whole tree's, the terminal's row covers its job (which is no leftover), the
other process is named in the GPU ledger, and each GPU's ledger sums to NVML's used memory.
Then it kills the Jupyter server with SIGKILL: the kernel's child is a leftover with its
GPU memory, notebook and reason, the ledger counts it as a leftover and still sums, and
`nbtui kill pid:N --yes` frees it; `nbtui demo` says it uses this host's GPU. One PASS/FAIL line per check, `gpu-check: N passed,
M failed` last.

Run on the device machine from the project root, after `bash ../shared/device/prepare.sh`
here (it builds `.device/` with the wheels nbtui needs there):

    carry [".device"], command:
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .device/whl/*.whl &&
    PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH timeout 420 python3 bench/gpu_check.py
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

GIB = 1024**3
MIB = 1024**2
results: list[bool] = []


def check(name: str, ok, detail: str = "") -> bool:
    results.append(bool(ok))
    print(("PASS " if ok else "FAIL ") + name + (f"  ({detail})" if detail else ""), flush=True)
    return bool(ok)


def no_gpu_reason() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() == 0:
            return "NVML sees no GPU"
    except Exception as e:  # noqa: BLE001 - any failure means: no GPU to check on
        return f"NVML: {type(e).__name__}: {e}".strip()
    try:
        import torch

        if not torch.cuda.is_available():
            return "PyTorch sees no CUDA device"
    except ImportError:
        return "no PyTorch to allocate GPU memory with"
    return None


def within(a: int, b: int, frac: float = 0.02, slack: int = 64 * MIB) -> bool:
    return abs(a - b) <= max(frac * max(a, b), slack)


class Check:
    def __init__(self):
        import httpx

        self.httpx = httpx
        self.work = tempfile.mkdtemp(prefix="nbtui-gpu-check-")
        for d in ("root", "runtime", "cfg", "state"):
            os.makedirs(f"{self.work}/{d}")
        self.env = dict(os.environ, JUPYTER_RUNTIME_DIR=f"{self.work}/runtime", NBTUI_CONFIG=f"{self.work}/cfg",
                        NBTUI_STATE_DIR=f"{self.work}/state", NBTUI_ROOT_DISCOVERY="0")
        for var in ("JPY_PARENT_PID", "JPY_SESSION_NAME"):
            self.env.pop(var, None)
        self.token = uuid.uuid4().hex
        self.port = 18931
        self.url = f"http://127.0.0.1:{self.port}"
        self.h = {"Authorization": f"token {self.token}"}
        self.spawned: list[subprocess.Popen] = []
        import pynvml

        self.nv = pynvml
        self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]

    # -- ground truth -------------------------------------------------------------------------

    def nvml_by_pid(self) -> dict[int, int]:
        used: dict[int, int] = {}
        for h in self.handles:
            for p in self.nv.nvmlDeviceGetComputeRunningProcesses(h):
                used[p.pid] = used.get(p.pid, 0) + (p.usedGpuMemory or 0)
        return used

    def wait_on_gpu(self, pids, timeout=60.0) -> dict[int, int]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = self.nvml_by_pid()
            if all(p in got for p in pids):
                return got
            time.sleep(0.5)
        return self.nvml_by_pid()

    def nbtui(self, *args, timeout=90):
        p = subprocess.run([sys.executable, "-m", "nbtui", *args], env=self.env, capture_output=True, text=True,
                           timeout=timeout)
        return p

    def ls(self, *extra):
        p = self.nbtui("ls", "--json", *extra)
        try:
            return p, json.loads(p.stdout)
        except ValueError:
            return p, None

    # -- building the situation -------------------------------------------------------------

    def start_server(self):
        self.server = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--allow-root", f"--IdentityProvider.token={self.token}",
             f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.root_dir={self.work}/root", "--ServerApp.open_browser=False"],
            env=self.env, stdout=open(f"{self.work}/server.log", "w"), stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if self.httpx.get(f"{self.url}/api/status", headers=self.h, timeout=2).status_code == 200:
                    return True
            except self.httpx.HTTPError:
                pass
            time.sleep(0.3)
        return False

    def kernel_with_child(self):
        import websocket  # websocket-client, installed with jupyter_server

        session = self.httpx.post(f"{self.url}/api/sessions", headers=self.h, timeout=60, json={
            "path": "gpu.ipynb", "type": "notebook", "name": "gpu.ipynb", "kernel": {"name": "python3"}}).json()
        self.kid = session["kernel"]["id"]
        ws = websocket.create_connection(
            f"ws://127.0.0.1:{self.port}/api/kernels/{self.kid}/channels?session_id={uuid.uuid4().hex}",
            header=[f"Authorization: token {self.token}"], timeout=180)
        child = ("import torch,time; y=torch.empty(1024**3,dtype=torch.uint8,device='cuda'); "
                 "torch.cuda.synchronize(); time.sleep(3600)")
        code = ("import torch, subprocess, sys, os\n"
                "_x = torch.empty(2*1024**3, dtype=torch.uint8, device='cuda'); torch.cuda.synchronize()\n"
                f"_child = subprocess.Popen([sys.executable, '-c', {child!r}])\n"
                "print(os.getpid(), _child.pid)")
        mid = uuid.uuid4().hex
        ws.send(json.dumps({"header": {"msg_id": mid, "msg_type": "execute_request", "username": "check",
                                       "session": "c", "date": "", "version": "5.3"},
                            "parent_header": {}, "metadata": {}, "channel": "shell",
                            "content": {"code": code, "silent": False, "store_history": False,
                                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
        text = ""
        while True:
            m = json.loads(ws.recv())
            if m.get("parent_header", {}).get("msg_id") != mid:
                continue
            if m["msg_type"] == "stream":
                text += m["content"]["text"]
            elif m["msg_type"] == "error":
                raise RuntimeError("\n".join(m["content"]["traceback"])[-500:])
            elif m["msg_type"] == "execute_reply":
                break
        ws.close()
        self.kernel_pid, self.child_pid = map(int, text.split())

    def terminal_job(self):
        import psutil
        import websocket

        self.term = self.httpx.post(f"{self.url}/api/terminals", headers=self.h, timeout=30).json()["name"]
        ws = websocket.create_connection(f"ws://127.0.0.1:{self.port}/terminals/websocket/{self.term}",
                                         header=[f"Authorization: token {self.token}"], timeout=60)
        ws.recv()
        mark = f"nbtui-gpu-check-{uuid.uuid4().hex[:8]}"
        job = (f"{sys.executable} -c \"import torch,time; y=torch.empty(512*1024**2,dtype=torch.uint8,device='cuda'); "
               f"torch.cuda.synchronize(); time.sleep(3600)  # {mark}\"")
        ws.send(json.dumps(["stdin", job + "\r"]))
        time.sleep(0.5)
        ws.close()
        deadline = time.time() + 60
        while time.time() < deadline:
            for p in psutil.process_iter(["cmdline"]):
                if any(mark in a for a in (p.info["cmdline"] or [])):
                    self.term_job = p.pid
                    return
            time.sleep(0.3)
        raise RuntimeError("the terminal job did not start")

    def other_process(self):
        env = {k: v for k, v in self.env.items() if not k.startswith("JPY_")}
        code = ("import torch,time; y=torch.empty(256*1024**2,dtype=torch.uint8,device='cuda'); "
                "torch.cuda.synchronize(); time.sleep(3600)")
        p = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
        self.spawned.append(p)
        self.other_pid = p.pid

    # -- the checks ---------------------------------------------------------------------------

    def check_ledgers(self, snap, truth, when: str):
        for g in snap.get("gpus", []):
            led = g.get("ledger")
            if not check(f"{when}: GPU {g['index']} has a ledger", led is not None, str(g)[:160]):
                continue
            parts = [led[k] for k in ("kernels", "terminals", "leftovers", "other", "unattributed", "unassigned")]
            check(f"{when}: GPU {g['index']} ledger sums to NVML used", sum(parts) == g["memory_used"] or led.get("note"),
                  f"{sum(parts)} vs {g['memory_used']}; {led}")
        tot = {k: sum((g.get("ledger") or {}).get(k, 0) for g in snap.get("gpus", []))
               for k in ("kernels", "terminals", "leftovers", "other")}
        return tot

    def live(self):
        truth = self.wait_on_gpu([self.kernel_pid, self.child_pid, self.term_job, self.other_pid])
        print(f"truth: kernel {truth.get(self.kernel_pid, 0) / GIB:.2f} GiB, child {truth.get(self.child_pid, 0) / GIB:.2f}"
              f" GiB, terminal job {truth.get(self.term_job, 0) / GIB:.2f} GiB, other {truth.get(self.other_pid, 0) / GIB:.2f}"
              " GiB", flush=True)
        self.probe(truth)
        p, snap = self.ls()
        if not check("ls --json exits 0 and parses", p.returncode == 0 and snap, p.stderr.strip()[:200]):
            return
        ids = [(g.get("id"), g.get("index"), g.get("simulated")) for g in snap["gpus"]]
        check("every GPU has its id and is no simulated one",
              ids and all(i == str(n) or (i or "").startswith(f"{n}/") for i, n, _sim in ids)
              and not any(sim for _i, _n, sim in ids), str(ids)[:200])
        check("no GPU note on a healthy GPU", snap.get("gpu_note") is None, str(snap.get("gpu_note"))[:200])
        k = next((k for k in snap["kernels"] if k["kernel_id"] == self.kid), None)
        if check("kernel listed", k is not None) and k is not None:
            tree = truth.get(self.kernel_pid, 0) + truth.get(self.child_pid, 0)
            check("kernel pid", k["pid"] == self.kernel_pid, f"{k['pid']} vs {self.kernel_pid}")
            check("kernel GPU memory = NVML over its tree", within(k.get("gpu_memory_bytes") or 0, tree),
                  f"{(k.get('gpu_memory_bytes') or 0) / GIB:.2f} vs {tree / GIB:.2f} GiB")
            check("kernel owner named", bool(k.get("user")), str(k.get("user")))
        t = next((t for t in snap.get("terminals", []) if t["name"] == self.term), None)
        if check("terminal listed", t is not None, str(snap.get("terminals"))[:200]) and t is not None:
            check("terminal row's GPU memory covers its job", within(t.get("gpu_memory_bytes") or 0,
                                                                     truth.get(self.term_job, 0)),
                  f"{(t.get('gpu_memory_bytes') or 0) / GIB:.2f} vs {truth.get(self.term_job, 0) / GIB:.2f} GiB")
        check("terminal job is no leftover", self.term_job not in {x["pid"] for x in snap.get("processes", [])})
        tot = self.check_ledgers(snap, truth, "live")
        others = [o for g in snap["gpus"] for o in (g.get("ledger") or {}).get("others", [])]
        check("the non-Jupyter process is named in the ledger", any(o["pid"] == self.other_pid and o["command"]
                                                                    for o in others), str(others)[:200])
        check("ledger: kernels part = kernel tree", within(tot["kernels"], truth.get(self.kernel_pid, 0)
                                                           + truth.get(self.child_pid, 0)), str(tot))
        check("ledger: terminals part = terminal job", within(tot["terminals"], truth.get(self.term_job, 0)), str(tot))

    def probe(self, truth: dict[int, int]):
        """nbtui's own read of the process lists (record size probed) against nvidia-ml-py's."""
        from nbtui.host.gpu import ProcessLists
        lists = ProcessLists(self.nv)
        mine: dict[int, int] = {}
        for h in self.handles:
            for pid, used, _gi, _ci in lists.read(h, "Compute"):
                mine[pid] = mine.get(pid, 0) + (used or 0)
        size = lists.size.get("Compute")
        check("nbtui's probe finds the driver's process-info record size", size in (16, 24, 32), f"{size} bytes")
        check("nbtui's decoded pids and bytes = nvidia-ml-py's",
              {p: b for p, b in mine.items() if p in truth} == {p: truth[p] for p in truth if p in mine}
              and set(truth) <= set(mine), f"{sorted(mine.items())[:4]} vs {sorted(truth.items())[:4]}")

    def demo(self):
        """`nbtui demo` on a host with a GPU uses it (and says so), never a simulated one."""
        p = subprocess.Popen([sys.executable, "-m", "nbtui", "demo", "--no-tui", "--no-discover"], env=self.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert p.stdout is not None
            line = p.stdout.readline()
            info = json.loads(line) if line.strip() else {}
            check("nbtui demo uses this host's GPU", info.get("gpu") == "real", line.strip()[:200])
        finally:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()

    def after_crash(self):
        import psutil

        os.killpg(self.server.pid, signal.SIGKILL)
        deadline = time.time() + 20
        while time.time() < deadline and psutil.pid_exists(self.kernel_pid):
            time.sleep(0.5)
        time.sleep(2)
        truth = self.nvml_by_pid()
        p, snap = self.ls("--orphans")
        if not check("ls --orphans after SIGKILL exits 0 or 4", p.returncode in (0, 4) and snap,
                     f"rc {p.returncode} {p.stderr.strip()[:150]}"):
            return
        x = next((x for x in snap.get("processes", []) if x["pid"] == self.child_pid), None)
        if check("the kernel's child is a leftover", x is not None) and x is not None:
            check("leftover GPU memory as NVML", within(x.get("gpu_memory_bytes") or 0, truth.get(self.child_pid, 0)),
                  f"{(x.get('gpu_memory_bytes') or 0) / GIB:.2f} vs {truth.get(self.child_pid, 0) / GIB:.2f} GiB")
            check("leftover notebook named", str(x.get("notebook") or "").endswith("gpu.ipynb"), str(x.get("notebook")))
            check("leftover reason", bool(set(x.get("orphan_reasons") or []) & {"server-gone", "kernel-gone"}),
                  str(x.get("orphan_reasons")))
        p, full = self.ls()
        if full:
            tot = self.check_ledgers(full, truth, "after crash")
            check("ledger: leftovers part covers the child", tot["leftovers"] >= truth.get(self.child_pid, 0) - 64 * MIB,
                  str(tot))
        p = self.nbtui("kill", f"pid:{self.child_pid}", "--yes")
        check("kill pid:N exits 0", p.returncode == 0, p.stderr.strip()[:150])
        deadline = time.time() + 15
        while time.time() < deadline and self.child_pid in self.nvml_by_pid():
            time.sleep(0.5)
        check("the leftover's GPU memory is freed", self.child_pid not in self.nvml_by_pid())

    def cleanup(self):
        import psutil

        for pid in [getattr(self, a, None) for a in ("kernel_pid", "child_pid", "term_job")]:
            if pid and psutil.pid_exists(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        for p in self.spawned:
            p.kill()
        try:
            os.killpg(self.server.pid, signal.SIGKILL)
        except (ProcessLookupError, AttributeError):
            pass
        shutil.rmtree(self.work, ignore_errors=True)  # the server's folders, logs and state: nothing left behind


def main() -> int:
    why = no_gpu_reason()
    if why:
        print(f"gpu-check: FAIL, no GPU here ({why}): nothing was checked; run it on a machine with an NVIDIA GPU",
              flush=True)
        return 1
    c = Check()
    try:
        if not check("jupyter server starts", c.start_server()):
            return 1
        c.kernel_with_child()
        c.terminal_job()
        c.other_process()
        c.live()
        c.after_crash()
        c.demo()
    except Exception as e:  # noqa: BLE001 - a broken step is a failed check, then the summary
        check("the check ran to its end", False, repr(e)[:300])
    finally:
        c.cleanup()
    print(f"gpu-check: {sum(results)} passed, {len(results) - sum(results)} failed", flush=True)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
