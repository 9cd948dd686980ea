"""An SVG snapshot of the console with mixed outputs, from a real kernel (fixed id).

Stored in snapshots/test_console_snapshot/; after an intended change, look at it and
update with `pytest tests/test_console_snapshot.py --snapshot-update`.
"""

from __future__ import annotations


import pytest

from nbtui.files.config import ServerConfig, Settings
from nbtui.service.fleet import Fleet
from nbtui.tui.app import NbtuiApp
from nbtui.tui.screens.console import ConsoleScreen
from tests.jupyter import until

KERNEL_ID = "5eed0000-c0de-4c0d-8e00-000000000042"

MIXED = """\
import sys, time
from IPython.display import display, Markdown, Image
print("loading data")
for p in range(0, 101, 50):
    sys.stdout.write(f"\\rprogress {p:3d}%"); sys.stdout.flush(); time.sleep(0.05)
print()
print("warning: 3 rows skipped", file=sys.stderr)
display(Markdown("## Summary\\n- **rows**: 1,024\\n- *loss*: 0.125"))
display(Image(b"\\x89PNG\\r\\n\\x1a\\n" + bytes(2048)))
{"rows": 1024, "loss": 0.125}"""


@pytest.fixture
def colour(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)


def test_console_mixed_outputs(snap_compare, colour, shared_jupyter):
    shared_jupyter.api("POST", "api/kernels", json={"name": "python3", "kernel_id": KERNEL_ID})
    fleet = Fleet([ServerConfig("gpu1", shared_jupyter.url, token_source="discovered", token=shared_jupyter.token)],
                  Settings())
    app = NbtuiApp(fleet, live=False, open_console=("gpu1", KERNEL_ID))

    async def run_before(pilot) -> None:
        screen = await until(pilot, lambda: isinstance(pilot.app.screen, ConsoleScreen) and pilot.app.screen)
        await until(pilot, screen.ready.is_set)
        screen.view.clear()  # the banner names versions; the outputs are what this shows
        for code in (MIXED, "def load(path):\n    raise FileNotFoundError(path)\nload('data.csv')"):
            screen.code_input.text = code
            await screen.run_code(code).wait()
            await until(pilot, lambda: screen.state == "idle")
        screen.code_input.cursor_blink = False  # a blinking cursor would make the picture flaky
        screen.code_input.text = "df.describe()"
        screen.code_input.cursor_location = (0, 13)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(90, 50), run_before=run_before)

