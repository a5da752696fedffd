"""Baseline for the JetStream store: a bare nats-py key-value loop, run as its own process.

The store's own limit: COUNT creates, then COUNT compare-and-set updates of
those keys, with CONCURRENCY in flight, on a fresh bucket configured as the
router's. Prints one JSON line per phase (create, update), as nats_load does.
Usage: python bench/kv_load.py URL COUNT CONCURRENCY BUCKET
"""

from __future__ import annotations

import asyncio
import sys

import msgpack
import nats
from load_stats import run_concurrently
from nats.js.api import KeyValueConfig, StorageType

# A value of the size the router stores for one instance.
VALUE = msgpack.packb(
    {
        "service_name": "kv-svc-1",
        "instance_id": "kv-1",
        "status": "ONLINE",
        "metadata": {"version": "1.4.2", "zone": "eu-west-1a", "port": 8080},
        "registered_at": 1.0,
        "last_heartbeat_at": 1.0,
        "session_id": "kv-session",
    }
)


async def main(url: str, count: int, concurrency: int, bucket: str) -> None:
    nc = await nats.connect(url)
    kv = await nc.jetstream(timeout=10).create_key_value(
        KeyValueConfig(bucket=bucket, history=1, replicas=1, storage=StorageType.FILE)
    )
    revisions: dict[int, int] = {}

    async def create(i: int) -> None:
        revisions[i] = await kv.create(f"kv-svc-{i % 100}.kv-{i}", VALUE)

    async def update(i: int) -> None:
        revisions[i] = await kv.update(f"kv-svc-{i % 100}.kv-{i}", VALUE, last=revisions[i])

    await run_concurrently(count, concurrency, create)
    await run_concurrently(count, concurrency, update)
    await nc.close()


if __name__ == "__main__":
    url, count, concurrency, bucket = sys.argv[1:5]
    asyncio.run(main(url, int(count), int(concurrency), bucket))
