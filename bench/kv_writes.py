"""The router's KV writer against nats-py's KeyValue, in one process, same server, same run.

    python bench/kv_writes.py              # 20,000 writes a phase, 64 in flight, 3 rounds
    python bench/kv_writes.py 5000 64 1

Starts its own nats-server, then in alternating rounds creates COUNT keys and
compare-and-set updates them, once with ``KeyValue.create``/``update`` (what
``bench/kv_load.py``, the bare KV baseline, does) and once with
``aegis.router.store.kv_writes.KvWriter`` (what the router does). Prints the
writes per second and the client process's CPU per write (user+sys), which
a shared machine disturbs less than throughput.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
from nats.aio.client import Client as NatsClient
from nats.js.api import KeyValueConfig, StorageType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aegis.router.store.kv_writes import KvWriter
from kv_load import VALUE

from tests.support.procs import NatsServer


async def timed(count: int, concurrency: int, write: Callable[[int], Awaitable[None]]) -> str:
    """``write(0)`` ... ``write(count - 1)``, ``concurrency`` in flight: rate and CPU each."""
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            next_index += 1
            await write(next_index - 1)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return f"{count / wall:8,.0f}/s {cpu / count * 1e6:6.1f} us CPU"


async def one_way(nc: NatsClient, bucket: str, lean: bool, count: int, concurrency: int) -> str:
    """Creates then updates ``count`` keys of a fresh bucket, one way; its figures."""
    js = nc.jetstream(timeout=10)
    kv = await js.create_key_value(
        KeyValueConfig(bucket=bucket, history=1, replicas=1, storage=StorageType.FILE)
    )
    writer = KvWriter(nc, bucket, timeout=10)
    await writer.start()
    revisions: dict[int, int] = {}

    async def create(i: int) -> None:
        key = f"kv-svc-{i % 100}.kv-{i}"
        if lean:
            revisions[i] = await writer.write(key, VALUE, 0)
        else:
            revisions[i] = await kv.create(key, VALUE)

    async def update(i: int) -> None:
        key = f"kv-svc-{i % 100}.kv-{i}"
        if lean:
            revisions[i] = await writer.write(key, VALUE, revisions[i])
        else:
            revisions[i] = await kv.update(key, VALUE, last=revisions[i])

    creates = await timed(count, concurrency, create)
    updates = await timed(count, concurrency, update)
    await writer.stop()
    await js.delete_key_value(bucket)
    return f"create {creates}   update {updates}"


async def main(url: str, count: int, concurrency: int, rounds: int) -> None:
    nc = await nats.connect(url)
    for n in range(rounds):
        for lean in (False, True):
            way = "lean" if lean else "nats-py"
            figures = await one_way(nc, f"w{n}_{lean}", lean, count, concurrency)
            print(f"round {n + 1} {way:8} {figures}", flush=True)
    await nc.close()


if __name__ == "__main__":
    given = [int(a) for a in sys.argv[1:4]]
    count, concurrency, rounds = (given + [20000, 64, 3][len(given) :])[:3]
    with tempfile.TemporaryDirectory(prefix="aegis-kv-writes-") as tmp:
        server = NatsServer(data_dir=Path(tmp) / "nats")
        server.start()
        try:
            asyncio.run(main(server.url, count, concurrency, rounds))
        finally:
            server.stop()
