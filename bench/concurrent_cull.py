"""The strongest simple peer of `nbtui cull --idle 0s --yes`: list the server's kernels, then
DELETE every idle one at once. What a user could write in a few minutes (no re-check, no
audit, no process cleanup).

Usage: python bench/concurrent_cull.py URL (the token in $BENCH_CULL_TOKEN)
"""

from __future__ import annotations

import asyncio
import os
import sys

import httpx


async def main(url: str) -> None:
    headers = {"Authorization": f"token {os.environ['BENCH_CULL_TOKEN']}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
        kernels = (await client.get("api/kernels")).raise_for_status().json()
        idle = [k["id"] for k in kernels if k.get("execution_state") == "idle"]
        for r in await asyncio.gather(*(client.delete(f"api/kernels/{kid}") for kid in idle)):
            r.raise_for_status()
    print(f"culled {len(idle)}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
