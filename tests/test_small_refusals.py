"""The small refusals of issue 21, through the real CLI: what the user sees (exit code, the
one line) and what stays untouched.

- ``pid:N`` takes ASCII digits only (``pid:٣`` was read as PID 3, a kernel thread);
- kernel threads are never signalled (PID 1 and nbtui's ancestors: tests/test_kill.py);
- a state or config file with more than one hard link is refused (an append to a hard-linked
  ``audit.jsonl`` lands in the other file);
- a state or config folder that group or others may write is refused, naming the folder,
  its mode and the fix (another user could plant ``audit.jsonl`` there and refuse every kill).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from nbtui.host.signals import is_kernel_thread
from tests.conftest import run_nbtui as _run_nbtui

SLEEPER = "import time; print('ready', flush=True); time.sleep(120)"


def run_nbtui(*args: str, **kw):
    return _run_nbtui(*args, "--no-discover", **kw)


@pytest.fixture
def sleeper():
    p = subprocess.Popen([sys.executable, "-c", SLEEPER], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    yield p
    p.kill()
    p.wait(10)


def _state() -> Path:
    return Path(os.environ["NBTUI_STATE_DIR"])


def test_pid_takes_ascii_digits_only(sleeper):
    for text in ("pid:٣", f"pid:{str(sleeper.pid).translate(str.maketrans('0123456789', '٠١٢٣٤٥٦٧٨٩'))}",
                 f"pid:+{sleeper.pid}", "pid:1_0"):
        r = run_nbtui("kill", text, "--yes")
        assert r.returncode == 2 and r.stderr.strip().splitlines() == [
            f"nbtui: bad target '{text}': pid:N takes the digits 0-9 only"], (text, r.stderr)
        assert r.stdout == ""
    assert sleeper.poll() is None and not (_state() / "audit.jsonl").exists()


def test_a_kernel_thread_is_never_signalled():
    kthread = next((p.pid for p in psutil.process_iter() if p.pid > 2 and is_kernel_thread(p.pid)), None)
    if kthread is None:
        pytest.skip("no kernel thread is visible here (a container's own PID namespace)")
    before = psutil.Process(kthread).create_time()
    r = run_nbtui("kill", f"pid:{kthread}", "--yes")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert f"REFUSED: PID {kthread} is a kernel thread (part of the operating system), never signalled" in r.stdout
    assert psutil.Process(kthread).create_time() == before


def test_a_hard_linked_audit_log_is_not_appended_through(sleeper, tmp_path):
    state = _state()
    state.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.chmod(victim, 0o600)
    os.link(victim, state / "audit.jsonl")
    r = run_nbtui("kill", f"pid:{sleeper.pid}", "--yes")
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f"nbtui: not started: cannot write the audit log {state / 'audit.jsonl'}: has 2 hard links; nbtui uses "
        "only a file with one (a write through a link lands in another file)"], r.stderr
    assert victim.read_text() == "precious\n" and sleeper.poll() is None


def test_a_hard_linked_config_file_is_refused(config_dir, tmp_path):
    other = tmp_path / "elsewhere.toml"
    other.write_text("[orphans]\ngpu_idle = \"30m\"\n")
    os.link(other, config_dir / "config.toml")
    r = run_nbtui("ls")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"nbtui: {config_dir / 'config.toml'}: has 2 hard links; nbtui uses only a file with one "
        "(a write through a link lands in another file)"], r.stderr


@pytest.mark.parametrize("mode, who", [(0o1777, "group and others"), (0o770, "group")])
def test_a_state_folder_others_may_write_is_refused(sleeper, mode, who):
    state = _state()
    state.mkdir()
    os.chmod(state, mode)
    r = run_nbtui("kill", f"pid:{sleeper.pid}", "--yes")
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f"nbtui: not started: cannot write the audit log {state / 'audit.jsonl'}: {state}: is writable by {who} "
        f"(mode {mode:04o}), so another user could plant nbtui's files in it; fix: chmod go-w {state} "
        "(or use a private folder)"], r.stderr
    assert sleeper.poll() is None and list(state.iterdir()) == []


def test_a_config_folder_others_may_write_is_refused(config_dir):
    (config_dir / "config.toml").write_text("[orphans]\ngpu_idle = \"30m\"\n")
    os.chmod(config_dir, 0o777)
    r = run_nbtui("ls")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"nbtui: {config_dir}: is writable by group and others (mode 0777), so another user could plant nbtui's "
        f"files in it; fix: chmod go-w {config_dir} (or use a private folder)"], r.stderr
    os.chmod(config_dir, 0o755)
    assert run_nbtui("ls").returncode == 0
