"""A read leaves nothing for the cycle collector (nbtui.jupyter.rest._unbind).

httpx leaves a streamed response and its stream in a reference cycle. Left to the collector,
the TUI's 80 requests a refresh piled up: it walked 60,000-120,000 objects at a time, and the
screen stood still for up to 0.1 s each time."""

from __future__ import annotations

import gc

from nbtui.jupyter.rest import ServerClient


async def test_a_servers_answers_are_freed_as_they_are_read(shared_jupyter):
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
        left = gc.collect()  # what only the collector could free
    finally:
        if was:
            gc.enable()
        await client.aclose()
    assert left < 40, f"{left} objects of 60 requests were left in reference cycles"
