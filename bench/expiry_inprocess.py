"""A simultaneous mass expiry on the JetStream store, the router's write path alone.

    python bench/expiry_inprocess.py              # 20,000 instances, shares 0.1 and 0.5
    python bench/expiry_inprocess.py 100000

A ``Registry`` on a ``JetStreamStore`` (its own nats-server), in this process:
registers N instances (timed: the in-process registration rate on the
store), then moves its clock so that every one is due at the same instant,
and sweeps on the router's tick until all are UNHEALTHY. No load generator
shares the machine's cores, so the figure is the sweep's and the store's:
how long past ``unhealthy_after`` the last one is written, and the process
CPU per expiry. Run once per expiry budget share (``ExpiryBudget.share``),
each on a bucket of its own: 0.1 (until issue 28) and 0.5.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aegis.router.domain import Timings
from aegis.router.registry.expiry_budget import ExpiryBudget
from aegis.router.registry.operations import Registry
from aegis.router.registry.sweeper import tick_for
from aegis.router.store.jetstream import JetStreamStore
from aegis.wire.messages import InstanceStatus, RegisterRequest

from tests.support.procs import NatsServer

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
TIMINGS = Timings(heartbeat_interval=1, unhealthy_after=8, offline_after=600, remove_after=1200)
IN_FLIGHT = 64


async def one(url: str, n: int, share: float) -> str:
    nc = await nats.connect(url)
    store = JetStreamStore(f"expiry_{int(share * 100)}")
    await store.start(nc)
    shift = [0.0]

    def clock() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=shift[0])

    registry = Registry(store, TIMINGS, clock=clock, expiry_budget=ExpiryBudget(share=share))
    requests = [
        RegisterRequest(service_name=f"svc-{i % 100}", instance_id=f"i-{i}", session_id="s")
        for i in range(n)
    ]
    began, cpu = time.perf_counter(), time.process_time()
    for start in range(0, n, IN_FLIGHT):
        await asyncio.gather(*(registry.register(r) for r in requests[start : start + IN_FLIGHT]))
    registering = n / (time.perf_counter() - began)
    register_cpu = (time.process_time() - cpu) / n * 1e6

    tick = tick_for(TIMINGS.unhealthy_after)
    # Every instance registered within the last seconds: due together once the clock
    # passes unhealthy_after after the last of them.
    shift[0] = TIMINGS.unhealthy_after
    began, cpu = time.perf_counter(), time.process_time()
    unhealthy = 0
    while unhealthy < n and time.perf_counter() - began < 120:
        await registry.liveness.sweep()
        records = await store.list_all()
        unhealthy = sum(r.status is InstanceStatus.UNHEALTHY for r in records)
        await asyncio.sleep(tick)
    took = time.perf_counter() - began
    expiry_cpu = (time.process_time() - cpu) / n * 1e6
    await store.stop()
    await nc.close()
    return (
        f"share {share:g}: registered {registering:,.0f}/s ({register_cpu:.0f} us CPU each); "
        f"{unhealthy:,} of {n:,} UNHEALTHY {took:.2f} s after all fell due "
        f"({expiry_cpu:.0f} us CPU per expiry)"
    )


async def main(url: str, n: int) -> None:
    for share in (0.1, 0.5):
        print(await one(url, n, share), flush=True)


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    with tempfile.TemporaryDirectory(prefix="aegis-expiry-") as tmp:
        server = NatsServer(data_dir=Path(tmp) / "nats")
        server.start()
        try:
            asyncio.run(main(server.url, count))
        finally:
            server.stop()
