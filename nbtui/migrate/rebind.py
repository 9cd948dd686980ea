"""Rebind: give a live kernel that no session references a notebook session on its own
server, so its owner can reopen it from JupyterLab with its state intact. A path with no
file gets an empty notebook (never written over a file).

Only ``POST /api/sessions`` with ``kernel: {"id": …}``: ``PATCH /api/sessions`` that
changes a session's kernel shuts the old kernel down.
"""

from __future__ import annotations

from nbtui.core.errors import NbtuiError, NotFound, UsageError
from nbtui.jupyter.rest import NOT_FOUND, ServerClient, ServerError


def clean_path(path: str) -> str:
    path = (path or "").strip().lstrip("/")
    if not path:
        raise UsageError("--notebook needs a path relative to the server's root, e.g. work/train.ipynb")
    if any(part == ".." for part in path.split("/")):
        raise UsageError(f"bad notebook path {path!r}: '..' is not allowed")
    return path


async def check(client: ServerClient, kernel_id: str, path: str) -> None:
    """Raise unless the kernel lives, has no session, and ``path`` has none either."""
    try:
        await client.kernel(kernel_id)
    except ServerError as e:
        if e.kind == NOT_FOUND:
            raise NotFound(f"kernel {kernel_id[:8]} is no longer on {client.name}") from None
        raise
    sessions = await client.sessions()
    mine = [s for s in sessions if (s.get("kernel") or {}).get("id") == kernel_id]
    if mine:
        paths = ", ".join(str(s.get("path")) for s in mine)
        raise NbtuiError(f"kernel {kernel_id[:8]} on {client.name} already has a session ({paths}); nothing to rebind")
    taken = [s for s in sessions if str(s.get("path") or "").lstrip("/") == path]
    if taken:
        other = ((taken[0].get("kernel") or {}).get("id") or "?")[:8]
        raise NbtuiError(f"{path} already has a session on {client.name} (kernel {other}); "
                         "pick another path with --notebook")


async def rebind(client: ServerClient, kernel_id: str, path: str, *, act_timeout: float = 30.0) -> dict:
    """Bind ``path`` to the kernel; return the new session. The re-check (its requests
    together) is bounded by the server's timeout, the binding (the notebook file and the
    session) by ``act_timeout`` at least: each step as a whole, never per request."""
    await client.within(check(client, kernel_id, path), what="the re-check before acting")
    return await client.within(_bind(client, kernel_id, path), max(client.timeout, act_timeout), "binding the session")


async def _bind(client: ServerClient, kernel_id: str, path: str) -> dict:
    await _notebook_file(client, path)
    session = await client.create_session(path, kernel_id=kernel_id)
    got = (session.get("kernel") or {}).get("id")
    if got != kernel_id:
        # The server hands back an existing session for a path that has one (a race).
        raise NbtuiError(f"{path} is bound to kernel {str(got)[:8]}, not {kernel_id[:8]} (a session appeared meanwhile)")
    return session


async def _notebook_file(client: ServerClient, path: str) -> None:
    """An empty notebook at ``path`` when there is no file (never over one): the rebound
    kernel can then be opened from JupyterLab, and is no `notebook-missing` orphan. Where
    the server refuses the write, the session is still made, as before."""
    from nbtui.migrate import notebook
    try:
        await notebook.apply(await notebook.plan(client, path), client)
    except (ServerError, notebook.NotebookConflict):
        pass
