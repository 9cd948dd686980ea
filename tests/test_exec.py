"""`nbtui exec` end to end: the real CLI against a real server and kernel."""

from __future__ import annotations

import json

import pytest

from tests.conftest import add_server, run_nbtui
from tests.jupyter import wait_for


@pytest.fixture(scope="module")
def kernel_id(shared_jupyter):
    return shared_jupyter.start_kernel()


@pytest.fixture
def target(shared_jupyter, kernel_id):
    add_server("gpu1", shared_jupyter)
    return f"gpu1:{kernel_id[:8]}"


def exec_(*args, input=None):
    return run_nbtui("--no-discover", "exec", *args, input=input)


def test_streams_and_result(target):
    r = exec_(target, "import sys; print('out'); print('err', file=sys.stderr); 40 + 2")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "out\n42\n"
    assert r.stderr == "err\n"


def test_code_from_stdin(target):
    r = exec_(target, "-", input="x = 5\nprint(x * 2)\n")
    assert r.returncode == 0 and r.stdout == "10\n"


def test_error_exits_1_with_plain_traceback(target):
    r = exec_(target, "def f():\n    raise ValueError('boom')\nf()")
    assert r.returncode == 1
    assert "ValueError" in r.stderr and "boom" in r.stderr
    assert "\x1b[" not in r.stderr  # not a terminal: no ANSI
    assert r.stdout == ""


def test_json_outputs_in_nbformat_shapes(target):
    code = (
        "from IPython.display import display, clear_output\n"
        "print('gone')\n"
        "clear_output(wait=True)\n"
        "print('a'); print('b')\n"
        "h = display('first', display_id=True); h.update('second')\n"
        "7 * 6\n"
    )
    r = exec_(target, code, "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["status"] == "ok" and isinstance(data["execution_count"], int)
    assert data["outputs"] == [
        {"output_type": "stream", "name": "stdout", "text": "a\nb\n"},
        {"output_type": "display_data", "data": {"text/plain": "'second'"}, "metadata": {}},
        {"output_type": "execute_result", "data": {"text/plain": "42"}, "metadata": {},
         "execution_count": data["execution_count"]},
    ]


def test_json_error(target):
    r = exec_(target, "1/0", "--json")
    assert r.returncode == 1
    out = json.loads(r.stdout)["outputs"]
    assert out[-1]["output_type"] == "error" and out[-1]["ename"] == "ZeroDivisionError"


def test_timeout_interrupts_and_exits_5(target):
    r = exec_(target, "import time; time.sleep(100)", "--timeout", "1")
    assert r.returncode == 5, r.stderr
    assert "timed out" in r.stderr and "interrupted" in r.stderr
    r = exec_(target, "'free again'", "--timeout", "30")  # the kernel is not left busy
    assert r.returncode == 0 and r.stdout == "'free again'\n"


def test_input_is_refused_clearly_and_kernel_unblocked(target):
    r = exec_(target, "input('name? ')", "--timeout", "30")
    assert r.returncode == 1
    lines = r.stderr.splitlines()  # the hint first, not after the kernel's 20-line traceback
    assert "asked for input()" in lines[0] and "nbtui console" in lines[0], r.stderr
    assert len(lines) <= 3 and r.stderr.count("asked for input()") == 1, r.stderr
    assert exec_(target, "1").returncode == 0


def test_connections_not_left_raised(target, shared_jupyter, kernel_id):
    assert exec_(target, "pass").returncode == 0

    def conns():
        return next(k for k in shared_jupyter.kernels() if k["id"] == kernel_id)["connections"]

    wait_for(lambda: conns() == 0, 10, what="connections back to 0")


def test_control_characters_and_bad_utf8(target):
    r = exec_(target, "import sys; sys.stdout.write('a\\x00b\\x07c\\n'); print(b'\\xff\\xfe'.decode('utf-8', 'surrogateescape'))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("a^@b^Gc\n")
    assert "\x00" not in r.stdout


def test_readonly_refuses_to_run_code(target):
    r = exec_(target, "readonly_probe = 1", "--readonly")
    assert r.returncode == 2 and "--readonly" in r.stderr and "Traceback" not in r.stderr
    r = exec_(target, "print('readonly_probe' in globals())")
    assert r.returncode == 0 and r.stdout == "False\n"


def test_bad_targets(target, shared_jupyter):
    r = exec_("gpu1:ffffffff", "1")
    assert r.returncode == 3 and "no kernel matches" in r.stderr
    r = exec_("nosuch:abc", "1")
    assert r.returncode == 3
    r = exec_("pid:1", "1")
    assert r.returncode == 2 and "needs a kernel" in r.stderr
    assert "Traceback" not in r.stderr and shared_jupyter.token not in r.stderr + r.stdout


def test_ctrl_c_interrupts_the_kernel_and_closes(target, shared_jupyter, kernel_id):
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import ROOT
    from tests.jupyter import default_sigint  # the child's SIGINT is its own

    p = subprocess.Popen([sys.executable, "-m", "nbtui", "--no-discover", "exec", target,
                          "import time; print('started', flush=True); time.sleep(100)"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=dict(os.environ),
                         preexec_fn=default_sigint)
    try:
        assert p.stdout.readline() == "started\n"
        p.send_signal(signal.SIGINT)
        assert p.wait(30) == 130
    finally:
        if p.poll() is None:
            p.kill()
            # Never leave the module's shared kernel busy behind a failed test.
            shared_jupyter.api("POST", f"/api/kernels/{kernel_id}/interrupt")
    r = exec_(target, "'idle again'", "--timeout", "20")  # the sleep was interrupted, not left running
    assert r.returncode == 0 and r.stdout == "'idle again'\n"
    wait_for(lambda: next(k for k in shared_jupyter.kernels() if k["id"] == kernel_id)["connections"] == 0, 10,
             what="connections back to 0")


def test_console_bad_target_exits_before_any_screen(target):
    r = run_nbtui("--no-discover", "console", "gpu1:ffffffff")
    assert r.returncode == 3 and "no kernel matches" in r.stderr and "Traceback" not in r.stderr


def test_exec_does_not_import_textual(target):
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = ("import sys; from nbtui import cli; rc = cli.main(['--no-discover', 'exec', %r, '1']); "
            "assert rc == 0, rc; print('textual' in sys.modules)" % target)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "False"
