"""nbtui exporter without Jupyter: the metrics of recorded snapshots, restarts across
refreshes, the web config (real TLS, real bcrypt), the CLI's refusals, and the shipped
alert rules (promtool) and Grafana dashboard."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import re
import shutil
import ssl
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from nbtui.exporter import metrics as exp
from nbtui.core import model
from nbtui.exporter import webconfig
from tests.conftest import ROOT, run_nbtui
from tests.jupyter import free_port


NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(autouse=True)
def _clock(still_clock):
    still_clock(NOW)  # idle times are as of when asked: the hand-built kernels' stay as named


PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")


def kernel(server, kid, state="idle", idle=10.0, conns=0, session="work/a.ipynb", usage=None, reasons=(), user=None):
    return model.Kernel(
        server=server, kernel_id=kid, kernel_name="python3", state=state, connections=conns,
        last_activity=NOW - dt.timedelta(seconds=idle),
        session=model.Session("s-" + kid, session, session.rsplit("/", 1)[-1], "notebook") if session else None,
        usage=usage, orphan_reasons=tuple(reasons), user=user)


def snapshot(kernels=(), servers=None, **kw):
    servers = servers or (model.ServerInfo(name="gpu1", url="http://127.0.0.1:1/", source="config", version="2.21.1",
                                           latency_ms=3.0),)
    return model.Snapshot(generated_at=NOW, servers=tuple(servers), kernels=tuple(kernels), **kw)


class Recorded:
    """A fleet that answers recorded snapshots, one per read (the last one repeats)."""

    names = ()

    def __init__(self, *snaps):
        self.snaps = list(snaps)

    async def snapshot(self, on_server=None, **_):
        return self.snaps.pop(0) if len(self.snaps) > 1 else self.snaps[0]


@pytest.fixture(autouse=True)
def _exporters_closed(monkeypatch):
    """Every Exporter a test makes has its fleet service (a thread and its loop) stopped after."""
    made = []
    made_here = exp.Exporter.__init__

    def init(self, *a, **kw):
        made_here(self, *a, **kw)
        made.append(self)

    monkeypatch.setattr(exp.Exporter, "__init__", init)
    yield
    for e in made:
        e.close()


def families(body: bytes) -> dict:
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def samples(body: bytes, name: str) -> dict:
    """{frozenset(labels): value} of every sample named ``name``."""
    out = {}
    for f in text_string_to_metric_families(body.decode()):
        for s in f.samples:
            if s.name == name:
                out[frozenset(s.labels.items())] = s.value
    return out


def scrape_of(*snaps, per_kernel=True, refreshes=1) -> bytes:
    e = exp.Exporter(Recorded(*snaps), per_kernel=per_kernel)
    for _ in range(refreshes):
        asyncio.run(e.refresh_once())
    return e.scrape()[0]


def L(**kw):
    return frozenset(kw.items())


# -- the metrics of a snapshot --------------------------------------------------------------------

def test_fleet_series_units_and_unknowns():
    gpu_use = model.GpuUse(0, "GPU-a", 4 * 2**30, 0.0)
    busy = kernel("gpu1", "k-busy", state="busy", idle=7200, usage=model.Usage("local", memory_bytes=100, cpu_percent=150.0,
                                                                                gpu_memory_bytes=4 * 2**30, gpus=(gpu_use,)))
    idle = kernel("gpu1", "k-idle", idle=7200, reasons=("disconnected-idle",),
                  usage=model.Usage("local", memory_bytes=1000, cpu_percent=0.0, gpu_memory_bytes=2**30,
                                    gpus=(model.GpuUse(0, "GPU-a", 2**30),)))
    unknown = kernel("gpu1", "k-unknown", idle=7200, session=None, reasons=("no-session",))  # no usage known
    down = model.ServerInfo(name="down", url="http://127.0.0.1:2/", source="config", status=model.TIMEOUT)
    ledger = model.GpuLedger(kernels=5 * 2**30, terminals=0, leftovers=2**20, other=7, unattributed=3, unassigned=11)
    gpus = (model.GpuDevice(0, "GPU-a", "H100", memory_used=5 * 2**30 + 2**20 + 21, memory_total=80 * 2**30,
                            utilization=25.0, idle_kernel_memory=2**30, ledger=ledger),
            model.GpuDevice(1, "GPU-b", "H100", memory_used=None, memory_total=None, utilization=None))
    snap = snapshot([busy, idle, unknown], servers=(snapshot().servers[0], down), gpus=gpus)
    body = scrape_of(snap)

    assert samples(body, "nbtui_up") == {L(server="gpu1"): 1.0, L(server="down"): 0.0}
    assert samples(body, "nbtui_server_error") == {L(server="down", kind="timeout"): 1.0}
    assert samples(body, "nbtui_server_info")[L(server="gpu1", version="2.21.1", source="config")] == 1.0
    k = samples(body, "nbtui_kernels")
    assert k[L(server="gpu1", state="idle")] == 2 and k[L(server="gpu1", state="busy")] == 1
    assert not any(dict(lbl)["server"] == "down" for lbl in k)  # an unread server has no counts, not 0
    assert samples(body, "nbtui_sessions") == {L(server="gpu1", type="notebook"): 2.0}
    # idle: past the threshold and not busy (the busy one is not idle, the unknown one is)
    assert samples(body, "nbtui_kernels_idle") == {L(server="gpu1"): 2.0}
    assert samples(body, "nbtui_kernels_idle_memory_bytes") == {L(server="gpu1"): 1000.0}
    assert samples(body, "nbtui_kernels_idle_gpu_memory_bytes") == {L(server="gpu1"): float(2**30)}
    o = samples(body, "nbtui_orphans")
    assert o[L(server="gpu1", kind="kernel", reason="no-session")] == 1
    assert o[L(server="gpu1", kind="kernel", reason="disconnected-idle")] == 1
    assert o[L(server="gpu1", kind="kernel", reason="notebook-missing")] == 0
    assert samples(body, "nbtui_orphans_gpu_memory_bytes")[L(server="gpu1", kind="kernel")] == float(2**30)

    host = exp.socket.gethostname()
    assert samples(body, "nbtui_gpu_memory_used_bytes") == {L(host=host, gpu="0"): float(5 * 2**30 + 2**20 + 21)}
    assert samples(body, "nbtui_gpu_utilization_ratio") == {L(host=host, gpu="0"): 0.25}
    parts = samples(body, "nbtui_gpu_memory_bytes")
    assert {dict(lbl)["holder"]: v for lbl, v in parts.items()} == {
        "kernels": 5 * 2**30, "terminals": 0, "leftovers": 2**20, "other": 7, "unattributed": 3, "unassigned": 11}
    assert sum(parts.values()) == 5 * 2**30 + 2**20 + 21  # the parts sum to the used memory
    assert all(dict(lbl)["gpu"] == "0" for lbl in parts)  # GPU 1 has no ledger: no parts, not zeros
    assert set(samples(body, "nbtui_gpu_info")) == {L(host=host, gpu="0", uuid="GPU-a", name="H100"),
                                                    L(host=host, gpu="1", uuid="GPU-b", name="H100")}

    # per kernel: ratios, base units, nothing for what nobody measured, never a PID
    assert samples(body, "nbtui_kernel_cpu_ratio") == {L(server="gpu1", kernel_id="k-busy"): 1.5,
                                                       L(server="gpu1", kernel_id="k-idle"): 0.0}
    assert L(server="gpu1", kernel_id="k-unknown") not in samples(body, "nbtui_kernel_memory_bytes")
    assert samples(body, "nbtui_kernel_gpu_memory_bytes")[L(server="gpu1", kernel_id="k-busy", gpu="0")] == 4 * 2**30
    assert samples(body, "nbtui_kernel_idle_seconds")[L(server="gpu1", kernel_id="k-idle")] == 7200
    info = samples(body, "nbtui_kernel_info")
    assert info[L(server="gpu1", kernel_id="k-unknown", notebook="", user="", process_user="",
                kernel_name="python3")] == 1
    assert "pid" not in body.decode().lower().replace("rapid", "")
    ages = samples(body, "nbtui_snapshot_age_seconds")
    assert list(ages.values())[0] > 0
    # _total only on counters
    for f in text_string_to_metric_families(body.decode()):
        assert f.name.startswith("nbtui_")
        assert (f.type == "counter") == any(s.name.endswith("_total") for s in f.samples), f.name


def test_without_per_kernel_no_kernel_series_and_no_notebook_path():
    body = scrape_of(snapshot([kernel("gpu1", "k1", session="secret/plans.ipynb")]), per_kernel=False)
    assert b"nbtui_kernel_info" not in body and b"k1" not in body and b"secret" not in body
    assert samples(body, "nbtui_kernels")[L(server="gpu1", state="idle")] == 1


def test_hostile_label_values_are_visible_escapes():
    evil = 'x"}\n\x1b]0;pwn\x07\u202e[red]y\\'
    srv = model.ServerInfo(name="hub/\x1b[31mevil", url="http://127.0.0.1:1/", source="hub", version="2\n#")
    body = scrape_of(snapshot([kernel(srv.name, "k1", session=evil, user="\x1b[2Jroot")], servers=(srv,)))
    assert b"\x1b" not in body and b"\x07" not in body and "\u202e".encode() not in body
    info = samples(body, "nbtui_kernel_info")
    (lbl,) = info
    d = dict(lbl)
    assert d["server"] == "hub/\\x1b[31mevil" and d["user"] == "\\x1b[2Jroot"
    assert d["notebook"] == 'x"}\\n\\x1b]0;pwn\\x07\\u202e[red]y\\'
    long = scrape_of(snapshot([kernel("gpu1", "k1", session="a/" * 400)]))
    (lbl,) = samples(long, "nbtui_kernel_info")
    assert len(dict(lbl)["notebook"]) == exp.LABEL_LIMIT and dict(lbl)["notebook"].endswith("…")


def test_vanished_kernels_series_are_gone_on_the_next_scrape():
    e = exp.Exporter(Recorded(snapshot([kernel("gpu1", "k1"), kernel("gpu1", "k2")]), snapshot([kernel("gpu1", "k2")])),
                     per_kernel=True)
    asyncio.run(e.refresh_once())
    assert len(samples(e.scrape()[0], "nbtui_kernel_info")) == 2
    asyncio.run(e.refresh_once())
    body = e.scrape()[0]
    assert b'kernel_id="k1"' not in body
    assert len(samples(body, "nbtui_kernel_info")) == 1


def test_restarts_count_state_changes_to_restarting_or_dead_across_refreshes():
    s1 = snapshot([kernel("gpu1", "a"), kernel("gpu1", "b", state="busy"), kernel("gpu1", "c", state="dead")])
    s2 = snapshot([kernel("gpu1", "a", state="restarting"), kernel("gpu1", "b", state="dead"),
                   kernel("gpu1", "c", state="dead")])  # c was dead already: no change
    s3 = snapshot([kernel("gpu1", "a", state="dead"), kernel("gpu1", "b", state="dead")])  # restarting -> dead: one crash
    down = model.ServerInfo(name="gpu1", url="http://127.0.0.1:1/", source="config", status=model.UNREACHABLE)
    s4 = snapshot([], servers=(down,))  # a blip: its kernels' states are kept
    s5 = snapshot([kernel("gpu1", "a", state="idle"), kernel("gpu1", "b", state="dead")])
    s6 = snapshot([kernel("gpu1", "a", state="restarting")])
    counts = []
    e = exp.Exporter(Recorded(s1, s2, s3, s4, s5, s6))
    for _ in range(6):
        asyncio.run(e.refresh_once())
        counts.append(samples(e.scrape()[0], "nbtui_kernel_restarts_total")[L(server="gpu1")])
    assert counts == [0, 2, 2, 2, 2, 3]
    reads = samples(e.scrape()[0], "nbtui_server_read_duration_seconds_count")
    assert reads == {L(server="gpu1"): 5.0}  # the unreachable read had no latency from this recorded fleet


def test_terminals_and_leftover_processes():
    term = model.Terminal(server="gpu1", name="1", last_activity=NOW - dt.timedelta(seconds=5), pid=9,
                          usage=model.Usage("local", memory_bytes=300), orphan_reasons=())
    proc = model.Process(pid=4, user="ana", cmdline="python worker.py", create_time=1.0, notebook="/x.ipynb",
                         memory_bytes=10, gpu_memory_bytes=1542 * 2**20, orphan_reasons=("server-gone",))
    body = scrape_of(snapshot([], terminals=(term,), processes=(proc,)))
    assert samples(body, "nbtui_terminals") == {L(server="gpu1"): 1.0}
    assert samples(body, "nbtui_terminals_memory_bytes") == {L(server="gpu1"): 300.0}
    assert samples(body, "nbtui_orphans")[L(server="", kind="process", reason="server-gone")] == 1
    assert samples(body, "nbtui_orphans_gpu_memory_bytes")[L(server="", kind="process")] == 1542 * 2**20
    assert b"worker.py" not in body and b"x.ipynb" not in body


def test_before_the_first_snapshot_a_scrape_answers_with_no_age():
    e = exp.Exporter(Recorded(snapshot()))
    body, _ = e.scrape()
    assert samples(body, "nbtui_snapshot_age_seconds") == {}
    assert "nbtui_snapshot_age_seconds" in families(body)


def test_gzip_scrape_is_one_valid_stream():
    import gzip

    e = exp.Exporter(Recorded(snapshot([kernel("gpu1", f"k{i}") for i in range(50)])), per_kernel=True)
    asyncio.run(e.refresh_once())
    body, gz = e.scrape(gzip_ok=True)
    assert gz
    text = gzip.decompress(body)
    assert text.startswith(e.rendering.body) and b"nbtui_snapshot_age_seconds " in text
    assert len(samples(text, "nbtui_kernel_info")) == 50


def test_the_custom_collector_renders_in_a_registry_of_ones_own():
    from prometheus_client import CollectorRegistry, generate_latest

    e = exp.Exporter(Recorded(snapshot([kernel("gpu1", "k1")])), per_kernel=True)
    asyncio.run(e.refresh_once())
    reg = CollectorRegistry()
    reg.register(e.collector())
    assert samples(generate_latest(reg), "nbtui_kernel_info")


# -- promtool -------------------------------------------------------------------------------------

@needs_promtool
def test_promtool_check_metrics_is_clean():
    gpu = model.GpuDevice(0, "GPU-a", "H100", 10, 100, 1.0, ledger=model.GpuLedger(kernels=10))
    body = scrape_of(snapshot([kernel("gpu1", "k1", usage=model.Usage("local", memory_bytes=1, cpu_percent=1.0))],
                              gpus=(gpu,)))
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), (r.stdout, r.stderr)


@needs_promtool
def test_promtool_test_rules_passes():
    folder = ROOT / "contrib" / "prometheus"
    r = subprocess.run([PROMTOOL, "check", "rules", "nbtui-alerts.yml"], cwd=folder, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([PROMTOOL, "test", "rules", "nbtui-alerts.test.yml"], cwd=folder, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_alerts_and_dashboard_name_only_metrics_the_exporter_serves():
    gpu = model.GpuDevice(0, "GPU-a", "H100", 10, 100, 1.0, idle_kernel_memory=0, ledger=model.GpuLedger(kernels=10))
    body = scrape_of(snapshot([kernel("gpu1", "k1", usage=model.Usage("local", memory_bytes=1, cpu_percent=1.0,
                                                                      gpus=(model.GpuUse(0, "GPU-a", 5),)))],
                              gpus=(gpu,)))
    served = {s.name for f in text_string_to_metric_families(body.decode()) for s in f.samples}
    served |= {n for n in re.findall(r"^# TYPE (\S+)", body.decode(), re.M)}
    rules = (ROOT / "contrib" / "prometheus" / "nbtui-alerts.yml").read_text()
    dash = json.loads((ROOT / "contrib" / "grafana" / "nbtui-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v.get("query", {}).get("query", "") if isinstance(v.get("query"), dict) else v.get("query", "")
              for v in dash.get("templating", {}).get("list", [])]
    assert exprs
    for text in [rules] + exprs:
        for name in re.findall(r"\bnbtui_[a-z_]+", text):
            assert name in served, name


# -- the web config: TLS and basic auth, for real --------------------------------------------------

def _bcrypt(password: str) -> str:
    import bcrypt

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$", 1)


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "server.crt", folder / "server.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def serving():
    started = []

    def start(web: webconfig.WebConfig):
        e = exp.Exporter(Recorded(snapshot([kernel("gpu1", "k1")])))
        asyncio.run(e.refresh_once())
        httpd = webconfig.serve("127.0.0.1", 0, webconfig.make_app(e.scrape, web, exp.CONTENT_TYPE), web)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        started.append(httpd)
        return httpd.server_address[1]

    yield start
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_web_config_tls_and_basic_auth(tmp_path, serving):
    cert, key = _self_signed(tmp_path)
    cfg = tmp_path / "web.yml"
    cfg.write_text(f"tls_server_config:\n  cert_file: {cert.name}\n  key_file: {key.name}\n"
                   f"basic_auth_users:\n  prom: '{_bcrypt('s3cret')}'\n"
                   "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n")
    web = webconfig.load_web_config(str(cfg))
    port = serving(web)
    url = f"https://127.0.0.1:{port}/metrics"
    verify = ssl.create_default_context(cafile=str(cert))
    with pytest.raises(httpx.ConnectError):  # not our CA: the client refuses the certificate
        httpx.get(url, timeout=10)
    with pytest.raises(httpx.HTTPError):  # plain HTTP on a TLS port gets no metrics
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).raise_for_status()
    r = httpx.get(url, verify=verify, timeout=10)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    assert b"nbtui_" not in r.content
    assert httpx.get(url, verify=verify, auth=("prom", "wrong"), timeout=10).status_code == 401
    assert httpx.get(url, verify=verify, auth=("nobody", "s3cret"), timeout=10).status_code == 401
    for _ in range(2):  # the second one is answered from the cache of good pairs
        r = httpx.get(url, verify=verify, auth=("prom", "s3cret"), timeout=10)
        assert r.status_code == 200 and samples(r.content, "nbtui_up") == {L(server="gpu1"): 1.0}
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")


def test_plain_http_paths(serving):
    port = serving(webconfig.WebConfig())
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(base + "/", timeout=10).status_code == 200
    assert httpx.get(base + "/nope", timeout=10).status_code == 404
    assert httpx.post(base + "/metrics", timeout=10).status_code == 405
    assert httpx.head(base + "/metrics", timeout=10).status_code == 200


@pytest.mark.parametrize("text, message", [
    ("tls_server_config:\n  cert_file: a.crt\n", "needs both cert_file and key_file"),
    ("tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  cipher_suites: [x]\n", "cipher_suites is not supported"),
    ("basic_auth_users:\n  prom: plain-text-password\n", "expected a bcrypt hash"),
    ("basic_auth_users: [1]\n", "expected a mapping"),
    ("rate_limit: 1\n", "'rate_limit' is not supported"),
    ("tls_server_config: {cert_file: x\n", "not valid YAML"),
    ("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n", "cannot load"),
])
def test_bad_web_config_names_the_file_and_the_key(tmp_path, text, message):
    from nbtui.core.errors import UsageError
    cfg = tmp_path / "web.yml"
    cfg.write_text(text)
    with pytest.raises(UsageError) as e:
        webconfig.load_web_config(str(cfg))
    assert message in str(e.value) and str(cfg) in str(e.value) and e.value.exit_code == 2


def test_bad_web_config_and_listen_on_the_command_line_are_one_line_and_exit_2(tmp_path):
    cfg = tmp_path / "web.yml"
    cfg.write_text("tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  cipher_suites: [x]\n")
    r = run_nbtui("--no-discover", "exporter", "--web-config", str(cfg), timeout=60)
    assert r.returncode == 2 and "cipher_suites is not supported" in r.stderr and str(cfg) in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2 and "Traceback" not in r.stderr
    r = run_nbtui("--no-discover", "exporter", "--listen", "::1:9877", timeout=60)
    assert r.returncode == 2 and "--listen" in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("listen", ["9877", "127.0.0.1:99999", "::1:9877", "host:port", "127.0.0.1:"])
def test_bad_listen_is_a_usage_error(listen):
    from nbtui.core.errors import UsageError
    with pytest.raises(UsageError, match="--listen"):
        webconfig.parse_listen(listen)


def test_listen_parsing():
    assert webconfig.parse_listen("127.0.0.1:9877") == ("127.0.0.1", 9877)
    assert webconfig.parse_listen("[::1]:0") == ("::1", 0)
    assert webconfig.parse_listen(":9877") == ("0.0.0.0", 9877)
    assert webconfig.is_loopback_host("::1") and webconfig.is_loopback_host("localhost")
    assert not webconfig.is_loopback_host("0.0.0.0")


def test_port_in_use_is_one_line_and_exit_1():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_nbtui("--no-discover", "exporter", "--listen", f"127.0.0.1:{port}", timeout=60)
    assert r.returncode == 1 and "cannot listen on" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_the_direct_per_kernel_lines_equal_prometheus_clients_own_rendering():
    from prometheus_client import CollectorRegistry, generate_latest

    evil = 'x"}\n\x1b\\y\u202e'
    ks = [kernel("gpu1", "k1", session=evil, user=evil,
                 usage=model.Usage("local", memory_bytes=2**40 + 1, cpu_percent=12.5,
                                   gpus=(model.GpuUse(0, "a", 3 * 2**30), model.GpuUse(1, "b", None)))),
          kernel('s"\\2', "k2", session=None, usage=model.Usage("extension", cpu_percent=None)),
          kernel("gpu1", "k3", usage=None)]
    ks.append(model.Kernel(server="gpu1", kernel_id="k4", kernel_name="ir", state="starting", connections=None,
                           last_activity=None))
    e = exp.Exporter(Recorded(snapshot(ks)), per_kernel=True)
    for _ in range(2):  # the second time from the kept label parts
        asyncio.run(e.refresh_once())
        reg = CollectorRegistry()
        reg.register(exp.SnapshotCollector(lambda: e.rendering.state, per_kernel=True, with_age=False))
        assert e.rendering.body == generate_latest(reg)


def test_sigterm_stops_it_cleanly_with_exit_0(tmp_path):
    import os
    import signal
    import sys
    import time

    log = tmp_path / "log"
    proc = subprocess.Popen([sys.executable, "-m", "nbtui", "--no-discover", "exporter", "--listen", "127.0.0.1:0"],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        from tests.jupyter import wait_for

        line = wait_for(lambda: "serving http" in log.read_text() and log.read_text(), timeout=60, what="serving")
        assert "no servers configured or discovered" in wait_for(lambda: "no servers" in log.read_text() and log.read_text(),
                                                                 timeout=30, what="the no-servers line")
        url = line.split("serving ", 1)[1].split()[0]
        assert httpx.get(url, timeout=10).status_code == 200
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0
        assert "Traceback" not in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_the_exporter_does_not_import_textual():
    import sys

    r = subprocess.run([sys.executable, "-c", "import sys, nbtui.exporter.metrics, nbtui.exporter.webconfig, nbtui.cli.commands.exporter; "
                        "print('textual' in sys.modules)"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.stdout.strip() == "False", r.stderr


# -- at hostile scale: the per-server cap (issue 21) ----------------------------------------------


def test_past_the_cap_kernels_are_counted_not_kept_and_the_counts_stay_exact():
    states = ["idle", "busy", "idle", "starting", "dead", "idle", "busy"]
    ks = [kernel("gpu1", f"k{i}", state=st, idle=7200 - i) for i, st in enumerate(states)]
    ks += [kernel("gpu2", "j0")]
    servers = (snapshot().servers[0], model.ServerInfo(name="gpu2", url="http://127.0.0.1:2/", source="config"))
    e = exp.Exporter(Recorded(snapshot(ks, servers=servers)), per_kernel=True, max_kernels=3)
    asyncio.run(e.refresh_once())
    body = e.scrape()[0]
    kept = {dict(lbl)["kernel_id"] for lbl in samples(body, "nbtui_kernel_info")}
    assert kept == {"k0", "k1", "k2", "j0"}  # the first three of gpu1 in the fleet's order (longest idle)
    assert samples(body, "nbtui_kernels_over_cap") == {L(server="gpu1"): 4.0, L(server="gpu2"): 0.0}
    by_state = {dict(lbl)["state"]: v for lbl, v in samples(body, "nbtui_kernels").items() if dict(lbl)["server"] == "gpu1"}
    assert by_state == {"idle": 3, "busy": 2, "starting": 1, "dead": 1, "restarting": 0, "unknown": 0}
    assert samples(body, "nbtui_sessions")[L(server="gpu1", type="notebook")] == 7
    assert samples(body, "nbtui_kernels_idle")[L(server="gpu1")] == 5  # all but the busy two
    # the left-out kernels' usage is unknown: no memory sum pretends to be the server's whole
    assert L(server="gpu1") not in samples(body, "nbtui_kernels_memory_bytes")
    assert len(e.rendering.state.snapshot.kernels) == 4  # what the exporter holds on to


def test_a_capped_read_keeps_the_longest_idle_and_counts_the_rest_one_item_at_a_time():
    import datetime as dt

    from nbtui.files.config import ServerConfig
    from nbtui.service.fleet import Fleet
    from nbtui.jupyter.capped import CappedKernels
    now = dt.datetime(2026, 12, 1, 12, tzinfo=dt.timezone.utc)
    c = CappedKernels(2, threshold=1.5, now=now)
    for i in range(5):
        c.add({"id": f"k{i}", "execution_state": "busy" if i == 4 else "idle",
               "last_activity": (now - dt.timedelta(seconds=i)).isoformat()})
    c.add("junk")
    c.add({"id": 5})
    assert sorted(r["id"] for r in c.kept()) == ["k3", "k4"]  # the longest idle
    c.add_session({"id": "s4", "kernel": {"id": "k4"}, "type": "notebook"})
    c.add_session({"id": "s0", "kernel": {"id": "k0"}, "type": "console"})
    assert [s["id"] for s in c.sessions] == ["s4"]  # only the kept kernels' sessions are held
    over = c.over()
    assert over is not None and (over.n, over.kept, over.states, over.types, over.idle) == (
        3, 2, {"idle": 3}, {"console": 1}, 1)  # k2 idle 2 s, past 1.5
    assert CappedKernels(9, 1.5, now).over() is None  # under the cap: nothing counted
    fleet = exp.Exporter(Fleet([ServerConfig(name="s", url="http://127.0.0.1:1/", token_source="none")]),
                         max_kernels=2).fleet
    assert fleet.hooks.kernel_cap("s") == 2


def test_two_hostile_kernel_ids_that_read_the_same_give_one_series_not_a_duplicate():
    same = "a" * 300
    ks = [kernel("gpu1", same + "1"), kernel("gpu1", same + "2")]
    body = scrape_of(snapshot(ks))
    assert len(samples(body, "nbtui_kernel_info")) == 1  # a parser (and Prometheus) takes the scrape
    assert samples(body, "nbtui_kernels")[L(server="gpu1", state="idle")] == 2


# -- a hub's own series (issue 24) -----------------------------------------------------------------


def hub_snapshot(hub_ok=True):
    def srv(name, user, server_name="", **kw):
        return model.ServerInfo(name=name, url="http://127.0.0.1:3" + name[3:].replace("/", "-") + "/", source="hub",
                                hub="hub", user=user, server_name=server_name, **kw)

    evil = "eve\x1b]0;pwn\x07" + "x" * 300
    servers = (
        model.ServerInfo(name="hub", url="http://127.0.0.1:3/", source="hub", hub="hub", version="5.2.1",
                         **({} if hub_ok else {"status": model.TIMEOUT})),
        srv("hub/alice", "alice", route="direct", hub_last_activity=NOW - dt.timedelta(seconds=100)),
        srv("hub/alice/gpu", "alice", "gpu", pending="stop", hub_last_activity=NOW - dt.timedelta(seconds=50)),
        srv("hub/bob", "bob", pending="spawn"),
        srv("hub/eve1", evil + "1", route="proxy", hub_last_activity=NOW - dt.timedelta(seconds=7)),
        srv("hub/eve2", evil + "2", route="proxy", hub_last_activity=NOW - dt.timedelta(seconds=9)),
        srv("hub/carol", "carol"),  # listed, neither ready nor pending
    )
    return snapshot([kernel("hub/alice", "k1")], servers=servers)


def test_a_hub_has_users_servers_by_state_and_idle_seconds_and_no_kernel_series_of_its_own():
    body = scrape_of(hub_snapshot())
    assert b"\x1b" not in body and b"\x07" not in body
    assert samples(body, "nbtui_hub_users") == {L(hub="hub"): 5.0}
    assert samples(body, "nbtui_hub_servers") == {L(hub="hub", state="ready"): 3.0, L(hub="hub", state="pending-spawn"): 1.0,
                                                  L(hub="hub", state="pending-stop"): 1.0, L(hub="hub", state="not-ready"): 1.0}
    idle = samples(body, "nbtui_hub_server_idle_seconds")
    assert idle[L(hub="hub", user="alice", server_name="")] == 100
    assert idle[L(hub="hub", user="alice", server_name="gpu")] == 50
    eve = [lbl for lbl in idle if dict(lbl)["user"].startswith("eve")]
    assert len(eve) == 1 and dict(eve[0])["user"].startswith("eve\\x1b]0;pwn\\x07")  # cut alike: one series, escaped
    assert len(idle) == 3  # bob's pending server has no last_activity: no series, not 0
    # the hub's own entry: up and info, no kernel counts, orphans or restarts
    assert samples(body, "nbtui_up")[L(server="hub")] == 1
    for name in ("nbtui_kernels", "nbtui_kernels_idle", "nbtui_orphans", "nbtui_kernel_restarts_total",
                 "nbtui_kernels_over_cap", "nbtui_kernels_memory_bytes", "nbtui_sessions"):
        assert "hub" not in {dict(lbl).get("server") for lbl in samples(body, name)}, name
    assert samples(body, "nbtui_kernels")[L(server="hub/alice", state="idle")] == 1


def test_a_hub_whose_listing_failed_has_no_hub_series_not_zeros():
    body = scrape_of(hub_snapshot(hub_ok=False))
    assert samples(body, "nbtui_up")[L(server="hub")] == 0
    assert not samples(body, "nbtui_hub_users") and not samples(body, "nbtui_hub_servers")


def test_the_exporter_s_copy_of_the_fleet_keeps_what_open_fleet_set():
    from nbtui.files.config import ServerConfig
    from nbtui.service.fleet import Fleet
    fleet = Fleet([ServerConfig(name="s", url="http://127.0.0.1:1/", token_source="none")])
    fleet.proxy_reader, fleet.readonly, fleet.untrusted_files = "nbtui exporter", True, ("f: why",)
    timed = exp.Exporter(fleet).fleet
    assert (timed.proxy_reader, timed.readonly, timed.untrusted_files) == ("nbtui exporter", True, ("f: why",))


def test_a_hung_server_holds_back_the_exporters_next_reads_a_moment_only():
    """The exporter reads a few servers at a time (a steady RSS); a server that hangs gives
    its place up after a moment, so the server after it is read long before the hung one's
    timeout, not after it."""
    from nbtui.files.config import ServerConfig, Settings
    from nbtui.service.fleet import Fleet, FleetHooks
    from tests.fakehttp import FakeHTTP

    ended: list[str] = []

    class Hooks(FleetHooks):
        def server_read(self, server: str, seconds: float) -> None:
            ended.append(server)

    kid = "5ca1ab1e-0000-4000-8000-000000000001"
    with FakeHTTP("drip") as hung, FakeHTTP("liar", kernels=[kid]) as good:
        fleet = Fleet([ServerConfig("hung", hung.url, token_source="none", timeout=3),
                       ServerConfig("good", good.url, token_source="none", timeout=3)], Settings(), hooks=Hooks())
        fleet.checks_notebooks = False
        with exp.Exporter(fleet) as exporter:  # its own copy of the fleet
            assert exporter.fleet.read_concurrency == exp.READ_CONCURRENCY
        fleet.read_concurrency = 1  # one place: the hung server, listed first, takes it
        snap = asyncio.run(fleet.snapshot())
    assert ended == ["good", "hung"]  # held to the end, the good server's read would wait for the timeout
    by = {s.name: s for s in snap.servers}
    assert by["good"].ok and [k.kernel_id for k in snap.kernels] == [kid]
    assert by["hung"].status == model.TIMEOUT
