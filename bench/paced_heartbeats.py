"""Paced heartbeat load, run as its own process: each instance once per interval.

Instances ``START`` .. ``END - 1`` (as ``nats_load.py register`` named them)
heartbeat every ``INTERVAL`` seconds, spread evenly over the interval, for
``DURATION`` seconds. Prints one JSON line: heartbeats sent, errors, p50/p99/max
latency in ms, and how far the schedule ever fell behind (a loader that cannot
keep up would make instances look silent, so that must stay small).
Usage: python bench/paced_heartbeats.py URL PREFIX START END INTERVAL DURATION [SERVICES]
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import msgpack
import nats
from nats_load import body

STEP = 0.05  # seconds between batches
MAX_IN_FLIGHT = 4000


async def main(
    url: str, prefix: str, start: int, end: int, interval: float, duration: float, services: int
) -> None:
    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    payloads = [body("heartbeat", prefix, i, services) for i in range(start, end)]
    latencies: list[float] = []
    errors = 0
    lag = 0.0
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    tasks: set[asyncio.Task[None]] = set()

    async def beat(payload: bytes) -> None:
        nonlocal errors
        began = time.perf_counter()
        try:
            msg = await nc.request("ipc.service.heartbeat", payload, timeout=10)
            if msgpack.unpackb(msg.data)["status"] != 200:
                errors += 1
        except Exception:
            errors += 1
        finally:
            latencies.append(time.perf_counter() - began)
            slots.release()

    per_step = len(payloads) * STEP / interval
    began = time.monotonic()
    sent = 0
    due = 0.0
    step = 0
    while time.monotonic() - began < duration:
        step += 1
        due += per_step
        while sent < int(due):
            await slots.acquire()
            task = asyncio.create_task(beat(payloads[sent % len(payloads)]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        wake = began + step * STEP
        lag = max(lag, time.monotonic() - wake)
        await asyncio.sleep(max(0.0, wake - time.monotonic()))
    await asyncio.gather(*tasks)
    await nc.close()
    latencies.sort()
    print(
        json.dumps(
            {
                "sent": sent,
                "errors": errors,
                "p50_ms": latencies[len(latencies) // 2] * 1000,
                "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
                "max_ms": latencies[-1] * 1000,
                "max_lag_s": lag,
            }
        )
    )


if __name__ == "__main__":
    url, prefix, start, end, interval, duration = sys.argv[1:7]
    services = int(sys.argv[7]) if len(sys.argv) > 7 else 100
    asyncio.run(main(url, prefix, int(start), int(end), float(interval), float(duration), services))
