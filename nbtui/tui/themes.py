"""Themes as TOML data files, turned into Textual themes.

Shipped themes live in the package's ``themes/`` folder (the repository's top-level
``themes/`` in an editable install); users add their own in the config folder's
``themes/``. A broken file is reported in one line and skipped, never fatal.
"""

from __future__ import annotations

import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Callable

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

from textual.color import Color, ColorParseError
from textual.theme import Theme, ThemeProvider

DEFAULT_THEME = "nbtui-dark"
_COLOUR_KEYS = ("primary", "secondary", "warning", "error", "success", "accent",
                "foreground", "background", "surface", "panel", "boost")
_KNOWN = {f.name for f in fields(Theme)}


class ThemeError(ValueError):
    """A theme file that cannot be used; ``str()`` is one line naming the file."""


def shipped_dir() -> Path:
    here = Path(__file__).resolve().parent.parent  # the nbtui package
    packaged = here / "themes"
    return packaged if packaged.is_dir() else here.parent / "themes"


def user_dir(config_folder: Path | None) -> Path | None:
    return None if config_folder is None else Path(config_folder) / "themes"


def load_file(path: Path) -> Theme:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ThemeError(f"theme {path}: cannot read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ThemeError(f"theme {path}: invalid TOML: {e}") from None
    unknown = sorted(set(data) - _KNOWN)
    if unknown:
        raise ThemeError(f"theme {path}: unknown key {unknown[0]!r}")
    data.setdefault("name", path.stem)
    if not isinstance(data["name"], str) or not data["name"]:
        raise ThemeError(f"theme {path}: name must be a non-empty string")
    if not isinstance(data.get("primary"), str):
        raise ThemeError(f"theme {path}: primary colour is missing")
    variables = data.get("variables", {})
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        raise ThemeError(f"theme {path}: [variables] must map names to strings")
    for key in _COLOUR_KEYS:
        value = data.get(key)
        if value is None:
            continue
        try:
            if not isinstance(value, str):
                raise ColorParseError(repr(value))
            Color.parse(value)
        except ColorParseError:
            raise ThemeError(f"theme {path}: {key} = {value!r} is not a colour") from None
    for key in ("dark", "ansi"):
        if key in data and not isinstance(data[key], bool):
            raise ThemeError(f"theme {path}: {key} must be true or false")
    try:
        return Theme(**data)
    except (TypeError, ValueError) as e:
        raise ThemeError(f"theme {path}: {e}") from None


def load_all(config_folder: Path | None = None) -> tuple[list[Theme], list[str]]:
    """Shipped themes, then the user's (which may replace a shipped one by name)."""
    themes: dict[str, Theme] = {}
    errors: list[str] = []
    for folder in (shipped_dir(), user_dir(config_folder)):
        if folder is None or not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                theme = load_file(path)
            except ThemeError as e:
                errors.append(str(e))
                continue
            themes[theme.name] = theme
    return list(themes.values()), errors


class OwnThemesFirst(ThemeProvider):
    """"Change theme" lists nbtui's themes (shipped, then the user's) first, then Textual's."""

    @property
    def commands(self) -> list[tuple[str, Callable[[], None]]]:
        every = super().commands
        own = set(getattr(self.app, "own_themes", ()))
        return [c for c in every if c[0] in own] + [c for c in every if c[0] not in own]


def for_rich(theme: Theme) -> Theme:
    """The theme with its ANSI colours as Rich style words (``ansi_red`` -> ``color(1)``),
    for the styles of Rich Text the screens build from it; other themes as they are."""
    changes: dict[str, Any] = {}
    for key in _COLOUR_KEYS:
        value = getattr(theme, key, None)
        if isinstance(value, str) and value.startswith("ansi_"):
            rich = Color.parse(value).rich_color
            changes[key] = rich.name if rich is not None else None
    return replace(theme, **changes) if changes else theme
