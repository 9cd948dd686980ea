"""The fleet service's thread is named where an admin looks (``top -H``, ``ps -L``): what of
nbtui's CPU is the fleet's reads and what the screen's."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nbtui.files.config import Settings
from nbtui.service.fleet import Fleet
from nbtui.service.service import FleetService


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread names from /proc: Linux")
def test_the_fleet_service_thread_is_named_for_top_and_ps():
    service = FleetService(Fleet([], Settings()), partials=False, hold_back=None)
    try:
        asyncio.run(service.read())  # (the loop runs: its thread has named itself)
        tid = service._thread.native_id
        comm = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
        ps = subprocess.run(["ps", "-L", "-o", "tid=,comm=", "-p", str(os.getpid())], capture_output=True,
                            text=True).stdout if shutil.which("ps") else None
    finally:
        service.close(10)
    assert comm == "nbtui-fleet"
    if ps is not None:
        assert f"{tid} nbtui-fleet" in " ".join(ps.split())
