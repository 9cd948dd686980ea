"""A read leaves nothing for the cycle collector (nbtui.jupyter.rest._unbind).

httpx leaves a streamed response and its stream in a reference cycle. Left to the collector,
the TUI's 80 requests a refresh piled up: it walked 60,000-120,000 objects at a time, and the
screen stood still for up to 0.1 s each time."""

from __future__ import annotations

import gc
import sys

import pytest

from nbtui.jupyter.rest import ServerClient


async def test_a_servers_answers_are_freed_as_they_are_read(shared_jupyter):
    """Answers read whole (``request``) and item by item (``stream_list``)."""
    client = ServerClient("srv", shared_jupyter.url, shared_jupyter.token)
    was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(3):  # the connection pool and its first objects made
            await client.kernels()
        gc.collect()
        for _ in range(20):
            await client.kernels()
            await client.sessions()
            await client.request("GET", "api/status")
            await client.stream_list("api/kernels", lambda item: None)  # (the capped read's way)
        left = gc.collect()  # what only the collector could free
    finally:
        if was:
            gc.enable()
        await client.aclose()
    assert left < 40, f"{left} objects of 80 requests were left in reference cycles"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 has no asyncio.timeout: wait_for's own task holds the failure")
async def test_a_failed_reads_error_and_answer_are_freed_with_it():
    """A server's read, as the fleet makes it: its requests under one deadline (``rest.deadline``),
    the first failure stopping the others (``fleet.all_or_none``). A failure's traceback held
    frames that held tasks that held the failure (``wait_for``'s own task, the read's tasks):
    cycles that kept each refused answer (up to ``max_body``) until the collector came by, in a
    hub of failing users' servers hundreds at once (one `ls` peaked at 1 GB)."""
    from nbtui.jupyter.rest import ServerError, deadline
    from nbtui.service.fleet import all_or_none
    from tests.fakehttp import FakeHTTP

    with FakeHTTP("500") as bad:
        client = ServerClient("bad", bad.url)
        was = gc.isenabled()
        gc.disable()
        try:
            gc.collect()
            for _ in range(3):
                with pytest.raises(ServerError):
                    await deadline(all_or_none([client.request("GET", "api"), client.request("GET", "api/kernels")]), 30)
            gc.set_debug(gc.DEBUG_SAVEALL)
            gc.collect()
            held = [o for o in gc.garbage if isinstance(o, ServerError)]  # (with its traceback's frames)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            if was:
                gc.enable()
            await client.aclose()
    assert not held, f"{len(held)} errors of failed reads (and their answers) were left in reference cycles"
