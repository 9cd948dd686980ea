"""The model's fields that hold one of a few strings, as types (the values are the CLI's
JSON contract; ``nbtui.core.model`` uses them on its fields).

What a hostile server sends is never one of these until nbtui has interpreted it: a
kernel's ``execution_state`` stays ``str`` where it is read, and becomes a
:data:`KernelState` through ``model.normalize_state`` (anything else: "unknown").

A row of the fleet (and a step of a kill plan) is one :data:`Kind`: one vocabulary for the
table, the kill and cull plans, their JSON and their audit lines. A kernel and a terminal go
through their server; a leftover (a local Jupyter process with an orphan reason) and a
process (one outside every listed kernel, of a server not read) are signalled; a server (a
hub user's single-user server) is stopped through its hub.
"""

from __future__ import annotations

from typing import Final, Literal, Union

# A kernel's state as nbtui shows and reports it (model.KERNEL_STATES, in this order).
KernelState = Literal["idle", "busy", "starting", "restarting", "dead", "unknown"]

# A server's status after a read (`ls --json` servers[].status).
ServerStatus = Literal["ok", "unreachable", "auth-failed", "timeout", "error", "skipped"]

# Where a server came from: servers.toml, a runtime file on this host, a JupyterHub.
ServerSource = Literal["config", "discovered", "hub"]

# Where a kernel's usage numbers came from: this host's /proc and NVML, the server's
# extension, a kernel asked over its control channel.
UsageSource = Literal["local", "extension", "control"]

# How a hub user's server is read: its internal target directly, or through the hub's proxy.
Route = Literal["direct", "proxy"]

# A hub user's server being spawned or stopped.
Pending = Literal["spawn", "stop"]

# How a server could not be read (``nbtui.jupyter.rest.ServerError.kind``).
ErrorKind = Literal["unreachable", "timeout", "auth-failed", "not-jupyter", "server-error", "not-found",
                    "insecure", "token", "too-big"]

# A server's ``error_kind``: how its read failed, or "proxy-interval" (not read on purpose).
ServerErrorKind = Union[ErrorKind, Literal["proxy-interval"]]

# What a row of the fleet, or a step of a plan, is (the table's KIND column, --json, the audit log).
Kind = Literal["kernel", "terminal", "leftover", "process", "server"]

KERNEL: Final = "kernel"
TERMINAL: Final = "terminal"
LEFTOVER: Final = "leftover"
PROCESS: Final = "process"
SERVER: Final = "server"

ROW_KINDS: Final[tuple[Kind, ...]] = (KERNEL, TERMINAL, LEFTOVER, PROCESS)  # the fleet table's rows
