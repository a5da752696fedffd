"""Load generator for NATS request-reply, run as its own process.

Sends COUNT requests with CONCURRENCY in flight and prints one JSON line:
requests/s, p50/p99 latency in ms, and error count.
Usage: python bench/nats_load.py URL register|heartbeat COUNT CONCURRENCY PREFIX [SERVICES]
"""

from __future__ import annotations

import asyncio
import sys

import msgpack
import nats
from load_stats import run_concurrently


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

    async def request(i: int) -> None:
        msg = await nc.request(subject, payloads[i], timeout=10)
        status = msgpack.unpackb(msg.data)["status"]
        if status >= 300:
            raise RuntimeError(f"answered {status}")

    await run_concurrently(count, concurrency, request)
    await nc.close()


if __name__ == "__main__":
    url, kind, count, concurrency, prefix = sys.argv[1:6]
    services = int(sys.argv[6]) if len(sys.argv) > 6 else 100
    asyncio.run(main(url, kind, int(count), int(concurrency), prefix, services))
