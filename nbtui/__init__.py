"""nbtui: every Jupyter kernel on every server, in one terminal."""

__version__ = "0.1.0"
