"""A request's bound never swallows the caller's cancellation (nbtui.jupyter.rest._bounded).

Before Python 3.12, ``asyncio.wait_for`` returns its work's result when the work finishes in
the same moment its caller is cancelled. A loop of requests that each answer at once (a hub
paging "next" forever) then ran past the read's own deadline, to its 10,000th page."""

from __future__ import annotations

import asyncio
import sys

import pytest

from nbtui.jupyter.rest import ServerClient


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10's tasks cannot tell a pending cancellation")
async def test_a_cancel_that_meets_an_answer_still_cancels():
    client = ServerClient("s", "http://127.0.0.1:9/")
    try:
        answer: asyncio.Future = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(client._bounded(answer, 5))
        await asyncio.sleep(0)  # the task waits on the answer now
        answer.set_result("page")  # the answer and the cancel in one step of the loop
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()
    finally:
        await client.aclose()
