"""Load generator for HTTP GETs, run as its own process.

Usage: python bench/http_load.py URL COUNT CONCURRENCY
Prints one JSON line: requests/s, p50/p99 latency in ms, errors.
"""

from __future__ import annotations

import asyncio
import sys
import time

import httpx
from load_stats import report


async def main(url: str, count: int, concurrency: int) -> None:
    latencies: list[float] = []
    errors = 0
    sent = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            nonlocal sent, errors
            while sent < count:
                sent += 1
                start = time.perf_counter()
                try:
                    response = await client.get(url)
                    await response.aread()
                    if response.status_code != 200:
                        errors += 1
                except httpx.HTTPError:
                    errors += 1
                latencies.append(time.perf_counter() - start)

        await client.get(url)  # warm the connection pool
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    report(latencies, count, elapsed, errors)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
