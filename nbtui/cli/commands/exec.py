"""nbtui exec TARGET [CODE | -]: run code in a kernel headless.

Streams go to stdout/stderr as they arrive, results to stdout, a traceback to stderr
(ANSI colours only on a terminal). Exit 1 if the code raised, 5 on --timeout (after
interrupting the kernel). --json prints one object with the outputs in nbformat's shapes.
The websocket is closed before exit, so the kernel's `connections` is not left raised.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import TYPE_CHECKING, Any, Optional, TextIO

from nbtui.core.errors import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, UsageError
from nbtui.core.units import seconds_arg
from nbtui.display.outputs import binary_label, clean_text, output_of, plain_text, strip_ansi

if TYPE_CHECKING:
    from nbtui.core.model import Kernel
    from nbtui.display.outputs import Outputs
    from nbtui.service.fleet import Fleet


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="TARGET", help="SERVER:KERNEL, or a kernel id prefix unique across the fleet")
    p.add_argument("code", metavar="CODE", nargs="?", default="-", help="code to run; '-' or nothing reads it from stdin")
    p.add_argument("--timeout", metavar="SECONDS", type=seconds_arg("--timeout"), default=None,
                   help="interrupt the kernel and exit 5 after this long")
    p.add_argument("--json", action="store_true", help="print one JSON object with the outputs (nbformat shapes)")
    p.add_argument("--raw", action="store_true",
                   help="write the kernel's output to a terminal as it is (default: colours kept, "
                        "cursor moves, clears, titles and clipboard writes dropped)")



def read_code(code: str) -> str:
    if code != "-":
        return code
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("no code given: pass CODE, or pipe it in with '-'")
    return sys.stdin.read()


async def resolve_kernel(args: argparse.Namespace) -> tuple[Fleet, Kernel]:
    """The fleet (open) and the Kernel that TARGET names; the caller closes the fleet."""
    from nbtui.cli.commands.common import open_fleet
    from nbtui.core.targets import KernelTarget, resolve
    server, sep, _ = args.target.strip().rpartition(":")
    only = [server] if sep and server and server != "pid" and not args.target.strip().startswith("terminal:") else []
    fleet = open_fleet(args, only=only, with_host=False, acting=True, notebooks=False)
    try:
        target = resolve(await fleet.snapshot(), args.target)
        if not isinstance(target, KernelTarget):
            raise UsageError(f"{args.command} needs a kernel (SERVER:KERNEL or a kernel id), not {target}")
    except BaseException:
        await fleet.aclose()
        raise
    return fleet, target.kernel


INPUT_HINT = "the code asked for input(), which `nbtui exec` cannot answer; use `nbtui console`"


class _Printer:
    """Writes outputs to the terminal as they arrive."""

    def __init__(self, raw: bool = False) -> None:
        self.color = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
        self.raw = raw
        self.hinted = False  # the input() hint is out already

    def write(self, stream: TextIO, text: str) -> None:
        from nbtui.core.text import raw_stream, sgr_only
        stream = raw_stream(stream)  # the kernel's own output: sgr_only, not visible escapes
        if not self.raw and stream.isatty():
            text = sgr_only(text)
        stream.write(text)
        stream.flush()

    def output(self, out: dict[str, Any]) -> None:
        kind = out["output_type"]
        if kind == "stream":
            self.write(sys.stderr if out["name"] == "stderr" else sys.stdout, out["text"])
        elif kind in ("execute_result", "display_data"):
            text = plain_text(out["data"])
            if text is None:
                text = out["data"].get("text/markdown") or binary_label(out["data"]) or f"[{', '.join(out['data'])}]"
            self.write(sys.stdout, clean_text(text).rstrip("\n") + "\n")
        elif kind == "error" and out.get("ename") == "StdinNotImplementedError":
            # input(): the hint is what helps, not the kernel's 20 lines of its own frames.
            self.hinted = True
            self.write(sys.stderr, f"nbtui: {INPUT_HINT}\n{out['ename']}: {clean_text(str(out['evalue']))}\n")
        elif kind == "error":
            tb = "\n".join(out["traceback"]) or f"{out['ename']}: {out['evalue']}"
            self.write(sys.stderr, (tb if self.color else strip_ansi(tb)).rstrip("\n") + "\n")


async def run_code(fleet: Fleet, kernel: Kernel, code: str, *, timeout: Optional[float], as_json: bool,
                   raw: bool = False) -> tuple[int, dict[str, Any]]:
    """Run ``code`` through the core's kernel session and print what it says (or keep it for JSON)."""
    from nbtui.service.kernel_session import TIMEOUT, ChannelError, KernelSession, ServerError
    printer = _Printer(raw)
    result: dict[str, Any] = {"server": kernel.server, "kernel_id": kernel.kernel_id, "status": None,
              "execution_count": None, "outputs": []}
    session = KernelSession(fleet, kernel.server, kernel.kernel_id, reconnect=False)

    def printed(msg: dict, change: str, outputs: Optional[Outputs]) -> None:
        out = output_of(msg)
        if out is not None:
            printer.output(out)

    started = time.monotonic()
    # --timeout covers connecting too: a websocket that never upgrades is a timeout (exit 5).
    try:
        await session.open(open_timeout=timeout)
    except ServerError as e:
        if e.kind != TIMEOUT or timeout is None:
            raise
        result["status"] = "timeout"
        result["error"] = str(e)
        return EXIT_TIMEOUT, result
    if timeout is not None:
        timeout = max(0.01, timeout - (time.monotonic() - started))
    try:
        run = await session.run(code, on_output=(lambda *a: None) if as_json else printed, timeout=timeout,
                                keep_outputs=as_json, interrupt_on_cancel=True)
    except ChannelError as e:
        result["status"] = "unknown"
        result["error"] = str(e)
        if not as_json:
            print(f"nbtui: {e}", file=sys.stderr)
        return EXIT_FAILED, result
    finally:
        await session.close()
    if run.outputs is not None:
        result["outputs"] = run.outputs.items
    result["status"] = run.status
    if run.status == "timeout":
        return EXIT_TIMEOUT, result
    result["execution_count"] = run.execution_count
    if run.asked_input:
        result["error"] = INPUT_HINT
        if not as_json and not printer.hinted:
            print(f"nbtui: {INPUT_HINT}", file=sys.stderr)
    return (EXIT_OK if run.status == "ok" else EXIT_FAILED), result


async def _main(args: argparse.Namespace, code: str) -> int:
    from nbtui.cli.commands.common import print_json
    fleet, kernel = await resolve_kernel(args)
    async with fleet:
        code_, result = await run_code(fleet, kernel, code, timeout=args.timeout, as_json=args.json,
                                        raw=getattr(args, "raw", False))
    if args.json:
        print_json(result)
    elif code_ == EXIT_TIMEOUT and result.get("error"):  # never connected: nothing ran
        print(f"nbtui: timed out after {args.timeout:g} s: {result['error']}", file=sys.stderr)
    elif code_ == EXIT_TIMEOUT:
        print(f"nbtui: timed out after {args.timeout:g} s; the kernel was interrupted", file=sys.stderr)
    return code_


def run(args: argparse.Namespace) -> int:
    from nbtui.service.actions.gate import require_writable
    require_writable(args, "exec (running code)")
    code = read_code(args.code)
    return asyncio.run(_main(args, code))
