"""Kill and cull against real servers, real kernels and real leftover processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from nbtui.service.actions.cull import CullPolicy, cull_lock, plan_cull
from nbtui.service.actions.kill import execute, plan_kill

from nbtui.files import audit
from nbtui.files.config import ServerConfig, Settings
from nbtui.service.fleet import Fleet
from nbtui.host import signals
from nbtui.core.model import Process, Snapshot
from nbtui.core.targets import PidTarget
from tests.conftest import run_nbtui
from tests.jupyter import wait_for

SLEEPER = "import time; time.sleep(600)"
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(600)"


def discovered_env(server) -> dict:
    return {"JUPYTER_RUNTIME_DIR": str(server.runtime_dir)}


def name_of(server) -> str:
    return f"local-{server.port}"


def fleet_of(*servers) -> Fleet:
    return Fleet([ServerConfig(name=name_of(s), url=s.url, token_source="discovered", source="discovered",
                               token=s.token, pid=s.pid) for s in servers], Settings())


def spawn_child(server, kernel_id: str, code: str = SLEEPER, own_session: bool = False) -> int:
    """A process started by the kernel (as a DataLoader worker or a subprocess would be).

    ``own_session``: it leaves the kernel's process group, so the server's shutdown misses it.
    """
    reply = server.run_code(kernel_id, "import subprocess, sys\n"
                                       f"_child = subprocess.Popen([sys.executable, '-c', {code!r}], "
                                       f"start_new_session={own_session})\n"
                                       "open('child.pid', 'w').write(str(_child.pid))")
    assert reply["content"]["status"] == "ok", reply
    return int(wait_for(lambda: (server.root_dir / "child.pid").read_text(), 10, what="child pid"))


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def audit_lines() -> list[dict]:
    path = audit.audit_path()
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    # Every outcome line follows its intent line, written before acting (issue 10).
    intents = [x for x in lines if x["result"] == audit.INTENT]
    done = [x for x in lines if x["result"] != audit.INTENT]
    assert [(x["action"], x["target"].get("pid")) for x in intents if x["action"] in ("kill", "cull")] == \
        [(x["action"], x["target"].get("pid")) for x in done if x["action"] in ("kill", "cull")
         and not x["result"].startswith("refused")]
    return done


@pytest.fixture
def stray():
    """Plain local processes for the pid:N tests, killed at teardown whatever happens."""
    procs: list[subprocess.Popen] = []

    def make(code: str = SLEEPER) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        procs.append(p)
        if "ready" in code:
            assert p.stdout.readline().strip() == "ready"
        return p

    yield make
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(10)


@pytest.mark.parametrize("own_session, fate", [
    (False, signals.WENT_WITH_KERNEL),  # the server's shutdown takes the kernel's process group
    (True, signals.EXITED),  # a child in its own session outlives the kernel: nbtui signals it
])
def test_kill_kernel_shuts_it_down_and_signals_its_leftover_child(shared_jupyter, own_session, fate):
    jupyter = shared_jupyter
    (jupyter.root_dir / "child.pid").unlink(missing_ok=True)
    kid = jupyter.create_session("work/a.ipynb")["kernel"]["id"]
    child = spawn_child(jupyter, kid, own_session=own_session)
    r = run_nbtui("kill", f"{name_of(jupyter)}:{kid[:8]}", "--yes", "--grace", "2", env=discovered_env(jupyter))
    assert r.returncode == 0, r.stderr
    assert kid not in {k["id"] for k in jupyter.kernels()}
    wait_for(lambda: gone(child), 10, what="the kernel's child to be gone")
    assert f"pid {child} {fate}" in r.stdout, r.stdout
    [line] = audit_lines()
    assert line["action"] == "kill" and line["result"] == "ok"
    assert line["target"]["kernel_id"] == kid and line["target"]["notebook"] == "work/a.ipynb"
    assert line["target"]["children"] == [child]
    fates = {p["pid"]: p["fate"] for p in line["processes"]}
    assert fates[child] == fate and fates[line["target"]["pid"]] == signals.SHUT_DOWN
    assert jupyter.token not in audit.audit_path().read_text()


def test_server_killed_hard_leaves_a_child_that_kill_pid_frees(jupyter):
    kid = jupyter.create_session("gpu.ipynb")["kernel"]["id"]
    child = spawn_child(jupyter, kid)
    kernel_pid = jupyter.kernel_pid(kid)
    jupyter.kill_hard()
    wait_for(lambda: gone(kernel_pid), 30, what="the kernel to exit after its server")
    assert not gone(child)
    env = discovered_env(jupyter)
    listing = run_nbtui("ls", "--orphans", "--json", env=env)
    assert listing.returncode in (0, 4), listing.stderr
    data = json.loads(listing.stdout)
    procs = {p["pid"]: p for p in data["processes"]}
    assert procs[child]["notebook"].endswith("gpu.ipynb")
    assert procs[child]["kernel_id"] in (kid, None)  # nothing in the child names its dead kernel
    assert procs[child]["server_pid"] == jupyter.pid
    assert set(procs[child]["orphan_reasons"]) == {"server-gone", "kernel-gone"}
    stale = {Path(f).name for f in data["stale_files"]}
    assert {f"jpserver-{jupyter.pid}.json", f"kernel-{kid}.json"} <= stale
    human = run_nbtui("ls", "--orphans", env={**env, "COLUMNS": "400"}).stdout
    assert f"pid {child} (" in human and f"gpu.ipynb) on server pid {jupyter.pid}, which is gone" in human, human
    r = run_nbtui("kill", f"pid:{child}", "--yes", env=env)
    assert r.returncode == 0, r.stderr
    assert gone(child)
    assert f"pid {child} exited after SIGTERM" in r.stdout
    [line] = audit_lines()
    assert line["target"]["pid"] == child and line["result"] == "ok"
    assert line["target"]["notebook"].endswith("gpu.ipynb")
    after = json.loads(run_nbtui("ls", "--orphans", "--json", env=env).stdout)
    assert child not in {p["pid"] for p in after["processes"]}


def test_a_process_that_ignores_sigterm_is_killed_after_the_grace(stray):
    p = stray(STUBBORN)
    r = run_nbtui("kill", f"pid:{p.pid}", "--yes", "--grace", "0.5")
    assert r.returncode == 0, r.stderr
    assert p.wait(5) == -9
    assert f"pid {p.pid} killed with SIGKILL" in r.stdout


def test_kill_refuses_a_pid_reused_by_another_program(stray):
    p = stray()
    real = signals.identify(p.pid)
    # As listed earlier: same PID, but another process (another create time).
    listed = Process(pid=p.pid, user=real.user, cmdline="python train.py", create_time=real.create_time - 100)
    snap = Snapshot(generated_at=None, processes=(listed,))
    [step] = plan_kill(snap, [PidTarget(p.pid)])
    assert step.refusal and "another program" in step.refusal
    # ... and the act re-checks too, in case the PID changes hands after planning.
    fates = signals.terminate([signals.Ident(p.pid, real.create_time - 100, real.user, "x")], grace=0.2)
    assert fates[0].fate.startswith("refused") and not fates[0].ok
    assert p.poll() is None


def test_without_yes_or_terminal_nothing_is_killed(stray):
    p = stray()
    r = run_nbtui("kill", f"pid:{p.pid}", input="y\n")
    assert r.returncode == 2 and "--yes" in r.stderr
    assert p.poll() is None and not audit_lines()


@pytest.mark.parametrize("pid_of, why", [
    (lambda: 1, "PID 1"),
    (os.getpid, "ancestors"),  # the test runner is nbtui's parent here
])
def test_protected_processes_are_refused(pid_of, why):
    r = run_nbtui("kill", f"pid:{pid_of()}", "--yes")
    assert r.returncode == 1 and why in r.stdout, (r.stdout, r.stderr)


def test_missing_pid_is_not_found():
    r = run_nbtui("kill", "pid:999999999", "--yes")
    assert r.returncode == 3 and "no process" in r.stderr


def test_dry_run_changes_nothing(shared_jupyter, stray):
    jupyter = shared_jupyter
    kid = jupyter.start_kernel()
    p = stray()
    env = discovered_env(jupyter)
    before = sorted(k["id"] for k in jupyter.kernels())
    r = run_nbtui("kill", f"{name_of(jupyter)}:{kid}", f"pid:{p.pid}", "--dry-run", env=env)
    assert r.returncode == 0, r.stderr
    assert f"would kill kernel {name_of(jupyter)}:{kid[:8]}" in r.stdout and f"would kill pid {p.pid}" in r.stdout
    c = run_nbtui("cull", "--idle", "0s", "--dry-run", "--json", env=env)
    assert c.returncode == 0, c.stderr
    assert kid in [s["kernel_id"] for s in json.loads(c.stdout)["plan"]]
    assert sorted(k["id"] for k in jupyter.kernels()) == before
    assert p.poll() is None and not audit_lines()


def test_cull_orphans_takes_missing_notebooks_and_sessionless_kernels(jupyter):
    jupyter.write_notebook("keep.ipynb")
    jupyter.write_notebook("lost.ipynb")
    keep = jupyter.create_session("keep.ipynb")["kernel"]["id"]
    lost = jupyter.create_session("lost.ipynb")["kernel"]["id"]
    bare = jupyter.start_kernel()
    (jupyter.root_dir / "lost.ipynb").unlink()
    env = discovered_env(jupyter)
    ls = json.loads(run_nbtui("ls", "--orphans", "--json", env=env).stdout)
    assert {k["kernel_id"]: k["orphan_reasons"] for k in ls["kernels"]} == {
        lost: ["notebook-missing"], bare: ["no-session"]}
    # --server: this server's kernels only (leftover processes of other tests on this host stay out)
    r = run_nbtui("cull", "--orphans", "--server", name_of(jupyter), "--yes", "--json", env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert sorted(x["target"] for x in out["results"]) == sorted(f"{name_of(jupyter)}:{k}" for k in (lost, bare))
    assert all(x["ok"] for x in out["results"])
    assert {k["id"] for k in jupyter.kernels()} == {keep}
    assert {line["target"]["kernel_id"] for line in audit_lines()} == {lost, bare}
    assert all(line["action"] == "cull" for line in audit_lines())
    assert jupyter.token not in r.stdout
    again = run_nbtui("cull", "--orphans", "--server", name_of(jupyter), "--yes", env=env)  # idempotent
    assert again.returncode == 0 and again.stdout.strip() == "nothing to cull"


def test_two_culls_never_race(shared_jupyter):
    jupyter = shared_jupyter
    kid = jupyter.start_kernel()
    with cull_lock():
        r = run_nbtui("cull", "--idle", "0s", "--yes", env=discovered_env(jupyter))
    assert r.returncode == 1 and "another nbtui cull is running" in r.stderr
    assert kid in {k["id"] for k in jupyter.kernels()}


def test_cull_usage_errors_and_nothing_selected():
    r = run_nbtui("cull", "--idle", "2hrs")
    assert r.returncode == 2 and "90s, 30m, 2h, 1d" in r.stderr
    r = run_nbtui("cull")
    assert r.returncode == 0 and r.stdout.strip() == "nothing to cull"


async def test_a_server_going_down_mid_cull_spares_the_rest(jupyter_factory):
    a, b = jupyter_factory("a"), jupyter_factory("b")
    ka, kb = a.start_kernel(), b.start_kernel()
    async with fleet_of(a, b) as fleet:
        snap = await fleet.snapshot()
        steps = plan_cull(snap, CullPolicy(idle=0.0))
        assert sorted(s.kernel.kernel_id for s in steps) == sorted([ka, kb])
        a.kill_hard()
        outcomes = await execute(fleet, steps, grace=1)
    by_kernel = {o.step.kernel.kernel_id: o for o in outcomes}
    assert by_kernel[kb].ok and kb not in {k["id"] for k in b.kernels()}
    assert not by_kernel[ka].ok and by_kernel[ka].server_error
    assert by_kernel[ka].result.startswith("failed: server local-")
    assert [line["result"] for line in audit_lines()] == [o.result for o in outcomes]


def test_a_process_that_exited_but_was_not_reaped_is_already_gone(stray):
    p = stray("import sys; sys.exit(0)")
    wait_for(lambda: psutil.Process(p.pid).status() == psutil.STATUS_ZOMBIE, 10, what="a zombie")
    r = run_nbtui("kill", f"pid:{p.pid}", "--yes")
    assert r.returncode == 0 and f"pid:{p.pid}: gone" in r.stdout, (r.stdout, r.stderr)


def test_a_listed_process_that_vanished_before_the_act_is_reported_gone(stray):
    p = stray()
    real = signals.identify(p.pid)
    listed = Process(pid=p.pid, user=real.user, cmdline=real.cmdline, create_time=real.create_time)
    [step] = plan_kill(Snapshot(generated_at=None, processes=(listed,)), [PidTarget(p.pid)])
    assert step.refusal is None
    p.kill()
    p.wait(10)
    import asyncio

    [outcome] = asyncio.run(execute(None, [step], grace=0.5))
    assert outcome.result == "gone" and outcome.ok
    assert audit_lines()[-1]["result"] == "gone"


def test_a_terminal_answer_confirms_default_no(stray):
    import pty

    p = stray()
    for answer, alive in (("n\n", True), ("y\n", False)):
        master, slave = pty.openpty()
        try:
            os.write(master, answer.encode())
            r = subprocess.run([sys.executable, "-m", "nbtui", "kill", f"pid:{p.pid}"], stdin=slave,
                               capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent.parent)
        finally:
            os.close(master)
            os.close(slave)
        assert "Kill 1 target? [y/N]" in r.stderr
        assert (p.poll() is None) == alive, (answer, r.stdout, r.stderr)
        assert r.returncode == (1 if alive else 0)


def test_a_server_named_by_pid_is_killed_with_its_kernels_and_no_token_is_written(jupyter):
    kid = jupyter.start_kernel()
    kernel_pid = jupyter.kernel_pid(kid)
    env = discovered_env(jupyter)
    assert jupyter.token in " ".join(psutil.Process(jupyter.pid).cmdline())
    r = run_nbtui("kill", f"pid:{jupyter.pid}", "--yes", "--json", "--grace", "2", env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    [result] = out["results"]
    assert result["ok"] and {p["pid"] for p in result["processes"]} >= {jupyter.pid, kernel_pid}
    assert "--IdentityProvider.token=***" in out["plan"][0]["cmdline"]
    assert jupyter.token not in r.stdout + r.stderr
    assert jupyter.token not in audit.audit_path().read_text()
    wait_for(lambda: gone(kernel_pid), 10, what="the server's kernel to go")
    jupyter.proc.wait(10)


def test_an_unwritable_audit_log_stops_the_kill_before_it_starts(stray, tmp_path):
    # Issue 10: the intent line comes BEFORE acting; if it cannot be written nothing is done.
    p = stray()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    r = run_nbtui("kill", f"pid:{p.pid}", "--yes", env={"NBTUI_STATE_DIR": str(blocker / "state")})
    assert r.returncode == 1 and p.poll() is None, r.stderr
    [line] = r.stderr.splitlines()
    assert "not started: cannot write the audit log" in line and str(blocker / "state") in line


def test_a_kernel_that_ignores_shutdown_goes_after_the_servers_own_timeout(jupyter_factory):
    srv = jupyter_factory("deaf", extra_args=("--KernelManager.shutdown_wait_time=1",))
    kid = srv.start_kernel()
    reply = srv.run_code(kid, "async def _deaf(*a, **k):\n    pass\n"
                              "k = get_ipython().kernel\nk.control_handlers['shutdown_request'] = _deaf\n"
                              "k.shell_handlers['shutdown_request'] = _deaf")
    assert reply["content"]["status"] == "ok"
    kernel_pid = srv.kernel_pid(kid)
    r = run_nbtui("kill", f"{name_of(srv)}:{kid}", "--yes", env=discovered_env(srv))
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert f"pid {kernel_pid} shut down by its server" in r.stdout
    assert kid not in {k["id"] for k in srv.kernels()} and gone(kernel_pid)


def test_pid_of_a_live_kernel_goes_through_its_server(shared_jupyter):
    jupyter = shared_jupyter
    kid = jupyter.start_kernel()
    kernel_pid = jupyter.kernel_pid(kid)
    r = run_nbtui("kill", f"pid:{kernel_pid}", "--yes", env=discovered_env(jupyter))
    assert r.returncode == 0, r.stderr
    assert f"kill kernel {name_of(jupyter)}:{kid[:8]}" in r.stdout  # not a bare signal the server would undo
    assert kid not in {k["id"] for k in jupyter.kernels()} and gone(kernel_pid)


def test_rows_on_the_screen_are_planned_as_nbtui_kill_plans_their_targets():
    """The TUI's k plans through plan_kill: a live kernel's PID (a process row of it) goes
    through its server, and a kernel named twice is one step."""
    import datetime as dt

    from nbtui.core.kinds import KERNEL
    from nbtui.core.model import Kernel, ServerInfo, Usage
    from nbtui.service.actions.kill import plan_rows

    now = dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.timezone.utc)
    k = Kernel("far", "k1", "python3", "idle", 0, now, usage=Usage(source="extension", pid=4242))
    its_process = Process(4242, "ana", "python -m ipykernel_launcher", 1.0)
    snap = Snapshot(generated_at=now, servers=(ServerInfo("far", "http://gpu1:8888/", "config"),), kernels=(k,))
    assert [(s.kind, s.target) for s in plan_rows(snap, [its_process, k])] == [(KERNEL, "far:k1")]


async def test_a_cull_spares_a_kernel_whose_session_came_or_moved_after_the_plan(jupyter):
    """A cull plans from a snapshot (a screen's is as old as what it shows and the
    confirmation): a kernel chosen for having no session that got one since, and one chosen
    for its missing notebook whose session names another since, and one whose notebook was
    put back since, are refused at the re-check; the kernel that is still an orphan is culled."""
    lonely, attached = jupyter.start_kernel(), jupyter.start_kernel()
    moved = jupyter.create_session("gone/was.ipynb")  # no such file: notebook-missing
    restored = jupyter.create_session("gone/back.ipynb")
    fleet = fleet_of(jupyter)
    fleet.checks_notebooks = True
    async with fleet:
        snap = await fleet.snapshot()
        steps = plan_cull(snap, CullPolicy(orphans=True))
        reasons = {s.kernel.kernel_id: s.reasons for s in steps if s.kernel is not None}
        assert "no-session" in reasons[lonely] and "no-session" in reasons[attached]
        assert "notebook-missing" in reasons[moved["kernel"]["id"]]
        assert "notebook-missing" in reasons[restored["kernel"]["id"]]
        jupyter.create_session("work/now.ipynb", kernel_id=attached)  # opened meanwhile
        jupyter.write_notebook("gone/back.ipynb")  # put back meanwhile (the plan's answer is up to a minute old)
        jupyter.write_notebook("work/moved.ipynb")
        jupyter.api("PATCH", f"api/sessions/{moved['id']}", json={"path": "work/moved.ipynb"})
        outcomes = await execute(fleet, steps, grace=1, action="cull")
    by_kernel = {o.step.kernel.kernel_id: o for o in outcomes if o.step.kernel is not None}
    assert by_kernel[lonely].ok
    assert by_kernel[attached].result == "refused: a session refers to it now (re-checked before acting)"
    assert by_kernel[moved["kernel"]["id"]].result == \
        "refused: its session names another notebook now (re-checked before acting)"
    assert by_kernel[restored["kernel"]["id"]].result == "refused: its notebook exists now (re-checked before acting)"
    alive = {k["id"] for k in jupyter.kernels()}
    assert lonely not in alive and {attached, moved["kernel"]["id"], restored["kernel"]["id"]} <= alive
