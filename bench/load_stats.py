"""What the load generators share: a bounded-concurrency loop and its one-line JSON summary."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable


def report(latencies: list[float], count: int, elapsed: float, errors: int) -> None:
    """Print requests/s, p50/p99 latency in ms, and the error count as one JSON line."""
    latencies.sort()
    print(
        json.dumps(
            {
                "rps": count / elapsed,
                "p50_ms": statistics.median(latencies) * 1000,
                "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
                "errors": errors,
            }
        )
    )


async def run_concurrently(
    count: int, concurrency: int, op: Callable[[int], Awaitable[object]]
) -> None:
    """Run ``op(0)`` ... ``op(count - 1)`` with ``concurrency`` in flight, then ``report``.

    An ``op`` that raises counts as an error.
    """
    latencies: list[float] = []
    errors = 0
    next_index = 0

    async def worker() -> None:
        nonlocal next_index, errors
        while next_index < count:
            i = next_index
            next_index += 1
            start = time.perf_counter()
            try:
                await op(i)
            except Exception:
                errors += 1
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    report(latencies, count, time.perf_counter() - began, errors)
