"""Load generator for NATS request-reply, run as its own process.

Sends COUNT requests with CONCURRENCY in flight and prints one JSON line:
requests/s, p50/p99 latency in ms, and error count.
Usage: python bench/nats_load.py URL register|heartbeat COUNT CONCURRENCY PREFIX [SERVICES]
"""

from __future__ import annotations

import asyncio
import sys
import time

import msgpack
import nats
from load_stats import report


def body(kind: str, prefix: str, i: int, services: int) -> bytes:
    fields = {
        "service_name": f"{prefix}-svc-{i % services}",
        "instance_id": f"{prefix}-{i}",
        "session_id": f"{prefix}-session",
    }
    if kind == "register":
        fields["metadata"] = {"version": "1.4.2", "zone": "eu-west-1a", "port": 8080}
    return msgpack.packb(fields)


async def main(
    url: str, kind: str, count: int, concurrency: int, prefix: str, services: int
) -> None:
    nc = await nats.connect(url)
    subject = f"ipc.service.{kind}"
    payloads = [body(kind, prefix, i, services) for i in range(count)]
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
                msg = await nc.request(subject, payloads[i], timeout=10)
                if msgpack.unpackb(msg.data)["status"] >= 300:
                    errors += 1
            except Exception:
                errors += 1
            latencies.append(time.perf_counter() - start)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    await nc.close()
    report(latencies, count, elapsed, errors)


if __name__ == "__main__":
    url, kind, count, concurrency, prefix = sys.argv[1:6]
    services = int(sys.argv[6]) if len(sys.argv) > 6 else 100
    asyncio.run(main(url, kind, int(count), int(concurrency), prefix, services))
