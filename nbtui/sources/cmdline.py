"""What a process's command line says it is, as both kinds of source read it: discovery
(``nbtui.jupyter.everyone`` trusts another user's runtime file only when its process is a
Jupyter server) and the host view (``nbtui.host.local`` measures everything under a server).
Pure text: no psutil, no network."""

from __future__ import annotations

from typing import Iterable

SERVER_MARKERS = ("jupyter_server", "jupyter-server", "jupyter-lab", "jupyterlab", "jupyter-notebook",
                  "notebook.app", "jupyterhub-singleuser", "jupyter-labhub", "jupyter-singleuser")


def is_jupyter_server(cmdline: Iterable[str]) -> bool:
    """Whether the command line is a Jupyter server's (a kernel that names one is not)."""
    text = " ".join(cmdline).lower()
    return any(m in text for m in SERVER_MARKERS) and "ipykernel" not in text
