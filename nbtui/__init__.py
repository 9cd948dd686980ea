"""nbtui: every Jupyter kernel on every server, in one terminal."""

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The Jupyter Server extension `nbtui` (GET /api/nbtui/usage): see nbtui.serverext."""
    return [{"module": "nbtui.serverext"}]
