"""The console: run code in any kernel of the fleet, like `jupyter console`, in the TUI.

Output log above (bounded), input below (highlighted when the kernel speaks Python).
enter runs complete code (``is_complete_request``) and adds a line otherwise; ctrl+j
always adds a line; up/down walk the history (per kernel spec, in the state folder);
ctrl+r searches it; tab completes in a popup; f1 shows help on the object at the cursor;
ctrl+g (or ctrl+c) interrupts; f5 restarts (after a confirmation); escape goes back.
"""

from __future__ import annotations

import asyncio
from typing import Optional

from rich.markdown import Markdown
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, OptionList, Static, TextArea

from nbtui import actions
from nbtui.history import History
from nbtui.jupyter.channels import (
    ChannelError, ConnectionLost, Event, KernelDied, WebsocketChannels, msg_type,
)
from nbtui.jupyter.outputs import Outputs, binary_label, clean_text, plain_text
from nbtui.model import Kernel
from nbtui.secrets import redact
from nbtui.text import visible
from nbtui.tui.console_output import OutputView, cut_line, styled

STATE_STYLE = {
    "idle": "bold green", "busy": "bold yellow", "starting": "bold cyan", "restarting": "bold cyan",
    "dead": "bold red", "disconnected": "bold red", "connecting": "bold cyan", "unknown": "dim",
}
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

    async def _on_key(self, event) -> None:
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
        return self.document.get_index_from_location(self.cursor_location)


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
        Binding("pageup", "scroll_output(-1)", "Scroll up", show=False, priority=True),
        Binding("pagedown", "scroll_output(1)", "Scroll down", show=False, priority=True),
    ]

    def __init__(self, fleet, server_name: str, kernel_id: str, *, max_lines: Optional[int] = None):
        super().__init__()
        self.fleet = fleet
        self.server_name = server_name
        self.kernel_id = kernel_id
        self.max_lines = max_lines
        self.channels: Optional[WebsocketChannels] = None
        self.kernel_name = "?"
        self.language = "python"
        self.count: Optional[int] = None  # the kernel's last execution count
        self.running = False
        self.history: Optional[History] = None
        self.state = "connecting"
        self.note = ""
        self._stdin_future: Optional[asyncio.Future] = None
        self._complete_span: tuple[int, int] = (0, 0)
        self._search_from: Optional[int] = None
        self._reconnect_reported = False
        self.ready = asyncio.Event()

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
        yield Footer()

    @property
    def view(self) -> OutputView:
        return self.query_one(OutputView)

    @property
    def code_input(self) -> CodeInput:
        return self.query_one(CodeInput)

    def on_mount(self) -> None:
        self.code_input.focus()
        self._render_head()
        self._connect()

    def on_unmount(self) -> None:
        if self.channels is not None:
            channels, self.channels = self.channels, None
            asyncio.get_running_loop().create_task(channels.close())

    # -- connection ---------------------------------------------------------------------

    @work(group="console-connect", exit_on_error=False)
    async def _connect(self) -> None:
        view = self.view
        try:
            client = self.fleet.client(self.server_name)
            channels = WebsocketChannels(client, self.kernel_id)
            await channels.connect()
        except Exception as e:
            self._set_state("disconnected")
            view.write(styled(f"✗ cannot connect to {self.server_name}:{self.kernel_id[:8]}: {_one_line(e)}", "bold red"))
            return
        if not self.is_attached:
            await channels.close()
            return
        self.channels = channels
        channels.listen(self._on_channel_event)
        try:
            info = await channels.kernel_info(timeout=30)
            self.count = await channels.execution_count(timeout=30)
        except Exception as e:
            view.write(styled(f"⚠ the kernel does not answer: {_one_line(e)}", "yellow"))
            info = {}
        lang = (info.get("language_info") or {}).get("name") or "?"
        self.language = lang
        self.kernel_name = await self._kernel_name(client)
        self.history = History(self.kernel_name)
        editor = self.code_input
        if lang in editor.available_languages:
            editor.language = lang
        banner = clean_text(info.get("banner") or "").strip().splitlines()[:1]
        impl = f"{info.get('implementation', '?')} {info.get('implementation_version', '')}".strip()
        view.write(styled(f"Connected to {self.server_name}:{self.kernel_id[:8]} — {lang} ({impl})", "bold"))
        if banner:
            view.write(styled(banner[0], "dim"))
        view.write(styled("enter runs · ctrl+j new line · tab completes · f1 help · ctrl+c interrupts", "dim"))
        self._set_state(channels.state if channels.state != "unknown" else "idle")
        self._render_prompt()
        self.ready.set()

    async def _kernel_name(self, client) -> str:
        """The kernel spec's name (history is kept per spec)."""
        try:
            name = (await client.kernel(self.kernel_id)).get("name")
        except Exception:
            name = None
        return name if isinstance(name, str) and name else self._kernel().kernel_name

    def _kernel(self) -> Kernel:
        snap = getattr(self.app, "snapshot", None)
        for k in getattr(snap, "kernels", ()) or ():
            if k.server == self.server_name and k.kernel_id == self.kernel_id:
                return k
        return Kernel(self.server_name, self.kernel_id, self.kernel_name, self.state, None, None, None)

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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 120
        while self.channels is not None and loop.time() < deadline:
            try:
                await self.channels.kernel_info(timeout=2)
                break
            except Exception:
                await asyncio.sleep(0.5)
        else:
            return
        if self.state in ("restarting", "starting"):
            self._set_state("idle")
        self.view.write(styled("✓ the kernel is back (a fresh one: its variables are gone)", "green"))

    @work(group="console-reconnect", exclusive=True, exit_on_error=False)
    async def _after_reconnect(self) -> None:
        if self.channels is None:
            return
        before = self.count
        try:
            now = await self.channels.execution_count(timeout=30)
        except Exception as e:
            self.view.write(styled(f"⚠ reconnected, but the kernel does not answer: {_one_line(e)}", "yellow"))
            return
        if before is None or now is None or now >= before:
            self.view.write(styled(f"✓ reconnected: the kernel survived (execution count {now})", "bold green"))
        else:
            self.view.write(styled(f"⚠ reconnected: the kernel was restarted meanwhile (execution count {now}, "
                                   f"was {before}); its variables are gone", "bold yellow"))
        self.count = now
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
        if getattr(self.app, "readonly", False):
            self.notify("readonly: running code is off", severity="warning")
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
        if self.language != "python" and self.channels is None:
            return "complete", None
        try:
            reply = await self.channels.is_complete(code, timeout=2)
        except Exception:
            return "complete", None
        return reply.get("status", "complete"), reply.get("indent")

    @work(group="console-exec", exit_on_error=False)
    async def run_code(self, code: str) -> None:
        view = self.view
        channels = self.channels
        self.running = True
        self._render_prompt()
        echoed = False
        outputs = Outputs()
        ex = None
        try:
            ex = await channels.execute(code)
            async for msg in ex:
                mt = msg_type(msg)
                if mt == "execute_input":
                    self._echo(code, msg["content"].get("execution_count"))
                    echoed = True
                elif mt == "input_request":
                    await self._answer_input(msg)
                elif mt == "execute_reply":
                    count = msg["content"].get("execution_count")
                    if isinstance(count, int):
                        self.count = count
                elif mt in ("stream", "display_data", "execute_result", "error", "clear_output",
                            "update_display_data"):
                    if not echoed:
                        self._echo(code, None)
                        echoed = True
                    self._apply(outputs, msg)
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
        finally:
            if ex is not None:
                ex.cancel()
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

    def _apply(self, outputs: Outputs, msg: dict) -> None:
        view = self.view
        change = outputs.add(msg)
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
            view.stream(stream_text or "")
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

    async def _answer_input(self, msg: dict) -> None:
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
            return
        self.view.stream(prompt)
        self.view.stream(("•" * 8 if content.get("password") else value) + "\n")
        await self.channels.input_reply(value, msg)

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
        self._search_hit = hit[1]

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
    async def _complete(self) -> None:
        if self.channels is None or not self.channels.connected:
            return
        editor = self.code_input
        code, pos = editor.text, editor.cursor_offset
        try:
            reply = await self.channels.complete(code, pos, timeout=3)
        except Exception as e:
            self.notify(f"completion failed: {_one_line(e)}", severity="warning")
            return
        matches = [m for m in reply.get("matches") or [] if isinstance(m, str)][:200]
        start, end = reply.get("cursor_start", pos), reply.get("cursor_end", pos)
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
        doc = editor.document
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
            reply = await self.channels.inspect(editor.text, editor.cursor_offset, detail_level=0, timeout=5)
        except Exception as e:
            self.notify(f"help failed: {_one_line(e)}", severity="warning")
            return
        text = plain_text(reply.get("data") or {}) if reply.get("found") else None
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

    def action_clear(self) -> None:
        self.view.clear()

    @work(group="console-action", exit_on_error=False)
    async def action_interrupt(self) -> None:
        if getattr(self.app, "readonly", False):
            self.notify("readonly: interrupt is off", severity="warning")
            return
        if self._stdin_future is not None and not self._stdin_future.done():
            self._stdin_future.set_result(None)  # stop waiting for an answer the kernel won't need
        try:
            await actions.interrupt_kernel(self.fleet, self._kernel())
        except Exception as e:
            self.notify(f"interrupt failed: {_one_line(e)}", severity="error")
            return
        self.notify("interrupt sent", timeout=1.5)

    def action_restart(self) -> None:
        if getattr(self.app, "readonly", False):
            self.notify("readonly: restart is off", severity="warning")
            return
        from nbtui.tui.confirm import ConfirmScreen

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
            await actions.restart_kernel(self.fleet, k)
        except Exception as e:
            self.view.write(styled(f"✗ restart failed: {_one_line(e)}", "bold red"))
            return
        self.view.write(styled("✓ the kernel was restarted: its variables are gone", "bold yellow"))
        self.count = 0
        self._render_prompt()


def _one_line(e: BaseException) -> str:
    text = redact(str(e)) or type(e).__name__
    return text.splitlines()[0][:200]
