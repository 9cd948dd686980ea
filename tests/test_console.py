"""The console screen against a real server and real kernels, through App.run_test()."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Iterator

import pytest
from textual.app import App
from textual.widgets import Input, OptionList

from nbtui.files.config import ServerConfig, Settings
from nbtui.service.fleet import Fleet
from nbtui.files.console_history import history_path
from nbtui.tui.screens.confirm import ConfirmScreen
from nbtui.tui.screens.console import ConsoleScreen
from tests.jupyter import until, wait_for


class ConsoleApp(App):
    def __init__(self, server, kernel_id, **kw):
        super().__init__()
        self.fleet = Fleet([ServerConfig("srv", server.url, token_source="discovered", token=server.token)],
                           Settings(timeout=5.0))
        self.kernel_id = kernel_id
        self.kw = kw

    def on_mount(self) -> None:
        self.push_screen(ConsoleScreen(self.fleet, "srv", self.kernel_id, **self.kw))

    async def on_unmount(self) -> None:
        await self.fleet.aclose()



async def ready(pilot) -> ConsoleScreen:
    screen = pilot.app.screen
    assert isinstance(screen, ConsoleScreen)
    await until(pilot, screen.ready.is_set, what="the console to connect")
    return screen


def lines(screen: ConsoleScreen) -> list[str]:
    return screen.view.plain_lines()


def text(screen: ConsoleScreen) -> str:
    return "\n".join(lines(screen))


def cell(screen: ConsoleScreen) -> str:
    """The last cell's outputs (without its echoed input)."""
    return "\n".join(lines(screen)[screen.view.cell_start - screen.view.dropped:])


async def type_code(pilot, screen, code: str) -> None:
    screen.code_input.text = code
    last = screen.code_input.document.line_count - 1
    screen.code_input.cursor_location = (last, len(screen.code_input.document.get_line(last)))
    await pilot.pause()


async def run(pilot, screen, code: str, timeout: float = 30.0) -> None:
    """Type ``code``, press enter and wait for it to run. A console that refused the input
    (it keeps it, and says why: its channels coming back after a restart, say) is asked
    again, as a person would press enter again; a timeout says what the console was in."""
    n = sum(1 for line in lines(screen) if line.startswith("In ["))
    await type_code(pilot, screen, code)
    await pilot.press("enter")

    def started() -> bool:
        return sum(1 for line in lines(screen) if line.startswith("In [")) > n

    deadline = pressed = time.monotonic()
    deadline += timeout
    while not started():
        if time.monotonic() > deadline:
            ch = screen.channels
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {code!r} to start: running={screen.running} "
                f"connected={ch is not None and ch.connected} ready={screen.session.ready.is_set()} "
                f"input={screen.code_input.text!r} last lines={lines(screen)[-6:]!r}")
        await pilot.pause(0.1)
        # Still in the input box 3 s on (past the console's 2 s completeness question): refused.
        if screen.code_input.text == code and not screen.running and time.monotonic() - pressed > 3:
            await pilot.press("enter")
            pressed = time.monotonic()
    await until(pilot, lambda: not screen.running, timeout, f"{code!r} to finish")


@pytest.fixture(scope="module")
def kernel_id(shared_jupyter):
    return shared_jupyter.start_kernel()


async def test_outputs_of_every_kind(shared_jupyter, kernel_id):
    app = ConsoleApp(shared_jupyter, kernel_id)
    async with app.run_test(size=(100, 40)) as pilot:
        s = await ready(pilot)
        await run(pilot, s, "print('hello'); 6 * 7")
        out = lines(s)
        i = out.index(next(line for line in out if line.endswith("print('hello'); 6 * 7")))
        assert out[i + 1] == "hello"
        assert out[i + 2].startswith("Out[") and out[i + 2].endswith("]: 42")
        count = s.count
        assert out[i].startswith(f"In [{count}]:") and out[i + 2].startswith(f"Out[{count}]")
        assert str(s.query_one("#console-prompt").render()) == f"In [{count + 1}]:"

        await run(pilot, s, "def f():\n    raise ValueError('boom')\nf()\n")
        assert "ValueError: boom" in text(s) and "raise ValueError('boom')" in text(s)

        code = ("from IPython.display import display, Markdown, Image, clear_output\n"
                "import base64\n"
                "display(Markdown('# Big title\\n\\nsome *words*'))\n"
                "png = base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==')\n"
                "display(Image(png))\n"
                "h = display('first', display_id=True)\n"
                "h.update('second')\n")
        await run(pilot, s, code)
        t = cell(s)
        assert "Big title" in t and "# Big title" not in t  # rendered, not raw
        assert "[image/png, 72B]" in t
        assert "'second'" in t and "'first'" not in t

        await run(pilot, s, "print('old'); clear_output(wait=True); print('new')")
        tail = lines(s)[-3:]
        assert "new" in tail and "old" not in tail


async def test_progress_bar_redraws_one_line_and_bad_bytes(shared_jupyter, kernel_id):
    app = ConsoleApp(shared_jupyter, kernel_id)
    async with app.run_test(size=(80, 30)) as pilot:
        s = await ready(pilot)
        code = ("import sys, time\n"
                "for p in range(0, 101, 25):\n"
                "    sys.stdout.write(f'\\rloading {p:3d}%'); sys.stdout.flush(); time.sleep(0.05)\n"
                "print(' done'); print('bell\\x07 nul\\x00 end')\n")
        await run(pilot, s, code)
        out = lines(s)
        assert out[-2] == "loading 100% done"
        assert not any(line.startswith("loading  25%") for line in out)
        assert out[-1] == "bell^G nul^@ end"


async def test_enter_runs_only_complete_code(shared_jupyter, kernel_id):
    app = ConsoleApp(shared_jupyter, kernel_id)
    async with app.run_test(size=(80, 30)) as pilot:
        s = await ready(pilot)
        await type_code(pilot, s, "for i in range(2):")
        await pilot.press("enter")
        await until(pilot, lambda: s.code_input.text == "for i in range(2):\n    ", what="a new indented line")
        await pilot.press(*"print(i * 10)")
        await pilot.press("enter")  # the block may go on: still a new line
        await until(pilot, lambda: s.code_input.text.endswith("print(i * 10)\n    "), what="another line")
        await pilot.press("backspace", "backspace", "backspace", "backspace", "enter")
        await until(pilot, lambda: lines(s)[-2:] == ["0", "10"], what="the loop to run")
        await type_code(pilot, s, "x = 1")
        await pilot.press("ctrl+j")  # forces a new line even though the code is complete
        assert s.code_input.text == "x = 1\n"
        await type_code(pilot, s, "def f(x):")
        await pilot.press("enter", *"return x")  # typed on before the kernel answered
        await until(pilot, lambda: s.code_input.text == "def f(x):\n    return x", what="keys after the break")
        await pilot.press("escape")  # back to where the console came from
        assert not isinstance(app.screen, type(s))


async def test_history_walk_persist_and_search(shared_jupyter, kernel_id):
    app = ConsoleApp(shared_jupyter, kernel_id)
    async with app.run_test(size=(80, 30)) as pilot:
        s = await ready(pilot)
        await run(pilot, s, "alpha = 1")
        await run(pilot, s, "beta = 2")
        await type_code(pilot, s, "draft")
        await pilot.press("up")
        assert s.code_input.text == "beta = 2"
        await pilot.press("up")
        assert s.code_input.text == "alpha = 1"
        await pilot.press("down", "down")
        assert s.code_input.text == "draft"
    saved = json.loads(history_path("python3").read_text())
    assert saved[-2:] == ["alpha = 1", "beta = 2"]

    app = ConsoleApp(shared_jupyter, kernel_id)  # a new console finds them
    async with app.run_test(size=(80, 30)) as pilot:
        s = await ready(pilot)
        await pilot.press("ctrl+r")
        assert s.has_class("searching")
        await pilot.press(*"alph")
        await pilot.press("enter")
        assert s.code_input.text == "alpha = 1" and not s.has_class("searching")
        await pilot.press("up")
        assert s.code_input.text == "beta = 2"


async def test_completion_popup_and_help(shared_jupyter, kernel_id):
    app = ConsoleApp(shared_jupyter, kernel_id)
    async with app.run_test(size=(80, 30)) as pilot:
        s = await ready(pilot)
        await type_code(pilot, s, "import collec")
        await pilot.press("tab")
        await until(pilot, lambda: s.code_input.text == "import collections", what="a single completion")
        await type_code(pilot, s, "import o")
        await pilot.press("tab")
        await until(pilot, lambda: s.has_class("completing"), what="the completion popup")
        popup = s.query_one("#console-complete", OptionList)
        options = [str(popup.get_option_at_index(i).prompt) for i in range(popup.option_count)]
        assert "os" in options and "operator" in options
        await pilot.press("down", "enter")
        assert s.code_input.text == "import " + options[1] and not s.has_class("completing")
        await type_code(pilot, s, "    ")
        await pilot.press("tab")  # only white space before the cursor: indents
        assert s.code_input.text == "        "
        await type_code(pilot, s, "len")
        await pilot.press("f1")
        await until(pilot, lambda: "Return the number of items in a container." in text(s), what="help on len")


async def test_input_and_password_prompts(shared_jupyter, kernel_id):
    app = ConsoleApp(shared_jupyter, kernel_id)
    async with app.run_test(size=(80, 30)) as pilot:
        s = await ready(pilot)
        await type_code(pilot, s, "name = input('name? ')")
        await pilot.press("enter")
        box = s.query_one("#console-stdin", Input)
        await until(pilot, lambda: s.has_class("asking"), what="the input prompt")
        assert not box.password and box.placeholder == "name? "
        await pilot.press(*"ana", "enter")
        await until(pilot, lambda: not s.running, what="input() to return")
        assert "name? ana" in lines(s)

        await type_code(pilot, s, "import getpass; pw = getpass.getpass('secret: ')")
        await pilot.press("enter")
        await until(pilot, lambda: s.has_class("asking"), what="the password prompt")
        assert box.password
        await pilot.press(*"hunter2", "enter")
        await until(pilot, lambda: not s.running, what="getpass() to return")
        assert "hunter2" not in text(s)
        await run(pilot, s, "print(name, len(pw))")
        assert lines(s)[-1] == "ana 7"


async def test_interrupt_a_sleep(shared_jupyter, kernel_id):
    app = ConsoleApp(shared_jupyter, kernel_id)
    async with app.run_test(size=(80, 30)) as pilot:
        s = await ready(pilot)
        await type_code(pilot, s, "import time; print('sleeping', flush=True); time.sleep(100)")
        await pilot.press("enter")
        await until(pilot, lambda: s.running and lines(s)[-1] == "sleeping", what="the sleep to start")
        await pilot.press("ctrl+g")
        await until(pilot, lambda: not s.running, 10, "the interrupt to stop the sleep")
        assert "KeyboardInterrupt" in text(s)


async def test_ctrl_c_interrupts_in_the_app_even_while_asking(shared_jupyter, kernel_id):
    from nbtui.tui.app import NbtuiApp
    fleet = Fleet([ServerConfig("srv", shared_jupyter.url, token_source="discovered", token=shared_jupyter.token)],
                  Settings())
    app = NbtuiApp(fleet, live=False, open_console=("srv", kernel_id))
    async with app.run_test(size=(80, 30)) as pilot:
        s = await until(pilot, lambda: isinstance(app.screen, ConsoleScreen) and app.screen, what="the console")
        await ready(pilot)
        await type_code(pilot, s, "answer = input('never answered: ')")
        await pilot.press("enter")
        await until(pilot, lambda: s.has_class("asking"), what="the input prompt")
        await pilot.press("ctrl+c")  # the app's quit key: in the console it interrupts
        await until(pilot, lambda: not s.running, 10, "the interrupt to end input()")
        assert "KeyboardInterrupt" in text(s) and app.is_running and not s.has_class("asking")
        await type_code(pilot, s, "draft")
        await pilot.press("ctrl+c")  # idle: clears the input, like IPython
        assert s.code_input.text == "" and app.is_running


async def test_restart_with_confirmation_and_death(jupyter):
    kid = jupyter.start_kernel()
    app = ConsoleApp(jupyter, kid)
    async with app.run_test(size=(80, 30)) as pilot:
        s = await ready(pilot)
        await run(pilot, s, "value = 1")
        await pilot.press("f5")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("n")
        assert "restarted" not in text(s)
        await pilot.press("f5")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the confirmation")
        await pilot.press("y")
        await until(pilot, lambda: "the kernel was restarted" in text(s), 60, "the restart")
        await until(pilot, lambda: s.state == "idle", 60, "the kernel to be idle again")
        await run(pilot, s, "value")
        assert "NameError" in text(s)
        from nbtui.files.audit import audit_path
        assert '"restart"' in audit_path().read_text()

        await type_code(pilot, s, "import os, time; print('bye', flush=True); time.sleep(0.3); os._exit(1)")
        await pilot.press("enter")
        await until(pilot, lambda: not s.running and "bye" in lines(s), 60, "the death to be reported")
        assert any("result is unknown" in line for line in lines(s))
        await until(pilot, lambda: "the kernel is back" in text(s), 60, "the restarted kernel")
        assert s.state == "idle"
        await run(pilot, s, "'alive'")
        assert cell(s).endswith("'alive'")


async def test_reconnect_says_the_kernel_survived(shared_jupyter, kernel_id):
    app = ConsoleApp(shared_jupyter, kernel_id)
    async with app.run_test(size=(80, 30)) as pilot:
        s = await ready(pilot)
        await run(pilot, s, "kept = 5")
        await s.channels.drop()
        await until(pilot, lambda: "connection lost" in text(s), 10, "the drop to be reported")
        await until(pilot, lambda: "reconnected: the kernel survived" in text(s), 30, "the reconnection")
        await run(pilot, s, "kept")
        assert lines(s)[-1].endswith(": 5")


async def test_kernel_gone_after_server_restart(jupyter):
    kid = jupyter.start_kernel()
    app = ConsoleApp(jupyter, kid)
    async with app.run_test(size=(80, 30)) as pilot:
        s = await ready(pilot)
        jupyter.stop()
        jupyter.start()
        await until(pilot, lambda: "the kernel is gone" in text(s), 30, "the console to say the kernel is gone")
        assert s.state == "dead"


async def test_long_output_is_bounded(shared_jupyter, kernel_id):
    app = ConsoleApp(shared_jupyter, kernel_id, max_lines=300)
    async with app.run_test(size=(80, 30)) as pilot:
        s = await ready(pilot)
        # Not run(): its "started" sign is a new "In [" line, which this output pushes out of
        # the 300 kept lines at once (a race the poll loses on a fast or a loaded machine).
        await type_code(pilot, s, "for i in range(20000): print(i)")
        await pilot.press("enter")
        await until(pilot, lambda: s.view.dropped > 0, 60, "the output to pass the kept lines")
        await until(pilot, lambda: not s.running, 60, "the loop to finish")
        out = lines(s)
        assert len(out) <= 300 and out[-1] == "19999"
        assert s.view.dropped > 19000
        assert "earlier lines not kept" in str(s.view.render_line(0)) or s.view.scroll_y > 0


async def test_unknown_kernel_says_so(shared_jupyter):
    app = ConsoleApp(shared_jupyter, "00000000-0000-0000-0000-000000000000")
    async with app.run_test(size=(80, 30)) as pilot:
        s = app.screen
        await until(pilot, lambda: "cannot connect" in text(s), 20, "the error line")
        assert "no such kernel" in text(s)
        await pilot.press("escape")


async def test_kernel_of_another_language(shared_jupyter):
    from tests.echo_kernel import install

    install(shared_jupyter)  # the server reads kernel specs when asked
    kid = shared_jupyter.start_kernel("echo")
    app = ConsoleApp(shared_jupyter, kid)
    async with app.run_test(size=(80, 30)) as pilot:
        s = await ready(pilot)
        assert s.language == "text" and s.code_input.language is None  # plain text input
        await run(pilot, s, "hello there")
        assert lines(s)[-1] == "HELLO THERE"
        await type_code(pilot, s, "abc")
        await pilot.press("tab")  # no completions: nothing breaks
        await pilot.pause(0.2)
        assert s.code_input.text == "abc"
        await run(pilot, s, "second")
    assert json.loads(history_path("echo").read_text())[-2:] == ["hello there", "second"]


@contextlib.contextmanager
def busy_until_released(server, tmp_path) -> Iterator[tuple[str, Path]]:
    """A kernel busy until the test touches the returned file (touched at the end whatever
    happens): jupyter_server opens a kernel's websocket only once the kernel answers
    kernel_info, so a console on it waits meanwhile."""
    kid = server.start_kernel()
    release = tmp_path / "release"
    server.start_code(kid, f"import os, time\nwhile not os.path.exists({str(release)!r}): time.sleep(0.05)")
    try:
        wait_for(lambda: server.api("GET", f"api/kernels/{kid}").json()["execution_state"] == "busy", 30,
                 what="busy")
        yield kid, release
    finally:
        release.touch()


async def test_a_busy_kernel_connects_once_it_answers_and_the_wait_is_said(shared_jupyter, tmp_path):
    # A kernel busy until the test says so keeps the console waiting, and the console says why.
    with busy_until_released(shared_jupyter, tmp_path) as (kid, release):
        app = ConsoleApp(shared_jupyter, kid)
        async with app.run_test(size=(80, 30)) as pilot:
            s = app.screen
            await until(pilot, lambda: "waiting for srv:" in text(s), 20, "the waiting line")
            assert not s.ready.is_set() and "cannot connect" not in text(s)
            release.touch()
            s = await ready(pilot)
            assert any(line.startswith(f"Connected to srv:{kid[:8]}") for line in lines(s))
            await run(pilot, s, "1 + 1")
            assert lines(s)[-1].endswith("2")


async def test_what_is_typed_while_connecting_keeps_its_cursor(shared_jupyter, tmp_path):
    # Typed while the kernel does not answer yet: once it does, the console learns its language
    # (the input's highlighting), and the cursor stays where the person left it.
    with busy_until_released(shared_jupyter, tmp_path) as (kid, release):
        app = ConsoleApp(shared_jupyter, kid)
        async with app.run_test(size=(80, 30)) as pilot:
            s = app.screen
            await pilot.press("a", "b", "c", "left")
            assert not s.ready.is_set() and s.code_input.text == "abc"
            release.touch()
            s = await ready(pilot)
            assert s.code_input.language == "python"
            await pilot.press("X")
            assert s.code_input.text == "abXc"


async def test_what_a_kernel_calls_itself_is_shown_as_plain_text(shared_jupyter):
    from tests.echo_kernel import install

    hostile = "x\x1b]0;pwned\x07[bold]y[/]\u202e"
    kid = shared_jupyter.start_kernel(install(shared_jupyter, "echo-hostile", implementation=hostile))
    app = ConsoleApp(shared_jupyter, kid)
    async with app.run_test(size=(100, 30)) as pilot:
        s = await ready(pilot)
        line = next(x for x in lines(s) if x.startswith("Connected to"))
        assert "x\\x1b]0;pwned\\x07[bold]y[/]" in line  # escapes and markup as text
        assert not any(c in text(s) for c in "\x1b\x07\u202e")


async def test_ten_megabytes_in_one_message(shared_jupyter, kernel_id):
    app = ConsoleApp(shared_jupyter, kernel_id)
    async with app.run_test(size=(80, 30)) as pilot:
        s = await ready(pilot)
        await run(pilot, s, "'y' * 10_000_000", timeout=60)  # one 10 MB execute_result
        out = lines(s)
        assert out[-1].startswith("Out[") and "more characters not shown" in out[-1]
        assert len(out[-1]) < 30_000
        # 10 MB of stdout: a stock server drops it past its rate limit and says so
        await run(pilot, s, "print('x' * 10_000_000)", timeout=60)
        assert "IOPub data rate exceeded" in cell(s) or "more characters not shown" in cell(s)
        await run(pilot, s, "'still here'")
        assert lines(s)[-1].endswith("'still here'")


async def test_first_completion_on_a_fresh_kernel_waits_for_it(shared_jupyter):
    """tab right after the console opens on a kernel just started: the completion waits
    for the kernel to be ready (it used to fail after 3 s), and keys still go in meanwhile."""
    kid = shared_jupyter.start_kernel()
    try:
        app = ConsoleApp(shared_jupyter, kid)
        async with app.run_test(size=(80, 30)) as pilot:
            s = app.screen
            assert isinstance(s, ConsoleScreen)
            s.code_input.text = "import collec"
            s.code_input.cursor_location = (0, 13)
            await pilot.press("tab")  # before the console is connected
            await until(pilot, lambda: s.code_input.text == "import collections", 60, what="the completion")
            assert s.ready.is_set()
            assert not any("completion failed" in str(n.message) for n in app._notifications)
    finally:
        shared_jupyter.shutdown_kernel(kid)


async def test_stderr_is_drawn_apart_and_f2_switches_wrapping(shared_jupyter, kernel_id):
    from nbtui.tui.widgets.console_output import STDERR_STYLE
    app = ConsoleApp(shared_jupyter, kernel_id)
    async with app.run_test(size=(60, 20)) as pilot:
        s = await ready(pilot)
        await run(pilot, s, "import sys; print('x' * 150); print('oops', file=sys.stderr)")
        assert "x" * 150 in lines(s)  # one logical line, drawn over three rows
        view = s.view
        err = view.end - 1 - view.dropped
        assert lines(s)[err] == "oops" and (view.dropped + err) in view._err
        assert STDERR_STYLE.color is not None
        assert view.wrap
        await pilot.press("f2")
        assert not view.wrap
        await pilot.press("f2")
        assert view.wrap
