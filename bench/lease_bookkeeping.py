"""What a steady heartbeat's lease bookkeeping costs, on the request path and in the sweep.

    python bench/lease_bookkeeping.py [INSTANCES]

In process, over a memory store holding INSTANCES (default 100,000):

- ``heard``: ``Liveness.heard`` for every instance, what a steady heartbeat
  does to the lease (records the contact; moves no deadline);
- ``heard + deadline move``: the same plus moving the key in the deadline
  index, what it did before (the baseline);
- ``sweep look``: a sweep once every old deadline is due, every instance
  heard since: each key is looked at and moved to its contact's deadline,
  nothing expires.

Then the share per heartbeat at the default timings (a heartbeat every 5 s,
unhealthy after 15 s: three heartbeats per look). The bench in
``bench/run.py`` times a burst shorter than ``unhealthy_after``, which the
sweep's share does not reach; this is the rest of the account.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aegis.router.domain import InstanceKey, Timings
from aegis.router.leases.deadlines import DeadlineIndex
from aegis.router.registry.operations import Registry
from aegis.router.store.port import MemoryStore
from aegis.wire.messages import RegisterRequest

from tests.support import FakeClock


async def registered(count: int) -> tuple[Registry, FakeClock, list[InstanceKey]]:
    """A registry holding ``count`` instances, all registered at the clock's start."""
    clock = FakeClock()
    registry = Registry(MemoryStore(), clock=clock)
    keys = [InstanceKey(f"svc-{n % 100}", f"i-{n}") for n in range(count)]
    for key in keys:
        request = RegisterRequest(
            service_name=key.service_name, instance_id=key.instance_id, session_id="s"
        )
        await registry.register(request)
    return registry, clock, keys


async def main(count: int) -> None:
    timings = Timings()
    registry, clock, keys = await registered(count)
    clock.at(timings.heartbeat_interval)
    at = clock.now.timestamp()
    started = time.perf_counter()
    for key in keys:
        registry.liveness.heard(key, "s", at)
    heard = (time.perf_counter() - started) / count * 1e6

    # The sweep's look: every registration deadline due, every instance heard since.
    clock.at(timings.unhealthy_after + 0.5)
    started = time.perf_counter()
    changed = await registry.liveness.sweep()
    look = (time.perf_counter() - started) / count * 1e6
    assert changed == 0, "every instance was heard: nothing may change"

    baseline, clock, keys = await registered(count)
    clock.at(timings.heartbeat_interval)
    at = clock.now.timestamp()
    # An index like the registry's, every key at its registration's deadline.
    index: DeadlineIndex[InstanceKey] = DeadlineIndex(0.05)
    for key in keys:
        index.set(key, clock.start.timestamp() + timings.unhealthy_after)
    started = time.perf_counter()
    for key in keys:
        baseline.liveness.heard(key, "s", at)
        index.set(key, at + timings.unhealthy_after)
    moved = (time.perf_counter() - started) / count * 1e6

    per_look = timings.unhealthy_after / timings.heartbeat_interval
    print(f"{count:,} instances, in process (us per instance)")
    print(f"heard                     {heard:6.2f}")
    print(f"heard + deadline move     {moved:6.2f}   (before)")
    print(f"sweep look                {look:6.2f}   (once per unhealthy_after)")
    print(
        f"per heartbeat at defaults {heard + look / per_look:6.2f}   "
        f"against {moved:.2f} before ({per_look:.0f} heartbeats per look)"
    )


if __name__ == "__main__":
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
