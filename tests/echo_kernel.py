"""A tiny real kernel of another language ("text"): it echoes its input upper-cased.

Installed into a test server's data folder by ``install(server)``; run by the server
like any kernel (``python -m tests.echo_kernel -f CONNECTION_FILE``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ipykernel.kernelbase import Kernel

ROOT = Path(__file__).resolve().parent.parent


class EchoKernel(Kernel):
    implementation = os.environ.get("ECHO_IMPLEMENTATION", "echo")  # a hostile kernel names itself anything
    implementation_version = "1.0"
    language = "text"
    language_version = "1"
    language_info = {"name": "text", "mimetype": "text/plain", "file_extension": ".txt"}
    banner = "Echo kernel: says what you say, louder"

    async def do_execute(self, code, silent, store_history=True, user_expressions=None, allow_stdin=False,
                         *, cell_id=None):
        if not silent:
            self.send_response(self.iopub_socket, "stream", {"name": "stdout", "text": code.upper() + "\n"})
        return {"status": "ok", "execution_count": self.execution_count, "payload": [], "user_expressions": {}}


def install(server, name: str = "echo", implementation: str | None = None) -> str:
    """Add the kernel spec ``name`` to a tests.jupyter.JupyterServer (the server reads kernel
    specs when asked); ``implementation``: what its kernel_info calls it."""
    spec = server.base / "data" / "kernels" / name
    spec.mkdir(parents=True, exist_ok=True)
    env = {"PYTHONPATH": str(ROOT)}
    if implementation is not None:
        env["ECHO_IMPLEMENTATION"] = implementation
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "tests.echo_kernel", "-f", "{connection_file}"],
        "display_name": "Echo", "language": "text", "env": env,
    }))
    return name


if __name__ == "__main__":
    from ipykernel.kernelapp import IPKernelApp

    IPKernelApp.launch_instance(kernel_class=EchoKernel)
