"""docs/cli.md documents every subcommand and flag of the real parser, so none can go
undocumented; the README points a user who only has the repository at it."""

from __future__ import annotations

import argparse
import re

import pytest

from nbtui.cli import build_parser
from tests.conftest import ROOT

DOC = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(("servers", "add"), parser) for the top level and every subcommand, nested too."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _commands(child, path + (name,))


def _global_actions(parser: argparse.ArgumentParser) -> set[int]:
    return {id(a) for g in parser._action_groups if g.title == "global options" for a in g._group_actions}


def _options(parser: argparse.ArgumentParser, skip_globals: bool) -> list[str]:
    skip = _global_actions(parser) if skip_globals else set()
    return [o for a in parser._actions if id(a) not in skip and not isinstance(a, argparse._HelpAction)
            for o in a.option_strings]


def _sections(text: str) -> dict[str, str]:
    """``nbtui servers add`` -> the text under its ``### `nbtui servers add` `` heading."""
    out: dict[str, str] = {}
    parts = re.split(r"^(#{2,3} .*)$", text, flags=re.M)
    for head, body in zip(parts[1::2], parts[2::2]):
        m = re.match(r"### `(nbtui[^`]*)`", head)
        if m:
            out[m.group(1).strip()] = body
    return out


def _mentions(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


PARSER = build_parser([])
COMMANDS = list(_commands(PARSER))
SECTIONS = _sections(DOC)
GLOBALS = DOC.split("## Global options", 1)[1].split("\n## ", 1)[0] if "## Global options" in DOC else ""


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS if p != ("servers",)], ids=lambda p: " ".join(p) or "nbtui")
def test_every_subcommand_has_a_section(path):
    name = " ".join(("nbtui",) + path)
    assert name in SECTIONS, f"docs/cli.md has no section for `{name}`: add a \"### `{name}`\" heading"


@pytest.mark.parametrize("path, parser", [(p, c) for p, c in COMMANDS if p], ids=lambda x: " ".join(x) if isinstance(x, tuple) else "")
def test_every_flag_is_documented_in_its_section(path, parser):
    name = " ".join(("nbtui",) + path)
    text = SECTIONS.get(name, "")
    missing = [o for o in _options(parser, skip_globals=True) if not _mentions(text, o)]
    assert not missing, (f"docs/cli.md does not document {', '.join(f'`{name} {o}`' for o in missing)}: "
                         f"add it to the \"### `{name}`\" section")


def test_every_global_flag_is_documented():
    missing = [o for o in _options(PARSER, skip_globals=False) if o != "--version" and not _mentions(GLOBALS, o)]
    assert not missing, f"docs/cli.md does not document the global flag(s) {', '.join(missing)} under \"## Global options\""
    assert _mentions(DOC, "--version")


def test_exit_codes_and_json_shapes_are_there():
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 3 |", "| 4 |", "| 5 |"):
        assert code in DOC
    for heading in ("## `nbtui ls --json`", "## `kill --json` and `cull --json`", "## `migrate --json`"):
        assert heading in DOC


def test_readme_points_to_the_contract_and_names_what_users_missed():
    assert "docs/cli.md" in README and "shared folder" not in README
    for word in ("`k`", "`m`", "nbtui rebind", "nbtui adopt", "--no-token", "demo --no-tui"):
        assert word in README, f"README.md does not mention {word}"


KEY_NAMES = {"slash": "/", "question_mark": "?"}


def _binding_keys():
    from nbtui.tui.app import NbtuiApp
    from nbtui.tui.screens.console import ConsoleScreen
    from nbtui.tui.screens.fleet import FleetScreen
    for owner in (NbtuiApp, FleetScreen, ConsoleScreen):
        for b in owner.BINDINGS:
            for key in b.key.split(","):
                yield owner.__name__, KEY_NAMES.get(key.strip(), key.strip())


@pytest.mark.parametrize("owner, key", sorted(set(_binding_keys())))
def test_every_key_is_in_the_readme(owner, key):
    assert f"`{key}`" in README, f"README.md does not mention the {owner} key `{key}`: add it to its keys table"
