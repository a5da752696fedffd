"""The one-line JSON summary both load generators print."""

from __future__ import annotations

import json
import statistics


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
