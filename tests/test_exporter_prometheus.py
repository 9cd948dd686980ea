"""The real `nbtui exporter` over real Jupyter servers, scraped by a real Prometheus.

One module-wide setup: two real servers ("live" and "hung", the latter with a 3 s
timeout), the exporter as a subprocess (per kernel, refresh 0.3 s, a free port), and
Debian's `prometheus` scraping it every second (its own config, data folder and port;
killed by PID). Tests query Prometheus's HTTP API for the series.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT
from tests.jupyter import PORT_ATTEMPTS, JupyterServer, free_port, port_taken, wait_for

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
HUNG_TIMEOUT = 3.0


def values(body: str, name: str) -> dict:
    out = {}
    for f in text_string_to_metric_families(body):
        for s in f.samples:
            if s.name == name:
                out[frozenset(s.labels.items())] = s.value
    return out


def by_server(body: str, name: str, **match) -> dict:
    return {dict(k)["server"]: v for k, v in values(body, name).items()
            if all(dict(k).get(a) == b for a, b in match.items())}


class Running:
    """A process we started, stopped by its PID."""

    def __init__(self, args, env, log: Path):
        self.log = log
        self.proc = subprocess.Popen(args, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=ROOT)

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    live = JupyterServer(tmp_path_factory.mktemp("jupyter-live"), name="live").start()
    hung = JupyterServer(tmp_path_factory.mktemp("jupyter-hung"), name="hung").start()
    try:
        kernels = [live.start_kernel(), live.start_kernel(), hung.start_kernel()]
        live.create_session("work/[b]train\x1b[31m.ipynb", kernels[0])
        cfg = tmp_path_factory.mktemp("nbtui-config")
        (cfg / "servers.toml").write_text(
            f'[servers.live]\nurl = "{live.url}"\ntoken = "env"\ntoken_env = "EXPORTER_TEST_LIVE"\n'
            f'[servers.hung]\nurl = "{hung.url}"\ntoken = "env"\ntoken_env = "EXPORTER_TEST_HUNG"\n'
            f"timeout = {HUNG_TIMEOUT}\n")
        env = dict(os.environ, NBTUI_CONFIG=str(cfg), EXPORTER_TEST_LIVE=live.token, EXPORTER_TEST_HUNG=hung.token,
                   JUPYTER_RUNTIME_DIR=str(cfg / "runtime-empty"), NBTUI_STATE_DIR=str(cfg / "state"))
        exporter = Running([sys.executable, "-m", "nbtui", "--no-discover", "--refresh", "0.3", "exporter",
                            "--listen", "127.0.0.1:0", "--per-kernel"], env, cfg / "exporter.log")
        try:
            line = wait_for(lambda: next((ln for ln in exporter.text().splitlines() if "serving http" in ln), None),
                            timeout=60, what="the exporter's serving line")
            url = line.split("serving ", 1)[1].split()[0]
            wait_for(lambda: by_server(httpx.get(url, timeout=5).text, "nbtui_up") == {"live": 1.0, "hung": 1.0},
                     timeout=60, what="both servers up")
            yield {"url": url, "live": live, "hung": hung, "kernels": kernels, "exporter": exporter}
        finally:
            exporter.stop()
    finally:
        hung.stop()
        live.stop()


@pytest.fixture(scope="module")
def prometheus(fleet, tmp_path_factory):
    with scraping(fleet["url"], tmp_path_factory.mktemp("prometheus")) as api:
        yield api


@contextlib.contextmanager
def scraping(url: str, base: Path):
    """A real Prometheus of our own, scraping ``url`` every second; its API's base URL."""
    if PROMETHEUS is None:
        pytest.skip("prometheus not installed (Debian package prometheus; .ci/run installs it)")
    target = url.split("//", 1)[1].split("/", 1)[0]
    base.mkdir(parents=True, exist_ok=True)
    (base / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: nbtui\n    static_configs:\n      - targets: ['{target}']\n")
    for attempt in range(PORT_ATTEMPTS):  # a port lost to a parallel test: another port
        port = free_port()
        prom = Running([PROMETHEUS, f"--config.file={base / 'prometheus.yml'}", f"--storage.tsdb.path={base / 'data'}",
                        f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"], dict(os.environ),
                       base / f"prom-{attempt}.log")
        api = f"http://127.0.0.1:{port}"
        wait_for(lambda: prom.proc.poll() is not None or httpx.get(api + "/-/ready", timeout=2).status_code == 200,
                 timeout=60, what="prometheus ready")
        if prom.proc.poll() is None:
            break
        if attempt + 1 == PORT_ATTEMPTS or not port_taken(prom.text()):
            raise RuntimeError(f"prometheus exited with {prom.proc.returncode}: {prom.text()[-2000:]}")
    try:
        yield api
    finally:
        prom.stop()


def query(api: str, expr: str) -> list:
    r = httpx.get(api + "/api/v1/query", params={"query": expr}, timeout=5)
    r.raise_for_status()
    return r.json()["data"]["result"]


def test_prometheus_scrapes_the_fleet(fleet, prometheus):
    up = wait_for(lambda: (lambda rs: rs if len(rs) == 2 else None)(query(prometheus, "nbtui_up")), timeout=60,
                  what="nbtui_up in prometheus")
    assert {r["metric"]["server"]: r["value"][1] for r in up} == {"live": "1", "hung": "1"}
    assert all(r["metric"]["job"] == "nbtui" for r in up)
    kernels = query(prometheus, 'sum by (server) (nbtui_kernels)')
    assert {r["metric"]["server"]: r["value"][1] for r in kernels} == {"live": "2", "hung": "1"}
    info = query(prometheus, 'nbtui_kernel_info{server="live",notebook!=""}')
    assert [r["metric"]["notebook"] for r in info] == ["work/[b]train\\x1b[31m.ipynb"]
    assert info[0]["metric"]["kernel_id"] == fleet["kernels"][0]
    assert query(prometheus, 'nbtui_server_read_duration_seconds_count{server="live"} > 0')
    assert query(prometheus, "nbtui_snapshot_age_seconds")
    # the exporter itself: Prometheus says the target is healthy
    targets = httpx.get(prometheus + "/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    assert [t["health"] for t in targets] == ["up"], targets


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
def test_promtool_check_metrics_on_a_real_scrape(fleet):
    body = httpx.get(fleet["url"], timeout=5).content
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), (r.stdout, r.stderr)


def test_thirty_scrapes_move_no_kernels_activity_or_connections(fleet):
    live, hung = fleet["live"], fleet["hung"]

    def seen():
        return {k["id"]: (k["last_activity"], k["connections"]) for srv in (live, hung) for k in srv.kernels()}

    before = seen()
    refreshes = 0.0
    for _ in range(30):  # each scrape after a fresh refresh of every server
        refreshes = wait_for(
            lambda: (lambda v: v if v > refreshes else None)(
                values(httpx.get(fleet["url"], timeout=5).text, "nbtui_refreshes_total")[frozenset()]),
            timeout=30, interval=0.05, what="a new refresh")
    assert seen() == before


def test_a_hung_server_never_holds_a_scrape_and_goes_down_after_its_timeout(fleet, prometheus):
    hung, url = fleet["hung"], fleet["url"]
    hung.pause()  # SIGSTOP: the socket accepts, nothing answers
    try:
        # Scrapes answer from the last snapshot while a read of the hung server is in
        # flight: well within the hung server's timeout each, for longer than that timeout.
        t_end = time.monotonic() + HUNG_TIMEOUT + 1
        answered = 0
        while time.monotonic() < t_end:
            r = httpx.get(url, timeout=HUNG_TIMEOUT / 2)
            assert r.status_code == 200 and "nbtui_snapshot_age_seconds " in r.text
            answered += 1
            time.sleep(0.1)
        assert answered >= 5
        wait_for(lambda: by_server(httpx.get(url, timeout=5).text, "nbtui_up") == {"live": 1.0, "hung": 0.0},
                 timeout=30, what="nbtui_up of the hung server at 0")
        wait_for(lambda: [r["value"][1] for r in query(prometheus, 'nbtui_up{server="hung"}')] == ["0"],
                 timeout=30, what="prometheus sees the hung server down")
        body = httpx.get(url, timeout=5).text
        assert "hung" not in by_server(body, "nbtui_kernels")  # unread: no counts, not zeros
        assert by_server(body, "nbtui_kernels", state="starting")["live"] == 2
    finally:
        hung.resume()
    wait_for(lambda: by_server(httpx.get(url, timeout=5).text, "nbtui_up") == {"live": 1.0, "hung": 1.0},
             timeout=30, what="the resumed server back up")


def test_a_shut_down_kernel_vanishes_from_prometheus(fleet, prometheus):
    live = fleet["live"]
    kid = live.start_kernel()
    q = f'nbtui_kernel_info{{kernel_id="{kid}"}}'
    wait_for(lambda: query(prometheus, q), timeout=30, what="the new kernel in prometheus")
    live.shutdown_kernel(kid)
    wait_for(lambda: kid not in httpx.get(fleet["url"], timeout=5).text, timeout=30, what="its series gone")
    # Prometheus marks a series that a scrape no longer has as stale at once.
    wait_for(lambda: not query(prometheus, q), timeout=30, what="prometheus drops the vanished kernel's series")


def _started_exporter(cfg: Path, env: dict) -> tuple[Running, str]:
    exporter = Running([sys.executable, "-m", "nbtui", "--no-discover", "--refresh", "0.5", "exporter",
                        "--listen", "127.0.0.1:0"], env, cfg / "exporter.log")
    line = wait_for(lambda: next((ln for ln in exporter.text().splitlines() if "serving http" in ln), None),
                    timeout=60, what="the exporter's serving line")
    return exporter, line.split("serving ", 1)[1].split()[0]


def test_prometheus_reads_a_hubs_users_servers_by_state_and_idle_and_no_kernel_series_of_the_hub(tmp_path):
    from tests.fakehttp import FakeHTTP

    evil = "eve\x1b]0;pwn\x07"
    t = "2026-01-01T00:00:00Z"

    def server(url, **kw):
        return {"ready": True, "pending": None, "url": url, "started": t, "last_activity": t, **kw}

    users = [
        {"name": "alice", "servers": {"": server("/user/alice/"),
                                      "gpu": server("/user/alice/gpu/", ready=False, pending="spawn",
                                                    last_activity=None)}},
        {"name": "bob", "servers": {"": server("/user/bob/", ready=False, pending="stop")}},
        {"name": evil, "servers": {"": server("/user/eve%1B%5D0%3Bpwn%07/")}},
    ]
    kid = "0f3c2a9e-0000-4000-8000-000000000001"
    with FakeHTTP("hub", users=users, kernels_at={"/user/alice/": [kid]}) as hub:
        cfg = tmp_path / "cfg"
        cfg.mkdir()
        (cfg / "servers.toml").write_text(f'[servers.hub]\nurl = "{hub.url}"\ntoken = "none"\nhub = true\n')
        env = dict(os.environ, NBTUI_CONFIG=str(cfg), JUPYTER_RUNTIME_DIR=str(cfg / "runtime-empty"),
                   NBTUI_STATE_DIR=str(cfg / "state"))
        exporter, url = _started_exporter(cfg, env)
        try:
            with scraping(url, tmp_path / "prometheus") as api:
                wait_for(lambda: query(api, "nbtui_hub_users"), timeout=60, what="nbtui_hub_users in prometheus")
                assert [(r["metric"]["hub"], r["value"][1]) for r in query(api, "nbtui_hub_users")] == [("hub", "3")]
                by_state = {r["metric"]["state"]: r["value"][1] for r in query(api, 'nbtui_hub_servers{hub="hub"}')}
                assert by_state == {"ready": "2", "pending-spawn": "1", "pending-stop": "1", "not-ready": "0"}
                idle = {(r["metric"]["user"], r["metric"].get("server_name", "")): float(r["value"][1])
                        for r in query(api, "nbtui_hub_server_idle_seconds")}
                # the hub's last_activity, 2026-01-01: idle since then; alice's pending spawn gave none (Prometheus
                # keeps no empty label: the default server has no server_name)
                assert set(idle) == {("alice", ""), ("bob", ""), ("eve\\x1b]0;pwn\\x07", "")}, idle
                assert all(v > 24 * 3600 for v in idle.values())
                # the hub's own entry: up, and no kernel counts (its users' servers have them)
                assert [r["value"][1] for r in query(api, 'nbtui_up{server="hub"}')] == ["1"]
                assert not query(api, 'nbtui_kernels{server="hub"}') and not query(api, 'nbtui_orphans{server="hub"}')
                kernels = {r["metric"]["server"]: r["value"][1] for r in query(api, "sum by (server) (nbtui_kernels)")}
                assert kernels["hub/alice"] == "1" and "hub" not in kernels
                targets = httpx.get(api + "/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
                assert [t["health"] for t in targets] == ["up"], targets
        finally:
            exporter.stop()


def test_prometheus_reads_a_real_hubs_series(tmp_path):
    """The same series from a real JupyterHub (and its npm proxy): alice's server running
    with a kernel, bob with none; the hub's own entry has no kernel series."""
    if PROMETHEUS is None:
        pytest.skip("prometheus not installed (Debian package prometheus; .ci/run installs it)")
    from tests.hub import Hub

    hub = Hub(tmp_path / "hub", users=("alice", "bob")).start()
    try:
        hub.spawn("alice")
        hub.wait_ready("alice")
        hub.start_kernel("alice")
        cfg = tmp_path / "cfg"
        cfg.mkdir()
        (cfg / "servers.toml").write_text(f'[servers.hub]\nurl = "{hub.url}"\ntoken = "env"\n'
                                          f'token_env = "EXPORTER_TEST_HUB"\nhub = true\n')
        env = dict(os.environ, NBTUI_CONFIG=str(cfg), EXPORTER_TEST_HUB=hub.token,
                   JUPYTER_RUNTIME_DIR=str(cfg / "runtime-empty"), NBTUI_STATE_DIR=str(cfg / "state"))
        exporter, url = _started_exporter(cfg, env)
        try:
            with scraping(url, tmp_path / "prometheus") as api:
                wait_for(lambda: query(api, 'sum by (server) (nbtui_kernels{server="hub/alice"}) == 1'), timeout=60,
                         what="alice's kernel in prometheus")
                assert [r["value"][1] for r in query(api, 'nbtui_hub_users{hub="hub"}')] == ["1"]
                by_state = {r["metric"]["state"]: r["value"][1] for r in query(api, 'nbtui_hub_servers{hub="hub"}')}
                assert by_state == {"ready": "1", "pending-spawn": "0", "pending-stop": "0", "not-ready": "0"}
                idle = query(api, 'nbtui_hub_server_idle_seconds{hub="hub"}')
                assert [r["metric"]["user"] for r in idle] == ["alice"] and float(idle[0]["value"][1]) >= 0
                assert not query(api, 'nbtui_kernels{server="hub"}') and not query(api, 'nbtui_sessions{server="hub"}')
        finally:
            exporter.stop()
    finally:
        hub.stop()
