"""Paced load, run as its own process: registers its instances, then each one
heartbeats once per interval, counted from its own registration.

Instances ``START`` .. ``END - 1`` are registered at ``RATE`` per second (as
``nats_load.py register`` would name them); each then heartbeats every
``INTERVAL`` seconds until ``DURATION`` seconds after the last registration.
Prints one JSON line: registrations and heartbeats sent, errors, heartbeat
p50/p99/max latency in ms, and how far the schedule ever fell behind (a
loader that cannot keep up would make instances look silent, so that must
stay small).
Usage: python bench/paced_heartbeats.py URL PREFIX START END INTERVAL DURATION RATE
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import deque

import msgpack
import nats
from nats_load import body

STEP = 0.05  # seconds between scheduling rounds
MAX_IN_FLIGHT = 4000
SERVICES = 100


async def main(
    url: str, prefix: str, start: int, end: int, interval: float, duration: float, rate: float
) -> None:
    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    indexes = range(start, end)
    registrations = [body("register", prefix, i, SERVICES) for i in indexes]
    heartbeats = [body("heartbeat", prefix, i, SERVICES) for i in indexes]
    latencies: list[float] = []
    errors = sent = 0
    lag = 0.0
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    tasks: set[asyncio.Task[None]] = set()

    async def send(subject: str, payload: bytes, timed: bool) -> None:
        nonlocal errors
        began = time.perf_counter()
        try:
            msg = await nc.request(subject, payload, timeout=10)
            if msgpack.unpackb(msg.data)["status"] >= 300:
                errors += 1
        except Exception:
            errors += 1
        finally:
            if timed:
                latencies.append(time.perf_counter() - began)
            slots.release()

    async def fire(subject: str, payload: bytes, timed: bool) -> None:
        await slots.acquire()
        task = asyncio.create_task(send(subject, payload, timed))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    due: deque[tuple[float, int]] = deque()  # (when, index): in time order by construction
    began = time.monotonic()
    registered = 0
    stop_at = began + len(registrations) / rate + duration
    step = 0
    while time.monotonic() < stop_at:
        step += 1
        now = time.monotonic()
        while registered < len(registrations) and registered < (now - began) * rate:
            await fire("ipc.service.register", registrations[registered], False)
            due.append((now + interval, registered))
            registered += 1
        while due and due[0][0] <= now:
            when, i = due.popleft()
            lag = max(lag, now - when)
            await fire("ipc.service.heartbeat", heartbeats[i], True)
            sent += 1
            due.append((when + interval, i))
        wake = began + step * STEP
        await asyncio.sleep(max(0.0, wake - time.monotonic()))
    await asyncio.gather(*tasks)
    await nc.close()
    latencies.sort()
    print(
        json.dumps(
            {
                "registered": registered,
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
    url, prefix, start, end, interval, duration, rate = sys.argv[1:8]
    asyncio.run(
        main(url, prefix, int(start), int(end), float(interval), float(duration), float(rate))
    )
