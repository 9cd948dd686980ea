"""The real `nbtui exporter` at hostile scale (issue 21): two servers listing 80,000 kernels
each. What it holds is bounded by its per-server cap, the per-server counts stay the truth,
and SIGTERM ends it within 2 s while it reads them. (Its RSS and scrape time: bench/exporter.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT
from tests.fakehttp import FakeHTTP
from tests.jupyter import wait_for

PER_SERVER = 80_000
CAP = 1000
STOP_BOUND = 2.0  # the contract: SIGTERM to exit, at any load


def by_server(body: str, name: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for f in text_string_to_metric_families(body):
        for s in f.samples:
            if s.name == name:
                out.setdefault(s.labels["server"], []).append(s.value)
    return out


def test_two_servers_listing_160000_kernels_keep_the_cap_exact_counts_and_a_prompt_sigterm(tmp_path):
    ids = {name: [str(uuid.UUID(int=(i << 64) + n)) for n in range(PER_SERVER)] for i, name in enumerate(("a", "b"))}
    paths = {kid: f"work/{n % 97}/nb-{n}.ipynb" for n, kid in enumerate(ids["a"])}  # a's kernels have sessions
    with FakeHTTP("liar", kernels=ids["a"], paths=paths) as a, FakeHTTP("liar", kernels=ids["b"]) as b:
        cfg = tmp_path / "cfg"
        cfg.mkdir()
        (cfg / "servers.toml").write_text("".join(
            f'[servers.{n}]\nurl = "{srv.url}"\ntoken = "none"\ntimeout = 60\n' for n, srv in (("a", a), ("b", b))))
        env = dict(os.environ, NBTUI_CONFIG=str(cfg), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
                   NBTUI_STATE_DIR=str(tmp_path / "state"))
        log = tmp_path / "exporter.log"
        proc = subprocess.Popen([sys.executable, "-m", "nbtui", "--no-discover", "--refresh", "0.5", "exporter",
                                 "--listen", "127.0.0.1:0", "--per-kernel", "--max-kernels-per-server", str(CAP)],
                                env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=ROOT)
        try:
            line = wait_for(lambda: next((ln for ln in log.read_text().splitlines() if "serving http" in ln), None),
                            timeout=60, what="the exporter's serving line")
            url = line.split("serving ", 1)[1].split()[0]
            body = wait_for(lambda: (lambda t: t if set(by_server(t, "nbtui_kernels_over_cap")) == {"a", "b"} else None)(
                httpx.get(url, timeout=30).text), timeout=180, what="both servers read")

            info = by_server(body, "nbtui_kernel_info")
            assert {s: len(v) for s, v in info.items()} == {"a": CAP, "b": CAP}  # per-kernel series: the cap's
            assert by_server(body, "nbtui_kernels_over_cap") == {"a": [PER_SERVER - CAP], "b": [PER_SERVER - CAP]}
            assert {s: sum(v) for s, v in by_server(body, "nbtui_kernels").items()} == {"a": PER_SERVER, "b": PER_SERVER}
            assert by_server(body, "nbtui_sessions") == {"a": [PER_SERVER]}  # b's kernels have none
            assert {s: len(v) for s, v in by_server(body, "nbtui_kernel_idle_seconds").items()} == {"a": CAP, "b": CAP}

            # SIGTERM while it reads them again (every 0.5 s, and one read of both takes longer)
            os.kill(proc.pid, signal.SIGTERM)
            try:
                code = proc.wait(STOP_BOUND)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"still running {STOP_BOUND:g} s after SIGTERM") from None
            assert code == 0 and "Traceback" not in log.read_text(), log.read_text()[-2000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
