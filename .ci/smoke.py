"""A smoke test of an installed nbtui, run by .ci/lowest.sh with each venv's Python.

Every module imports; against a real jupyter_server of this venv: `nbtui ls` (and --json), `nbtui exec`,
and a `run_test()` of the fleet screen that finds the kernel's row. Bounded: the whole
script gives up after DEADLINE seconds. Exits non-zero, with one line saying what failed.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import pkgutil
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

DEADLINE = 240.0
START = time.monotonic()


def left() -> float:
    return max(1.0, DEADLINE - (time.monotonic() - START))


def fail(what: str) -> None:
    print(f"smoke: FAILED: {what}", file=sys.stderr)
    sys.exit(1)


def wait_for(pred, timeout: float, what: str):
    end = time.monotonic() + min(timeout, left())
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    fail(f"timed out waiting for {what}")


def import_everything() -> int:
    import nbtui

    names = [m.name for m in pkgutil.walk_packages(nbtui.__path__, "nbtui.")]
    for name in names:
        if name == "nbtui.__main__":
            continue
        importlib.import_module(name)
    return len(names)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    import textual

    count = import_everything()
    print(f"smoke: python {sys.version.split()[0]}, textual {textual.__version__}: {count} modules import")
    base = Path(tempfile.mkdtemp(prefix="nbtui-smoke-"))
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(base / "runtime"), JUPYTER_CONFIG_DIR=str(base / "jconfig"),
               JUPYTER_DATA_DIR=str(base / "data"), JUPYTER_PLATFORM_DIRS="1", NBTUI_CONFIG=str(base / "nbtui"),
               NBTUI_STATE_DIR=str(base / "state"))
    (base / "root").mkdir()
    port, token = free_port(), secrets.token_hex(16)
    url = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={base / 'root'}", f"--IdentityProvider.token={token}",
         "--ServerApp.open_browser=False", "--allow-root"],
        env=env, stdout=open(base / "server.log", "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True)
    try:
        def api(method: str, path: str, body=None):
            req = urllib.request.Request(url + path, method=method, headers={"Authorization": f"token {token}"},
                                         data=None if body is None else json.dumps(body).encode())
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read() or b"null")

        def up():
            try:
                return api("GET", "api/status") is not None
            except OSError:
                return False

        wait_for(up, 90, "jupyter_server to answer")
        kid = api("POST", "api/kernels", {"name": "python3"})["id"]
        os.environ.update(env)
        nbtui = [sys.executable, "-m", "nbtui"]
        r = subprocess.run(nbtui + ["ls"], capture_output=True, text=True, timeout=left())
        if r.returncode != 0 or kid[:8] not in r.stdout:
            fail(f"nbtui ls (exit {r.returncode}): {r.stdout[-400:]} {r.stderr[-400:]}")
        print("smoke: nbtui ls lists the kernel")
        r = subprocess.run(nbtui + ["ls", "--json"], capture_output=True, text=True, timeout=left())
        if r.returncode != 0 or kid not in [k.get("kernel_id") for k in json.loads(r.stdout or "{}").get("kernels", [])]:
            fail(f"nbtui ls --json (exit {r.returncode}): {r.stdout[-400:]} {r.stderr[-400:]}")
        print("smoke: nbtui ls --json lists the kernel (orjson)")
        r = subprocess.run(nbtui + ["exec", kid[:8], "print(6 * 7)", "--timeout", "60"], capture_output=True,
                           text=True, timeout=left())
        if r.returncode != 0 or r.stdout.strip() != "42":
            fail(f"nbtui exec (exit {r.returncode}): {r.stdout[-400:]} {r.stderr[-400:]}")
        print("smoke: nbtui exec runs code")
        asyncio.run(asyncio.wait_for(fleet_screen(kid), left()))
        print("smoke: the fleet screen shows the kernel (run_test)")
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(15)
        except (OSError, subprocess.TimeoutExpired):
            os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)
    print(f"smoke: ok in {time.monotonic() - START:.1f} s")


async def fleet_screen(kid: str) -> None:
    from nbtui.files.config import load
    from nbtui.service.fleet import Fleet
    from nbtui.tui.app import NbtuiApp
    config = load(None)
    app = NbtuiApp(Fleet.from_config(config), settings=config.settings, refresh=0.5)
    async with app.run_test(size=(100, 30)) as pilot:
        end = time.monotonic() + min(60.0, left())
        while time.monotonic() < end:
            screen = app.fleet_screen
            if screen is not None and any(kid in key for key in screen.table.order):
                break
            await pilot.pause(0.1)
        else:
            fail("the fleet screen never showed the kernel's row")
        table = app.fleet_screen.table
        # tui/widgets/table.py repaints rows through DataTable's private caches: they must exist here.
        for name in ("_cell_render_cache", "_row_render_cache", "_row_renderable_cache", "_line_cache",
                     "_row_locations", "_update_count"):
            if not hasattr(table, name):
                fail(f"textual {sys.modules['textual'].__version__}: DataTable has no {name} (tui/widgets/table.py needs it)")
        await pilot.press("q")


if __name__ == "__main__":
    main()
