"""Fixtures: real Jupyter servers, an isolated nbtui config, and a way to run the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.jupyter import JupyterServer

ROOT = Path(__file__).resolve().parent.parent


def pytest_sessionstart(session) -> None:
    """nbtui's bytecode, once, before the workers start: the suite runs the real CLI, TUI and
    exporter in hundreds of subprocesses, and with PYTHONDONTWRITEBYTECODE set (as in CI) a
    checkout has none, so each of them would compile nbtui's modules again (as pip would have
    compiled them for an installed wheel)."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        import compileall

        compileall.compile_dir(str(ROOT / "nbtui"), quiet=1)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test gets its own nbtui config/state folders and Jupyter runtime dir."""
    cfg = tmp_path / "nbtui-config"
    cfg.mkdir(mode=0o700)  # private, as nbtui requires of a config folder whatever the umask
    monkeypatch.setenv("NBTUI_CONFIG", str(cfg))
    monkeypatch.setenv("NBTUI_STATE_DIR", str(tmp_path / "nbtui-state"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime-empty"))
    monkeypatch.setenv("NO_COLOR", "1")
    # As root nbtui discovers every user's servers (all the servers of tests running at the
    # same time); a test sees only its own unless it turns this back on (tests/localuser.py).
    monkeypatch.setenv("NBTUI_ROOT_DISCOVERY", "0")
    yield


@pytest.fixture
def config_dir() -> Path:
    return Path(os.environ["NBTUI_CONFIG"])


@pytest.fixture
def jupyter_factory(tmp_path_factory):
    """Start real Jupyter servers: ``jupyter_factory(name=..., extra_args=...)``."""
    started: list[JupyterServer] = []

    def make(name: str = "srv", **kw) -> JupyterServer:
        server = JupyterServer(tmp_path_factory.mktemp(f"jupyter-{name}"), name=name, **kw)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def jupyter(jupyter_factory) -> JupyterServer:
    return jupyter_factory("srv")


@pytest.fixture(scope="module")
def shared_jupyter(tmp_path_factory):
    """One server for a whole module, for tests that only read."""
    server = JupyterServer(tmp_path_factory.mktemp("jupyter-shared"), name="shared").start()
    yield server
    server.stop()


def run_nbtui(*args: str, input: str | None = None, env: dict | None = None, timeout: float = 60):
    """Run the real `nbtui` command line in a subprocess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "nbtui", *args], input=input, capture_output=True, text=True,
        env=full_env, timeout=timeout, cwd=ROOT,
    )


def add_server(name: str, server: JupyterServer, *extra: str):
    """`nbtui servers add` through an env var token (no keyring needed)."""
    var = f"NBTUI_TEST_TOKEN_{name.upper().replace('-', '_')}"
    os.environ[var] = server.token
    r = run_nbtui("servers", "add", name, server.url, "--token-env", var, *extra)
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture
def _top_level_svg(monkeypatch):
    # Patched before the plugin's snap_compare is set up (it picks the extension class then).
    import pytest_textual_snapshot as pts

    class TopLevelSVG(pts.SVGImageExtension):
        @classmethod
        def dirname(cls, *, test_location) -> str:
            return str(ROOT / "snapshots" / test_location.basename)

    monkeypatch.setattr(pts, "SVGImageExtension", TopLevelSVG)


@pytest.fixture
def snap_compare(_top_level_svg, snap_compare):
    """pytest-textual-snapshot's fixture, storing SVGs under the top-level snapshots/ folder
    (snapshots/<test module>/<test>.svg); update them with --snapshot-update."""
    return snap_compare


@pytest.fixture
def still_clock(monkeypatch):
    """Stand the wall clock that idle times are measured against (nbtui.core.model.clock:
    a kernel's idle time is its ``last_activity`` as of when asked) at a moment: hand-built
    kernels then show the idle times their tests name, however long the test runs."""
    import datetime as dt

    from nbtui.core import model

    def stand(at: dt.datetime) -> None:
        monkeypatch.setattr(model, "clock", lambda: at.timestamp())

    return stand
