"""Talking to Jupyter: REST, kernel channels, discovery of local servers."""

import sys as _sys


def _httpx_without_its_cli() -> None:
    """Import httpx without its command-line client: wherever click is installed, httpx's
    package imports ``httpx._main`` (click, pygments, rich.progress, rich.syntax: about a
    tenth of nbtui's start) for a ``main`` nbtui never calls. The module is hidden for this
    one import, so httpx takes its own fallback (a ``main`` that says the CLI is missing);
    an httpx that cannot do without it is imported again, whole, by the next import."""
    if "httpx" in _sys.modules or "httpx._main" in _sys.modules:
        return
    _sys.modules["httpx._main"] = None  # type: ignore[assignment]
    try:
        import httpx  # noqa: F401
    except ImportError:
        pass
    finally:
        del _sys.modules["httpx._main"]


_httpx_without_its_cli()
