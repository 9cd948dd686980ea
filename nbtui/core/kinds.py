"""What a row of the fleet (and a step of a kill plan) is: one vocabulary for the table,
the kill and cull plans, their JSON and their audit lines.

A kernel and a terminal go through their server; a leftover (a local Jupyter process with
an orphan reason) and a process (one outside every listed kernel, of a server not read) are
signalled; a server (a hub user's single-user server) is stopped through its hub. The
values are the words the table's KIND column, ``--json`` and the audit log say.
"""

from __future__ import annotations

from typing import Final, Literal

Kind = Literal["kernel", "terminal", "leftover", "process", "server"]

KERNEL: Final = "kernel"
TERMINAL: Final = "terminal"
LEFTOVER: Final = "leftover"
PROCESS: Final = "process"
SERVER: Final = "server"

ROW_KINDS: Final[tuple[Kind, ...]] = (KERNEL, TERMINAL, LEFTOVER, PROCESS)  # the fleet table's rows
