"""The console: run code in any kernel of the fleet, like `jupyter console`, in the TUI.

Output log above (bounded), input below (highlighted when the kernel speaks Python).
enter runs complete code (``is_complete_request``) and adds a line otherwise; ctrl+j
always adds a line; up/down walk the history (per kernel spec, in the state folder);
ctrl+r searches it; tab completes in a popup; f1 shows help on the object at the cursor;
ctrl+g (or ctrl+c) interrupts; f5 restarts (after a confirmation); f2 switches long
lines between wrapping and scrolling sideways; escape goes back.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional

from rich.markdown import Markdown
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Input, OptionList, Static, TextArea

from nbtui.service.actions.gate import Readonly, require_writable
from nbtui.display.outputs import Outputs, binary_label, clean_text, plain_text
from nbtui.service.kernel_session import (SERVER_HOLDS_OPEN, ChannelError, ConnectionLost, Event, KernelDied,
                                          KernelSession)
from nbtui.core.model import Kernel
from nbtui.files.secrets import redact
from nbtui.core.text import visible
from nbtui.tui.widgets.console_output import OutputView, cut_line, styled
from nbtui.tui.widgets.keys_footer import KeysFooter

if TYPE_CHECKING:
    from nbtui.files.console_history import History
    from nbtui.service.kernel_session import WebsocketChannels

STATE_STYLE = {
    "idle": "bold green", "busy": "bold yellow", "starting": "bold cyan", "restarting": "bold cyan",
    "dead": "bold red", "disconnected": "bold red", "connecting": "bold cyan", "unknown": "dim",
}
CONNECT_PATIENCE = 2.0  # seconds of silence before the console says what it waits for
MAX_STREAM_CHARS = 2_000_000  # one cell's stream text kept for redraws (clear_output/update)


class CodeInput(TextArea):
    """The input area: enter submits, up/down at the edges walk the history."""

    class Submitted(Message):
        pass

    class Complete(Message):
        pass

    class HistoryMove(Message):
        def __init__(self, back: bool):
            super().__init__()
            self.back = back

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "escape":  # the screen's (back); TextArea would move the focus away
            event.prevent_default()  # not TextArea's handler, but still bubbles to the bindings
            return
        if event.key == "enter":
            event.prevent_default()
            event.stop()
            self.post_message(self.Submitted())
            return
        if event.key == "ctrl+j":
            event.prevent_default()
            event.stop()
            self.newline()
            return
        if event.key == "tab":
            row, col = self.cursor_location
            before = self.document.get_line(row)[:col]
            if before.strip() and not self.selected_text:
                event.prevent_default()
                event.stop()
                self.post_message(self.Complete())
                return
        # anything else: TextArea._on_key runs next (Textual calls each class's handler)

    def newline(self, indent: Optional[str] = None) -> None:
        row, col = self.cursor_location
        line = self.document.get_line(row)
        if indent is None:
            indent = line[: len(line) - len(line.lstrip())]
            if line[:col].rstrip().endswith(":"):
                indent += "    "
        self.insert("\n" + indent)

    def action_cursor_up(self, select: bool = False) -> None:
        if not select and self.cursor_location[0] == 0:
            self.post_message(self.HistoryMove(back=True))
            return
        super().action_cursor_up(select)

    def action_cursor_down(self, select: bool = False) -> None:
        if not select and self.cursor_location[0] == self.document.line_count - 1:
            self.post_message(self.HistoryMove(back=False))
            return
        super().action_cursor_down(select)

    @property
    def cursor_offset(self) -> int:
        doc: Any = self.document  # a Document (TextArea's text), which has the index mapping
        return int(doc.get_index_from_location(self.cursor_location))


class ConsoleScreen(Screen):
    DEFAULT_CSS = """
    ConsoleScreen { layout: vertical; }
    ConsoleScreen #console-head { height: 1; background: $panel; padding: 0 1; }
    ConsoleScreen OutputView { height: 1fr; }
    ConsoleScreen #console-bottom { height: auto; }
    ConsoleScreen #console-input-row { height: auto; max-height: 12; border-top: hkey $panel; }
    ConsoleScreen #console-prompt { width: auto; min-width: 9; color: $success; text-style: bold; }
    ConsoleScreen CodeInput { height: auto; max-height: 11; min-height: 1; border: none; padding: 0; }
    ConsoleScreen CodeInput:focus { border: none; }
    ConsoleScreen #console-stdin, ConsoleScreen #console-search { display: none; border: tall $accent; }
    ConsoleScreen.asking #console-stdin { display: block; }
    ConsoleScreen.searching #console-search { display: block; }
    ConsoleScreen #console-complete {
        display: none; layer: popup; dock: bottom; offset-y: -3; max-height: 12; width: 48;
        border: round $accent; background: $surface;
    }
    ConsoleScreen.completing #console-complete { display: block; }
    ConsoleScreen { layers: base popup; }
    """

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("ctrl+g", "interrupt", "Interrupt"),
        Binding("f5", "restart", "Restart"),
        Binding("f1,ctrl+o", "inspect", "Help on object"),
        Binding("ctrl+r", "search", "Search history"),
        Binding("ctrl+l", "clear", "Clear", show=False),
        Binding("f2", "toggle_wrap", "Wrap/scroll"),
        Binding("pageup", "scroll_output(-1)", "Scroll up", show=False, priority=True),
        Binding("pagedown", "scroll_output(1)", "Scroll down", show=False, priority=True),
    ]

    def __init__(self, fleet: Any, server_name: str, kernel_id: str, *, max_lines: Optional[int] = None,
                 act: Optional[Callable[[Callable[[Any], Awaitable[Any]]], Awaitable[Any]]] = None):
        """``act``: the app's way to the fleet's own loop (NbtuiApp.act): the kernel's REST
        read, interrupt and restart go through it; the websocket lives on this screen's loop."""
        super().__init__()
        self.fleet = fleet
        self.server_name = server_name
        self.kernel_id = kernel_id
        self.max_lines = max_lines
        self.session = KernelSession(fleet, server_name, kernel_id, act=act)
        self.running = False
        self.state = "connecting"
        self.note = ""
        self._stdin_future: Optional[asyncio.Future] = None
        self._complete_span: tuple[int, int] = (0, 0)
        self._search_from: Optional[int] = None
        self._reconnect_reported = False
        self.ready = asyncio.Event()

    # The kernel's side lives in the core's session; the screen renders it.
    @property
    def channels(self) -> Optional[WebsocketChannels]:  # the session's websocket (tests drop it to see a reconnect)
        return self.session.channels

    @property
    def kernel_name(self) -> str:
        return self.session.kernel_name

    @property
    def language(self) -> str:
        return self.session.language

    @property
    def history(self) -> Optional[History]:
        return self.session.history

    @property
    def count(self) -> Optional[int]:
        return self.session.count

    @count.setter
    def count(self, value: Optional[int]) -> None:
        self.session.count = value

    # -- layout -------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static("", id="console-head", markup=False)
        yield OutputView(**({"max_lines": self.max_lines} if self.max_lines else {}))
        with Vertical(id="console-bottom"):
            yield Input(id="console-stdin")
            yield Input(id="console-search", placeholder="search history (enter takes it, escape cancels)")
            with Horizontal(id="console-input-row"):
                yield Static("In [ ]:", id="console-prompt", markup=False)
                yield CodeInput(id="console-input", soft_wrap=True, tab_behavior="indent")
        yield OptionList(id="console-complete")
        yield KeysFooter()

    @property
    def view(self) -> OutputView:
        return self.query_one(OutputView)

    @property
    def code_input(self) -> CodeInput:
        return self.query_one(CodeInput)

    def on_mount(self) -> None:
        self.code_input.focus()
        take = getattr(self.app, "take_typeahead", None)  # typed right after enter on the fleet screen
        early = take() if take is not None else ""
        if early:
            self.code_input.insert(early)
        self.call_after_refresh(self._render_head)  # (not mounted yet within on_mount: it would draw nothing)
        self._connect()

    def on_unmount(self) -> None:
        if self.session.channels is not None:
            asyncio.get_running_loop().create_task(self.session.close())

    # -- connection ---------------------------------------------------------------------

    @work(group="console-connect", exit_on_error=False)
    async def _connect(self) -> None:
        # Silence while connecting is said after CONNECT_PATIENCE: a busy kernel keeps both
        # the handshake (its server waits for the kernel's answer) and kernel_info waiting.
        patience = asyncio.get_running_loop().call_later(CONNECT_PATIENCE, self._say_waiting)
        try:
            await self._connect_and_start()
        finally:
            patience.cancel()

    def _say_waiting(self) -> None:
        if self.is_attached and not self.ready.is_set():
            self.view.write(styled(f"… waiting for {self._who()} to answer (busy or "
                                   "starting?) · esc leaves · i on the fleet screen interrupts it", "yellow"))

    async def _connect_and_start(self) -> None:
        view = self.view
        session = self.session
        try:
            await session.open(open_timeout=SERVER_HOLDS_OPEN)
        except Exception as e:
            self._set_state("disconnected")
            view.write(styled(f"✗ cannot connect to {self._who()}: {_one_line(e)}", "bold red"))
            return
        if not self.is_attached:
            await session.close()
            return
        session.listen(self._on_channel_event)
        try:
            await session.start(fallback_name=self._kernel().kernel_name)
        except Exception as e:
            view.write(styled(f"⚠ the kernel does not answer: {_one_line(e)}", "yellow"))
        info = session.info
        lang = session.language
        editor = self.code_input
        if lang in editor.available_languages and editor.language != lang:
            # A language rebuilds the input's document, its cursor at the start: what was typed
            # while the kernel was not answering keeps its cursor (and its selection).
            selection = editor.selection
            editor.language = lang
            editor.selection = selection
        banner = clean_text(info.get("banner") or "").strip().splitlines()[:1]
        impl = f"{info.get('implementation', '?')} {info.get('implementation_version', '')}".strip()
        view.write(styled(f"Connected to {self._who()} — {visible(lang)} ({visible(impl)})", "bold"))
        if banner:
            view.write(styled(banner[0], "dim"))
        view.write(styled("enter runs · ctrl+j new line · tab completes · f1 help · ctrl+c interrupts", "dim"))
        view.write(styled("f2: long lines wrap (now) or scroll sideways", "dim"))
        state = session.state
        self._set_state(state if state != "unknown" else "idle")
        self._render_prompt()
        self.ready.set()

    def _who(self) -> str:
        """``server:kernel`` as plain text (a kernel id is the server's string)."""
        return visible(f"{self.server_name}:{self.kernel_id[:8]}")

    def _kernel(self) -> Kernel:
        return self.session.kernel(getattr(self.app, "snapshot", None))

    def _on_channel_event(self, event: Event) -> None:
        view = self.view
        if event.kind == "status":
            self._set_state(event.data)
            if event.data == "restarting":
                if not self.running:
                    view.write(styled("⚠ the kernel is restarting: its variables are gone", "bold yellow"))
                self.count = 0
                self._render_prompt()
                self._wait_for_kernel()
            elif event.data == "dead":
                view.write(styled("✗ the kernel died and could not be restarted", "bold red"))
        elif event.kind == "disconnected":
            self._set_state("disconnected", str(event.data))
            if not self._reconnect_reported:
                self._reconnect_reported = True
                view.write(styled(f"⚠ connection lost ({event.data}); reconnecting…", "bold yellow"))
        elif event.kind == "reconnected":
            self._reconnect_reported = False
            self._set_state("idle")
            self._after_reconnect()
        elif event.kind == "gone":
            self._set_state("dead", "gone")
            view.write(styled(f"✗ the kernel is gone ({event.data}); the server no longer has it", "bold red"))

    @work(group="console-wait", exclusive=True, exit_on_error=False)
    async def _wait_for_kernel(self) -> None:
        """After a restart, ask until the fresh kernel answers (its status says idle then)."""
        if not await self.session.wait_restarted():
            return
        if self.state in ("restarting", "starting"):
            self._set_state("idle")
        self.view.write(styled("✓ the kernel is back (a fresh one: its variables are gone)", "green"))

    @work(group="console-reconnect", exclusive=True, exit_on_error=False)
    async def _after_reconnect(self) -> None:
        if self.channels is None:
            return
        try:
            before, now = await self.session.after_reconnect()
        except Exception as e:
            self.view.write(styled(f"⚠ reconnected, but the kernel does not answer: {_one_line(e)}", "yellow"))
            return
        if self.session.survived(before, now):
            self.view.write(styled(f"✓ reconnected: the kernel survived (execution count {now})", "bold green"))
        else:
            self.view.write(styled(f"⚠ reconnected: the kernel was restarted meanwhile (execution count {now}, "
                                   f"was {before}); its variables are gone", "bold yellow"))
        self._render_prompt()

    # -- header and prompt --------------------------------------------------------------

    def _set_state(self, state: str, note: str = "") -> None:
        self.state = state
        self.note = note
        self._render_head()

    def _render_head(self) -> None:
        if not self.is_mounted:
            return
        head = Text()
        head.append(visible(f" {self.server_name}:{self.kernel_id[:8]} "), style="bold reverse")
        k = self._kernel()
        if k.session is not None:
            head.append(visible(f"  {k.session.path}"))
        head.append(visible(f"  {self.kernel_name}  "))
        head.append(f"● {self.state}", style=STATE_STYLE.get(self.state, "dim"))
        if self.note and self.state == "disconnected":
            head.append(visible(f"  {self.note}")[:60], style="dim")
        self.query_one("#console-head", Static).update(head)

    def _render_prompt(self, running: Optional[int] = None) -> None:
        n = "*" if self.running else (self.count or 0) + 1
        self.query_one("#console-prompt", Static).update(f"In [{n}]:")

    # -- running ------------------------------------------------------------------------

    @on(CodeInput.Submitted)
    async def _submitted(self) -> None:
        code = self.code_input.text
        if not code.strip():
            return
        if self.channels is None or not self.channels.connected:
            self.notify("not connected to the kernel", severity="warning")
            return
        if self.running:
            self.notify("the kernel is still running the last input (ctrl+c interrupts)", severity="warning")
            return
        if self._refused("running code"):
            return
        last_line = code.rsplit("\n", 1)[-1]
        if "\n" not in code or last_line.strip():
            where = self.code_input.cursor_location
            status, indent = await self._completeness(code)
            if status == "incomplete":
                # keys typed while we asked go on the new line, after the break
                self.code_input.insert("\n" + (indent if indent is not None else ""), where)
                return
            if self.code_input.text != code:  # typed on meanwhile: not what was checked
                return
        self.code_input.text = ""
        if self.history is not None:
            self.history.add(code)
        self.run_code(code)

    async def _completeness(self, code: str) -> tuple[str, Optional[str]]:
        return await self.session.is_complete(code)

    @work(group="console-exec", exit_on_error=False)
    async def run_code(self, code: str) -> None:
        view = self.view
        self.running = True
        self._render_prompt()
        echoed = False

        def started(count: Optional[int]) -> None:
            nonlocal echoed
            self._echo(code, count)
            echoed = True

        def output(msg: dict, change: str, outputs: Optional[Outputs]) -> None:
            nonlocal echoed
            if not echoed:
                self._echo(code, None)
                echoed = True
            if outputs is not None:
                self._apply(outputs, msg, change)

        try:
            await self.session.run(code, on_output=output, on_input=self._answer_input, on_started=started)
        except KernelDied as e:
            if not echoed:
                self._echo(code, None)
            view.write(styled(f"✗ {e}", "bold red"))
            if e.state == "restarting":
                self.count = 0
        except ConnectionLost as e:
            if not echoed:
                self._echo(code, None)
            view.write(styled(f"⚠ {e} (it was not re-run)", "bold yellow"))
        except ChannelError as e:
            view.write(styled(f"✗ {e}", "bold red"))
        except Readonly as e:
            self.notify(e.short, severity="warning")
        finally:
            self._hide_stdin()
            self.running = False
            view.close_line()
            self._render_prompt()

    def _echo(self, code: str, count: Optional[int]) -> None:
        view = self.view
        label = f"In [{count if count is not None else '?'}]: "
        pad = " " * (len(label) - 5) + "...: "
        lines: list = []
        for i, line in enumerate(code.splitlines() or [""]):
            t = Text(end="")
            t.append(label if i == 0 else pad, style="bold green")
            t.append(line)
            lines.append(t)
        view.write(Text("", end=""))
        view.write_lines(lines)
        view.cell_start = view.end

    def _apply(self, outputs: Outputs, msg: dict, change: str) -> None:
        view = self.view
        last = outputs.items[-1] if outputs.items else None
        if change == "none":
            return
        if change == "reset":
            view.truncate(view.cell_start)
            for out in outputs.items:
                self._draw(out, out["text"] if out["output_type"] == "stream" else None)
            return
        if last is not None and last["output_type"] == "stream":
            text = clean_text((msg.get("content") or {}).get("text", ""))
            if len(last["text"]) > MAX_STREAM_CHARS:  # keep one cell's text for redraws bounded
                last["text"] = last["text"][-MAX_STREAM_CHARS // 2:]
            self._draw(last, text)
        elif last is not None:
            self._draw(last, None)

    def _draw(self, out: dict, stream_text: Optional[str]) -> None:
        view = self.view
        kind = out["output_type"]
        if kind == "stream":
            view.stream(stream_text or "", stderr=out.get("name") == "stderr")
            return
        view.close_line()
        if kind == "error":
            tb = "\n".join(out.get("traceback") or []) or f"{out.get('ename')}: {out.get('evalue')}"
            view.write_lines(tb.splitlines())
            return
        data = out.get("data") or {}
        prefix = None
        if kind == "execute_result":
            prefix = Text(f"Out[{out.get('execution_count')}]: ", style="bold red", end="")
        markdown = data.get("text/markdown")
        label = binary_label(data)
        text = plain_text(data)
        if markdown is not None:
            if prefix is not None:
                view.write(prefix)
            view.write_renderable(Markdown(clean_text("".join(markdown) if isinstance(markdown, list) else str(markdown))))
            return
        lines: list = []
        if label is not None:
            lines.append(Text(label, style="italic cyan", end=""))
            if text and not text.startswith("<"):
                lines.extend(clean_text(text).splitlines())
        elif text is not None:
            lines.extend(clean_text(text).splitlines() or [""])
        else:
            lines.append(Text(f"[{', '.join(data) or 'empty output'}]", style="italic", end=""))
        if prefix is not None and lines:
            first = cut_line(lines[0]) if isinstance(lines[0], str) else lines[0]
            joined = prefix.copy()
            joined.append_text(Text.from_ansi(first, end="") if isinstance(first, str) else first)
            lines[0] = joined
        view.write_lines(lines)

    # -- stdin --------------------------------------------------------------------------

    async def _answer_input(self, msg: dict) -> Optional[str]:
        """The user's answer to the kernel's input() (None: interrupted while asking)."""
        content = msg.get("content") or {}
        prompt = clean_text(content.get("prompt", ""))
        box = self.query_one("#console-stdin", Input)
        box.password = bool(content.get("password"))
        box.value = ""
        box.placeholder = prompt or "input"
        box.border_title = "the kernel asks (enter sends)" + (" — hidden" if box.password else "")
        self._stdin_future = asyncio.get_running_loop().create_future()
        self.add_class("asking")
        box.focus()
        try:
            value = await self._stdin_future
        finally:
            self._hide_stdin()
        if value is None:  # interrupted while asking: the kernel gets KeyboardInterrupt instead
            return None
        self.view.stream(prompt)
        self.view.stream(("•" * 8 if content.get("password") else value) + "\n")
        return value

    @on(Input.Submitted, "#console-stdin")
    def _stdin_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if self._stdin_future is not None and not self._stdin_future.done():
            self._stdin_future.set_result(event.value)

    def _hide_stdin(self) -> None:
        if self.has_class("asking"):
            self.remove_class("asking")
            self.code_input.focus()
        if self._stdin_future is not None and not self._stdin_future.done():
            self._stdin_future.cancel()
        self._stdin_future = None

    # -- history ------------------------------------------------------------------------

    @on(CodeInput.HistoryMove)
    def _history_move(self, event: CodeInput.HistoryMove) -> None:
        if self.history is None:
            return
        text = self.history.back(self.code_input.text) if event.back else self.history.forward()
        if text is not None:
            self.code_input.text = text
            last = self.code_input.document.line_count - 1
            self.code_input.cursor_location = (0 if event.back else last, len(self.code_input.document.get_line(0 if event.back else last)))

    def action_search(self) -> None:
        if self.history is None:
            return
        box = self.query_one("#console-search", Input)
        box.value = ""
        self._search_from = None
        self.add_class("searching")
        box.focus()

    @on(Input.Changed, "#console-search")
    def _search_changed(self, event: Input.Changed) -> None:
        self._search_from = None
        self._search_show(event.value)

    def _search_show(self, needle: str) -> None:
        box = self.query_one("#console-search", Input)
        hit = self.history.search(needle, self._search_from) if (self.history and needle) else None
        if hit is None:
            box.border_title = "no match" if needle else "search history"
            return
        self._search_from = hit[0]
        first = hit[1].splitlines()[0] if hit[1] else ""
        box.border_title = f"match: {first[:60]}"
        self._search_hit: Optional[str] = hit[1]

    @on(Input.Submitted, "#console-search")
    def _search_done(self, event: Input.Submitted) -> None:
        event.stop()
        hit = getattr(self, "_search_hit", None)
        self._end_search()
        if hit is not None and event.value:
            self.code_input.text = hit
            self._search_hit = None

    def _end_search(self) -> None:
        self.remove_class("searching")
        self.code_input.focus()

    # -- completion and help -------------------------------------------------------------

    @on(CodeInput.Complete)
    def _complete(self) -> None:
        editor = self.code_input
        self._completion(editor.text, editor.cursor_offset)

    @work(group="console-complete", exclusive=True, exit_on_error=False)
    async def _completion(self, code: str, pos: int) -> None:
        """Completion in a worker: a kernel still starting is waited for (bounded), and
        the screen keeps taking keys meanwhile; an answer to stale text is dropped."""
        if not self.session.ready.is_set():
            self.notify("completion: waiting for the kernel to be ready…", timeout=2)
        try:
            await asyncio.wait_for(self.ready.wait(), 60)  # connected (or failed to)
            got = await self.session.complete(code, pos)
        except Exception as e:
            self.notify(f"completion failed: {_one_line(e)}", severity="warning")
            return
        editor = self.code_input
        if editor.text != code:
            return  # typed on meanwhile: this answer is for other text
        matches, start, end = list(got.matches), got.start, got.end
        if not matches:
            self.notify("no completions", timeout=1.5)
            return
        self._complete_span = (start, end)
        if len(matches) == 1:
            self._insert_completion(matches[0])
            return
        popup = self.query_one("#console-complete", OptionList)
        popup.clear_options()
        popup.add_options(matches)
        popup.highlighted = 0
        self.add_class("completing")
        popup.focus()

    def _insert_completion(self, text: str) -> None:
        editor = self.code_input
        start, end = self._complete_span
        doc: Any = editor.document
        editor.replace(text, doc.get_location_from_index(start), doc.get_location_from_index(end))
        editor.cursor_location = doc.get_location_from_index(start + len(text))

    @on(OptionList.OptionSelected, "#console-complete")
    def _completion_chosen(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self._insert_completion(str(event.option.prompt))
        self._end_complete()

    def _end_complete(self) -> None:
        self.remove_class("completing")
        self.code_input.focus()

    async def action_inspect(self) -> None:
        if self.channels is None or not self.channels.connected:
            return
        editor = self.code_input
        try:
            text = await self.session.inspect(editor.text, editor.cursor_offset)
        except Exception as e:
            self.notify(f"help failed: {_one_line(e)}", severity="warning")
            return
        if not text:
            self.notify("no help for the object at the cursor", timeout=2)
            return
        view = self.view
        view.write(Text("", end=""))
        view.write(styled("help ─" + "─" * 30, "dim"))
        view.write_lines(clean_text(text).splitlines())
        view.write(styled("─" * 36, "dim"))

    # -- actions ------------------------------------------------------------------------

    def take_ctrl_c(self) -> bool:
        """ctrl+c (the app asks first): interrupt a running input, else clear the input line."""
        if self.running:
            self.action_interrupt()
        elif self.has_class("asking") or self.has_class("searching") or self.has_class("completing"):
            self.action_back()
        else:
            self.code_input.text = ""
        return True

    def action_back(self) -> None:
        if self.has_class("completing"):
            self._end_complete()
        elif self.has_class("searching"):
            self._end_search()
        elif self.has_class("asking"):
            self.notify("the kernel waits for input: answer it, or ctrl+c to interrupt", severity="warning")
        else:
            self.app.pop_screen()

    def action_scroll_output(self, direction: int) -> None:
        view = self.view
        view.scroll_to(y=view.scroll_y + direction * max(1, view.size.height - 2), animate=False)

    def _refused(self, what: str) -> bool:
        """Whether readonly refuses ``what``: actions decides, the console says so."""
        try:
            require_writable(self.app, what)
        except Readonly as e:
            self.notify(e.short, severity="warning")
            return True
        return False

    def action_toggle_wrap(self) -> None:
        """Long lines: wrap at the width (the default) or scroll sideways (left/right)."""
        view = self.view
        view.wrap = not view.wrap
        self.notify("long lines wrap" if view.wrap else "long lines scroll sideways (focus the output: left/right)",
                    timeout=2)

    def action_clear(self) -> None:
        self.view.clear()

    @work(group="console-action", exit_on_error=False)
    async def action_interrupt(self) -> None:
        if self._refused("interrupt"):
            return
        if self._stdin_future is not None and not self._stdin_future.done():
            self._stdin_future.set_result(None)  # stop waiting for an answer the kernel won't need
        try:
            await self.session.interrupt(self._kernel())
        except Exception as e:
            self.notify(f"interrupt failed: {_one_line(e)}", severity="error")
            return
        self.notify("interrupt sent", timeout=1.5)

    def action_restart(self) -> None:
        if self._refused("restart"):
            return
        from nbtui.tui.screens.confirm import ConfirmScreen
        k = self._kernel()
        lines = [f"{k.server}:{k.kernel_id[:8]}  {k.session.path if k.session else '(no session)'}",
                 "", "Its variables and state are lost."]

        def answered(yes: bool | None) -> None:
            if yes:
                self._restart(k)

        self.app.push_screen(ConfirmScreen("Restart this kernel?", lines, "Restart"), answered)

    @work(group="console-action", exit_on_error=False)
    async def _restart(self, k: Kernel) -> None:
        try:
            await self.session.restart(k)
        except Exception as e:
            self.view.write(styled(f"✗ restart failed: {_one_line(e)}", "bold red"))
            return
        self.view.write(styled("✓ the kernel was restarted: its variables are gone", "bold yellow"))
        self._render_prompt()


def _one_line(e: BaseException) -> str:
    text = redact(str(e)) or type(e).__name__
    return visible(text.splitlines()[0][:200])  # an error may quote what a server sent
