"""The simplest honest peer of `nbtui ls --json` over a JupyterHub: the hub's users page by
page, then every ready server, 16 at a time: a token minted for that server alone
(``POST /hub/api/users/NAME/tokens``: a user's server answers no other, as in
tests/fakehub.py and as nbtui does), its kernels and sessions, the token revoked; joined
rows printed as one JSON object. The same hub work nbtui does for the same answer.

Usage: python bench/minimal_hub_reader.py HUB_URL (the hub's token in $BENCH_HUB_TOKEN)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import httpx

AT_ONCE = 16


async def users(client: httpx.AsyncClient, hub: str) -> list[dict]:
    out, offset = [], 0
    while True:
        page = (await client.get(f"{hub}hub/api/users", params={"state": "ready", "offset": offset})).json()
        out += page["items"]
        nxt = (page.get("_pagination") or {}).get("next")
        if not nxt:
            return out
        offset = nxt["offset"]


async def read_server(client: httpx.AsyncClient, hub: str, name: str, server: dict, gate) -> list[dict]:
    async with gate:
        minted = (await client.post(f"{hub}hub/api/users/{name}/tokens",
                                    json={"scopes": [f"access:servers!server={name}/"], "expires_in": 3600,
                                          "note": "minimal reader"})).raise_for_status().json()
        try:
            url = hub.rstrip("/") + server["url"]
            auth = {"Authorization": f"token {minted['token']}"}
            kernels, sessions = await asyncio.gather(client.get(url + "api/kernels", headers=auth),
                                                     client.get(url + "api/sessions", headers=auth))
        finally:
            await client.delete(f"{hub}hub/api/users/{name}/tokens/{minted['id']}")
    by_kernel = {s["kernel"]["id"]: s for s in sessions.raise_for_status().json() if s.get("kernel")}
    return [{"server": f"{name}/", "kernel_id": k["id"], "kernel_name": k.get("name"),
             "state": k.get("execution_state"), "last_activity": k.get("last_activity"),
             "session": {"path": by_kernel[k["id"]].get("path")} if k["id"] in by_kernel else None}
            for k in kernels.raise_for_status().json()]


async def main(hub: str) -> None:
    headers = {"Authorization": f"token {os.environ['BENCH_HUB_TOKEN']}"}
    limits = httpx.Limits(max_connections=AT_ONCE + 2)
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as client:
        gate = asyncio.Semaphore(AT_ONCE)
        jobs = [read_server(client, hub, u["name"], s, gate)
                for u in await users(client, hub) for s in (u.get("servers") or {}).values() if s.get("ready")]
        per_server = await asyncio.gather(*jobs)
    sys.stdout.write(json.dumps({"kernels": [row for rows in per_server for row in rows]}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
