"""The simplest honest peer of `nbtui ls --json`: GET /api/kernels and /api/sessions from every
server at once, join each kernel to its session and print one JSON object. What a user could
write in a few minutes; no probes, no host usage, no notebook checks.

Usage: python bench/minimal_reader.py URL... (the token, if any, in $BENCH_READER_TOKEN)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import httpx


async def read(client: httpx.AsyncClient, url: str) -> list[dict]:
    kernels, sessions = await asyncio.gather(client.get(url + "api/kernels"), client.get(url + "api/sessions"))
    by_kernel = {s["kernel"]["id"]: s for s in sessions.raise_for_status().json() if s.get("kernel")}
    rows = []
    for k in kernels.raise_for_status().json():
        s = by_kernel.get(k["id"])
        rows.append({"server": url, "kernel_id": k["id"], "kernel_name": k.get("name"),
                     "state": k.get("execution_state"), "connections": k.get("connections"),
                     "last_activity": k.get("last_activity"),
                     "session": {"id": s["id"], "path": s.get("path"), "type": s.get("type"), "name": s.get("name")}
                     if s else None})
    return rows


async def main(urls: list[str]) -> None:
    token = os.environ.get("BENCH_READER_TOKEN")
    headers = {"Authorization": f"token {token}"} if token else {}
    async with httpx.AsyncClient(headers=headers, timeout=60) as client:
        per_server = await asyncio.gather(*(read(client, u) for u in urls))
    sys.stdout.write(json.dumps({"kernels": [row for rows in per_server for row in rows]}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
