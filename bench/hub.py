"""Benchmark: a real JupyterHub with 10 users' servers x 3 kernels, read from one token.

- `nbtui ls --json` over the hub vs over one plain Jupyter server with 3 kernels (same run);
- the same with one user's server hung (SIGSTOP): its cost against its timeout + 0.5 s;
- the console's `1+1` round trip to a hub user's kernel through the hub's proxy vs
  jupyter_client over ZMQ to the same kernel;
- last_activity changes (the hub's users' and servers', the servers' own, the kernels')
  caused by nbtui's reads on the direct route: the goal is zero.

Run from the repository root: `python bench/hub.py` (needs node/npm for the proxy).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.common import NOISY, channel_rtts, interleaved, median_of, scratch, setting, spread, timed, zmq_rtts  # noqa: E402
from tests.hub import Hub  # noqa: E402
from tests.jupyter import JupyterServer, wait_for  # noqa: E402

RUNS = setting("BENCH_RUNS", 5, int)
USERS = [f"u{i}" for i in range(10)]
INTERVAL = 3  # the hub's last_activity_interval
HUNG_TIMEOUT = 2.0


def targets(hub: Hub) -> dict[str, str]:
    routes = hub.api("GET", "proxy").json()
    return {u: routes[f"/user/{u}/"]["target"] + f"/user/{u}/" for u in USERS}


def direct(hub: Hub, url: str, method: str, path: str, **kw) -> httpx.Response:
    r = httpx.request(method, url + path + ("&" if "?" in path else "?") + "no_track_activity=1",
                      headers=hub.headers, timeout=60, **kw)
    r.raise_for_status()
    return r


def activity(hub: Hub, where: dict[str, str], kernels: dict[str, list[str]]) -> dict:
    out = {}
    users = {u["name"]: u for u in hub.api("GET", "users?state=active").json()}
    for u in USERS:
        out[f"user {u}"] = users[u]["last_activity"]
        out[f"server {u}"] = users[u]["servers"][""]["last_activity"]
        out[f"own {u}"] = direct(hub, where[u], "GET", "api/status").json()["last_activity"]
        listed = {k["id"]: k for k in direct(hub, where[u], "GET", "api/kernels").json()}
        for kid in kernels[u]:  # a kernel gone meanwhile (died under load) is left out
            if kid in listed:
                out[f"kernel {kid}"] = listed[kid]["last_activity"]
    return out


async def proxy_rtts(hub: Hub, user: str, kid: str, n: int, url: str | None = None) -> list[float]:
    """nbtui's channel client to a hub user's kernel: through the proxy, or at ``url``."""
    return await channel_rtts(url or hub.user_url(user), hub.harness_token, kid, n)


def main() -> None:
    print(NOISY)
    with scratch("nbtui-bench-hub-") as base:
        run(base)


def run(base: Path) -> None:
    hub = Hub(base / "hub", users=USERS, activity_interval=INTERVAL)
    one = None
    try:
        hub.start()
        for u in USERS:
            hub.spawn(u)
        for u in USERS:
            hub.wait_ready(u, timeout=180)
        where = targets(hub)
        kernels = {u: [direct(hub, where[u], "POST", "api/kernels", json={"name": "python3"}).json()["id"]
                       for _ in range(3)] for u in USERS}
        one = JupyterServer(base / "one", name="one").start()
        for _ in range(3):
            one.start_kernel()

        env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(base / "none"), NBTUI_STATE_DIR=str(base / "state"),
                   BENCH_HUB_TOKEN=hub.token,
                   BENCH_ONE_TOKEN=one.token)
        cfg_one, cfg_hub = base / "cfg-one", base / "cfg-hub"
        cfg_one.mkdir()
        cfg_hub.mkdir()
        (cfg_one / "servers.toml").write_text(
            f'[servers.one]\nurl = "{one.url}"\ntoken = "env"\ntoken_env = "BENCH_ONE_TOKEN"\n')
        (cfg_hub / "servers.toml").write_text(
            f'[servers.hub]\nurl = "{hub.url}"\ntoken = "env"\ntoken_env = "BENCH_HUB_TOKEN"\nhub = true\n'
            f"timeout = {HUNG_TIMEOUT}\n")
        ls = [sys.executable, "-m", "nbtui", "ls", "--json", "--no-discover"]

        time.sleep(INTERVAL + 1)  # what the setup did has reached the hub
        before = activity(hub, where, kernels)
        reads = interleaved({"one": lambda: timed(ls, dict(env, NBTUI_CONFIG=str(cfg_one))),
                             "hub": lambda: timed(ls, dict(env, NBTUI_CONFIG=str(cfg_hub)))}, RUNS)
        t_one, t_hub = statistics.median(reads["one"]), statistics.median(reads["hub"])
        time.sleep(INTERVAL + 1)
        after = activity(hub, where, kernels)
        changed = sorted(k for k in before if k in after and before[k] != after[k])
        compared = sum(1 for k in before if k in after)

        hung_pid = hub.server_pid(USERS[-1])
        os.kill(hung_pid, 19)  # SIGSTOP
        try:
            t_hung = median_of(ls, dict(env, NBTUI_CONFIG=str(cfg_hub)), RUNS)
        finally:
            os.kill(hung_pid, 18)  # SIGCONT

        kid = kernels[USERS[0]][0]
        cf = hub.base / "home" / USERS[0] / ".local" / "share" / "jupyter" / "runtime" / f"kernel-{kid}.json"
        wait_for(cf.exists, 30, 0.1, "the kernel's connection file")
        proxy, zmq, near = [], [], []
        for _ in range(5):  # interleaved, so drift hits all alike
            proxy += asyncio.run(proxy_rtts(hub, USERS[0], kid, 20))
            zmq += zmq_rtts(cf, 20)
            near += asyncio.run(proxy_rtts(hub, USERS[0], kid, 20, where[USERS[0]]))
        m_proxy, m_zmq = statistics.median(proxy) * 1000, statistics.median(zmq) * 1000
        m_near = statistics.median(near) * 1000

        print(f"hub: {len(USERS)} users x 3 kernels; one server x 3 kernels; {RUNS} runs each; "
              f"{compared} last_activity values compared over {2 * RUNS + 2} reads and {2 * (INTERVAL + 1)} s of the "
              "hub's rounds")
        print(f"ls --json, interleaved: the hub {spread(reads['hub'], 1000, '.0f')} ms, one server "
              f"{spread(reads['one'], 1000, '.0f')} ms")
        print(f"console 1+1 median: through the proxy {m_proxy:.2f} ms, at the internal target (the direct "
              f"route, what nbtui's console uses on the hub host) {m_near:.2f} ms, jupyter_client ZMQ {m_zmq:.2f} ms")
        print(f"bench hub-activity: nbtui {len(changed)} last_activity changes on the direct route vs limit 0"
              + (f" ({', '.join(changed[:6])})" if changed else "") + f", ratio {len(changed):.2f} (goal <= 0)")
        print(f"bench hub-hung: nbtui 10 servers + 1 hung {t_hung * 1000:.0f} ms vs limit "
              f"{(t_hub + HUNG_TIMEOUT + 0.5) * 1000:.0f} ms (healthy read + its timeout + 0.5 s), "
              f"ratio {t_hung / (t_hub + HUNG_TIMEOUT + 0.5):.2f} (goal <= 1)")
        print(f"bench hub-console: nbtui through the proxy {m_proxy:.2f} ms vs jupyter_client-zmq {m_zmq:.2f} ms, "
              f"ratio {m_proxy / m_zmq:.2f} (goal <= 1.3)")
        print(f"bench hub: nbtui {t_hub * 1000:.0f} ms vs one server {t_one * 1000:.0f} ms, "
              f"ratio {t_hub / t_one:.2f} (goal <= 2)")
    finally:
        if one is not None:
            one.stop()
        hub.stop()


if __name__ == "__main__":
    main()
