"""The real `nbtui exporter` over real Jupyter servers, scraped by a real Prometheus.

One module-wide setup: two real servers ("live" and "hung", the latter with a 3 s
timeout), the exporter as a subprocess (per kernel, refresh 0.3 s, a free port), and
Debian's `prometheus` scraping it every second (its own config, data folder and port;
killed by PID). Tests query Prometheus's HTTP API for the series.
"""

from __future__ import annotations

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
    if PROMETHEUS is None:
        pytest.skip("prometheus not installed (Debian package prometheus; .ci/run installs it)")
    base = tmp_path_factory.mktemp("prometheus")
    target = fleet["url"].split("//", 1)[1].split("/", 1)[0]
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
