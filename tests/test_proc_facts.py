"""A new process's facts (command line, user, Jupyter environment) are read from /proc
directly on Linux (nbtui.host.procs._proc_facts): they must be what psutil says of the same
process, for every process on this host and for one whose command line and environment are
made to trip a parser."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil
import pytest

from nbtui.host import procs
from tests.jupyter import wait_for

pytestmark = pytest.mark.skipif(not procs._FAST, reason="Linux /proc only")


def _started(proc: subprocess.Popen, args: int) -> None:
    """Wait until the child's exec has set up its command line (Popen returns once the exec
    has begun; the kernel fills the command line in a moment later)."""
    wait_for(lambda: len(psutil.Process(proc.pid).cmdline()) == args, 10, 0.01, "the child's command line")


def _start_field(pid: int) -> bytes:
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return data[data.rfind(b")") + 2:].split(None, 20)[19]


def test_every_process_s_facts_are_psutil_s():
    compared = 0
    for pid in psutil.pids():
        try:
            start = _start_field(pid)
            said = procs._read_facts(psutil.Process(pid))
        except (OSError, psutil.Error):
            continue  # gone meanwhile
        read = procs._proc_facts(pid, start, {})
        if read is not None and read != said:  # (one of them read in the middle of an exec: both again)
            try:
                said, read = procs._read_facts(psutil.Process(pid)), procs._proc_facts(pid, start, {})
            except psutil.Error:
                continue  # gone meanwhile
        if read is None:
            continue  # gone meanwhile
        assert read == said, pid
        compared += 1
    assert compared > 5


def test_a_process_made_to_trip_the_parser_reads_as_psutil_says():
    odd = os.fsdecode(b"\xff\xfe-not-utf8")  # an argument that is no UTF-8 (surrogate-escaped)
    args = [sys.executable, "-c", "import time; time.sleep(60)", "two words", "", odd, "kernel-5ca1ab1e.json"]
    env = {"PATH": os.environ.get("PATH", ""), "JPY_SESSION_NAME": "work/a b\x1b[31m.ipynb",
           "JPY_PARENT_PID": "4242", "JUPYTERHUB_USER": "mallory", "JUPYTERHUB_SERVER_NAME": "gpu",
           "EMPTY": ""}
    proc = subprocess.Popen(args, env=env)
    try:
        _started(proc, len(args))
        table = procs.ProcessTable()
        found = table.scan().procs[proc.pid].facts
        assert found == procs._read_facts(psutil.Process(proc.pid))
        assert found.cmdline[3:] == ("two words", "", odd, "kernel-5ca1ab1e.json")
        assert found.kernel_id == "5ca1ab1e" and found.user == psutil.Process(proc.pid).username()
        assert (found.session_name, found.jpy_parent_pid) == ("work/a b\x1b[31m.ipynb", 4242)
        assert (found.hub_user, found.hub_server_name) == ("mallory", "gpu")
    finally:
        proc.kill()
        proc.wait(10)


def test_a_command_line_past_the_cap_is_cut_at_its_whole_arguments(monkeypatch):
    # A process may make its command line and environment as long as it likes (PR_SET_MM_MAP):
    # what is read of each stops at FACTS_CAP, the command line at its last whole argument.
    monkeypatch.setattr(procs, "FACTS_CAP", 256)
    long = "x" * 100
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", long, long, long, "tail"],
                            env={"PATH": os.environ.get("PATH", ""), "PAD": "y" * 300, "JPY_SESSION_NAME": "late.ipynb"})
    try:
        _started(proc, 7)
        found = procs._proc_facts(proc.pid, _start_field(proc.pid), {})
        assert found is not None
        full = psutil.Process(proc.pid).cmdline()
        assert found.cmdline == tuple(full[:len(found.cmdline)]) and 0 < len(found.cmdline) < len(full)
        assert sum(len(a) + 1 for a in found.cmdline) <= 256
        assert found.session_name is None  # past the cap: not seen
    finally:
        proc.kill()
        proc.wait(10)


def test_a_process_caught_before_its_command_line_is_read_again_at_the_next_scan(monkeypatch):
    # Read in the middle of its exec (no command line yet), a kernel would be known by nothing
    # for its life: its facts are read again until it has a command line.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "kernel-5ca1ab1e.json"])
    try:
        _started(proc, 4)
        real = procs._proc_facts
        caught = {proc.pid}

        def mid_exec(pid: int, start: bytes, users: dict):
            facts = real(pid, start, users)
            if pid in caught and facts is not None:
                caught.discard(pid)
                return procs.Facts((), facts.user, None)  # as read while the exec sets it up
            return facts

        monkeypatch.setattr(procs, "_proc_facts", mid_exec)
        table = procs.ProcessTable()
        assert table.scan().procs[proc.pid].facts.kernel_id is None
        assert table.scan().procs[proc.pid].facts.kernel_id == "5ca1ab1e"
    finally:
        proc.kill()
        proc.wait(10)


def _waiting_to_exec(target: list[str]) -> tuple[subprocess.Popen, int]:
    """A process that execs ``target`` once a byte is written to the returned fd: until then
    its command line is the waiting one's, as a kernel's is its server's between its fork
    and its exec (same PID, same start time)."""
    r, w = os.pipe()
    code = ("import json, os, sys; os.read(int(sys.argv[1]), 1); t = json.loads(os.environ['TARGET']);"
            " os.execv(t[0], t)")
    env = {"PATH": os.environ.get("PATH", ""), "TARGET": json.dumps(target)}  # (not in its command line)
    proc = subprocess.Popen([sys.executable, "-c", code, str(r)], pass_fds=(r,), env=env)
    os.close(r)
    _started(proc, 4)
    return proc, w


def _exec_now(proc: subprocess.Popen, w: int, marker: str) -> None:
    os.write(w, b"x")
    os.close(w)
    wait_for(lambda: marker in psutil.Process(proc.pid).cmdline(), 10, 0.01, "the exec")


@pytest.mark.parametrize("age,layout_shown", [("young", True), ("young", False), ("older", True)])
def test_a_process_caught_before_it_execs_the_same_program_is_read_again_after_it(monkeypatch, age, layout_shown):
    # Python execs Python: the command name stays. Where its arguments lie moves (a new address
    # space), young or past FACTS_SETTLE (here at once); where that is not shown (another
    # user's process), a young one's youth says to read it again.
    if age == "older":
        monkeypatch.setattr(procs, "FACTS_SETTLE", 0.0)
    if not layout_shown:
        monkeypatch.setattr(procs, "_layout", lambda stat: b"")
    proc, w = _waiting_to_exec([sys.executable, "-c", "import time; time.sleep(60)", "kernel-5ca1ab1e.json"])
    try:
        table = procs.ProcessTable()
        assert table.scan().procs[proc.pid].facts.kernel_id is None  # still the waiting one
        _exec_now(proc, w, "kernel-5ca1ab1e.json")
        assert table.scan().procs[proc.pid].facts.kernel_id == "5ca1ab1e"
    finally:
        proc.kill()
        proc.wait(10)


def test_an_older_process_that_execs_another_program_is_read_again(monkeypatch):
    # Past FACTS_SETTLE (here at once) facts are kept, unless the command name moved: a
    # wrapper script that ends in `exec` is known by what it became.
    monkeypatch.setattr(procs, "FACTS_SETTLE", 0.0)
    proc, w = _waiting_to_exec(["/bin/sh", "-c", "sleep 60; :", "kernel-5ca1ab1e.json"])
    try:
        table = procs.ProcessTable()
        assert table.scan().procs[proc.pid].facts.kernel_id is None
        _exec_now(proc, w, "kernel-5ca1ab1e.json")
        found = table.scan().procs[proc.pid].facts
        assert found.kernel_id == "5ca1ab1e" and found.cmdline[0] == "/bin/sh"
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.parametrize("randomized", [True, False])
def test_a_young_process_that_did_not_exec_is_read_once(monkeypatch, randomized):
    # Its layout shown and unmoved, a new process (a leftover just found, a terminal's new
    # job) costs one read of its facts, not one per scan until it is FACTS_SETTLE old; on a
    # host that does not randomize addresses the layout says nothing: read at each scan.
    monkeypatch.setattr(procs, "FACTS_SETTLE", 3600.0)
    monkeypatch.setattr(procs, "_randomized", lambda: randomized)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "kernel-5ca1ab1e.json"])
    try:
        _started(proc, 4)
        real, reads = procs._proc_facts, []

        def counted(pid: int, start: bytes, users: dict):
            if pid == proc.pid:
                reads.append(pid)
            return real(pid, start, users)

        monkeypatch.setattr(procs, "_proc_facts", counted)
        table = procs.ProcessTable()
        for _ in range(3):
            assert table.scan().procs[proc.pid].facts.kernel_id == "5ca1ab1e"
        assert len(reads) == (1 if randomized else 3)
    finally:
        proc.kill()
        proc.wait(10)


def test_a_leftover_s_command_line_is_scrubbed_of_a_token_learnt_after_it_was_first_shown():
    # Its secret arguments are scrubbed once for its life; the tokens nbtui learns later (a
    # server found, a hub token minted) are scrubbed from it too, each time it is shown.
    from nbtui.files.secrets import remember

    later = "later-" + os.urandom(8).hex()
    facts = procs.Facts(("python", "--ServerApp.token=abc123", f"--url=http://h/?t={later}"), "root", None)
    shown = facts.shown_cmdline
    assert "abc123" not in shown and later in shown
    remember(later)
    assert later not in facts.shown_cmdline and "***" in facts.shown_cmdline


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to change a process's owner")
def test_a_young_process_that_changes_its_owner_without_exec_is_read_again():
    # A root child that drops to another user and execs nothing: its layout stays, its owner
    # moved, so it is not shown as root's.
    r, w = os.pipe()
    code = "import os, sys, time; os.read(int(sys.argv[1]), 1); os.setuid(65534); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code, str(r)], pass_fds=(r,))
    os.close(r)
    try:
        _started(proc, 4)
        table = procs.ProcessTable()
        assert table.scan().procs[proc.pid].facts.user == "root"
        os.write(w, b"x")
        wait_for(lambda: psutil.Process(proc.pid).uids().real == 65534, 10, 0.01, "the setuid")
        assert table.scan().procs[proc.pid].facts.user == psutil.Process(proc.pid).username()
    finally:
        os.close(w)
        proc.kill()
        proc.wait(10)
