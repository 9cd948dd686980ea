"""The command line: argparse subcommands, one module each under nbtui/cli/commands/.

Errors end as one plain line on stderr with the contract's exit code, never a traceback
and never a token.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, Iterator, NoReturn, Optional, Sequence

from nbtui import __version__
from nbtui.core.errors import EXIT_FAILED, EXIT_USAGE, NbtuiError
from nbtui.core.units import seconds_arg

# name -> (module under nbtui.cli.commands, one-line help). Each module has
# add_arguments(parser) and run(args) -> int.
COMMANDS = {
    "demo": ("demo", "start a throwaway local Jupyter server with sample kernels and open the TUI on it"),
    "servers": ("servers", "list, add, remove and test Jupyter servers"),
    "ls": ("ls", "list every kernel of every server (a table, or --json)"),
    "kill": ("kill", "kill kernels (through their server) and local processes (pid:N)"),
    "cull": ("cull", "remove idle and orphaned kernels and leftover processes by policy"),
    "exec": ("exec", "run code in a kernel headless (streams as they arrive; --json)"),
    "console": ("console", "open the TUI straight on a kernel's console"),
    "rebind": ("rebind", "give a kernel that has no session a notebook session on its server"),
    "migrate": ("migrate", "move a kernel's variables into a new kernel on another server"),
    "adopt": ("adopt", "reach a live local kernel whose server is gone (ZMQ; or list it on a local server)"),
    "exporter": ("exporter", "serve the fleet as Prometheus metrics (default 127.0.0.1:9877)"),
}


def _global_options(parser: argparse.ArgumentParser, suppress: bool) -> None:
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    g = parser.add_argument_group("global options")
    g.add_argument("--config", metavar="PATH", default=d(None),
                   help="config.toml to use (or its folder); also NBTUI_CONFIG")
    g.add_argument("--no-discover", action="store_true", default=d(False),
                   help="do not discover local running servers")
    g.add_argument("--readonly", action="store_true", default=d(False),
                   help="turn off every action that changes a kernel")
    g.add_argument("--theme", metavar="NAME", default=d(None), help="TUI theme")
    g.add_argument("--refresh", metavar="SECONDS", type=seconds_arg("--refresh"), default=d(None),
                   help="TUI refresh interval (default 2)")



class _Parser(argparse.ArgumentParser):
    """One line and exit 2 on bad input, with a "did you mean" where a name is close; no flag
    is taken from a prefix of another (`--orphan` is not `--orphans`: a typo never acts)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:  # one line, exit 2
        hint = _did_you_mean(self, message)
        self.exit(EXIT_USAGE, f"nbtui: {message}{hint} (see `{self.prog} --help`)\n")


def _did_you_mean(parser: argparse.ArgumentParser, message: str) -> str:
    """`; did you mean `ls`?` for a mistyped command or flag, else ""."""
    import difflib
    import re

    m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
    if m:
        wrong, choices = m.group(1), re.findall(r"'([^']*)'", m.group(2))
    else:
        m = re.match(r"unrecognized arguments: (.*)$", message)
        if not m:
            return ""
        wrong = next((a for a in m.group(1).split() if a.startswith("--")), "")
        choices = sorted({o for leaf in _leaves(parser) for a in leaf._actions for o in a.option_strings
                          if o.startswith("--")})
    close = difflib.get_close_matches(wrong.split("=", 1)[0], choices, n=1, cutoff=0.7) if wrong else []
    return f"; did you mean `{close[0]}`?" if close else ""


def build_parser(argv: Optional[Sequence[str]] = None, *, lazy: bool = False) -> argparse.ArgumentParser:
    """The full parser; with ``lazy``, only the commands named in ``argv`` import their
    module (the others keep their help line), so `nbtui` itself starts fast."""
    named = set(sys.argv[1:] if argv is None else argv)
    parser = _Parser(
        prog="nbtui",
        description="Every Jupyter kernel on every server: usage, GPU memory, orphans, console.",
    )
    parser.add_argument("--version", action="version", version=f"nbtui {__version__}")
    _global_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if not lazy or name in named:
            importlib.import_module(f"nbtui.cli.commands.{module}").add_arguments(p)
        for leaf in _leaves(p):
            _global_options(leaf, suppress=True)
    return parser


def _leaves(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parser itself and every nested subcommand parser (global flags go on each)."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _leaves(child)


def _run(args: argparse.Namespace) -> int:
    if args.command is None:
        from nbtui.cli.commands.tui import run as run_tui
        return run_tui(args)
    module, _ = COMMANDS[args.command]
    return importlib.import_module(f"nbtui.cli.commands.{module}").run(args)


# Commands whose terminal belongs to Textual: they get the real streams.
_TUI_COMMANDS = (None, "console", "demo")
# One-shot commands that show CPU %: the host's baselines are taken as they start.
_PRIMES_HOST = {"ls"}


def main(argv: Optional[Sequence[str]] = None) -> int:
    _collect_less_often()
    args = build_parser(argv, lazy=True).parse_args(argv)
    if args.command in _PRIMES_HOST:
        from nbtui.service.checks import prime_host
        prime_host()  # the interval a CPU % needs passes while the command loads and reads
        try:
            return _streamed(args)
        finally:
            prime_host(drop=True)  # (unused: no later host view in this process adopts them)
    return _streamed(args)


def _streamed(args: argparse.Namespace) -> int:
    if args.command in _TUI_COMMANDS:
        return _main(args)
    from nbtui.core.text import VisibleStream, raw_stream
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = VisibleStream(raw_stream(out)), VisibleStream(raw_stream(err))
    try:
        return _main(args)
    finally:
        sys.stdout, sys.stderr = out, err


def _collect_less_often() -> None:
    """The cycle collector runs every 700 new containers by default and walks every object
    that lives through its generation: a read of 50,000 kernels makes a million of them, so
    collections took half of building ``ls --json``'s kernels (0.77 s, 0.36 s without). A
    read makes almost no cycles (rows, dicts and tuples are freed by their counts), so the
    collector runs once every _GC_YOUNG containers instead, as mypy does its own."""
    import gc
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, _GC_YOUNG), middle, old)


_GC_YOUNG = 50_000


def _main(args: argparse.Namespace) -> int:
    try:
        return _run(args) or 0
    except NbtuiError as e:
        _error(str(e))
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output closed early (`nbtui ls | head`): not an error of ours.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Exception as e:  # the last line of defence: one line, no traceback, no token
        if os.environ.get("NBTUI_DEBUG"):
            raise
        _error(f"internal error: {type(e).__name__}: {e} (set NBTUI_DEBUG=1 for a traceback)")
        return EXIT_FAILED


def _error(message: str) -> None:
    from nbtui.files.secrets import redact
    from nbtui.core.text import visible
    text = redact(message).strip().splitlines() or ["error"]
    print("nbtui: " + "\n  ".join(visible(t) for t in text[:2]), file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
