"""The reference for the efficiency scenario: a bare asyncio client with no bookkeeping at all.

``httpx.AsyncClient`` (a pool of K connections) and ``asyncio.Semaphore(K)``; each file is read
whole into memory and posted as multipart, the answer's JSON parsed and dropped. No hashing, no
journal, no Parquet, no retries: the lower bound of what a client costs per request on this
machine, measured against the same server as ours.

Usage: ``python -m bench.bare_client URL KEY FOLDER K``; prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import httpx


async def main(base: str, key: str, folder: str, k: int) -> dict:
    paths = sorted(os.path.join(folder, name) for name in os.listdir(folder))
    sem = asyncio.Semaphore(k)
    ok = failed = 0
    limits = httpx.Limits(max_connections=k, max_keepalive_connections=k)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, limits=limits, timeout=300
    ) as client:

        async def one(path: str) -> None:
            nonlocal ok, failed
            async with sem:
                with open(path, "rb") as fh:
                    body = fh.read()
                res = await client.post(
                    "/v1/audio/transcriptions", files={"file": (os.path.basename(path), body, "audio/wav")}
                )
                res.json()
                if res.status_code == 200:
                    ok += 1
                else:
                    failed += 1

        started = time.perf_counter()
        await asyncio.gather(*(one(p) for p in paths))
        wall = time.perf_counter() - started
    return {"wall_s": wall, "ok": ok, "failed": failed}


if __name__ == "__main__":
    base, key, folder, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    print(json.dumps(asyncio.run(main(base, key, folder, k))))
