"""Resolver: pick() cost, how fast a change reaches 100 resolvers, how fast they reload.

    python bench/resolver.py           # full sizes
    python bench/resolver.py --quick   # tiny sizes: checks it still runs

Rows (issue 12 targets): ``pick()`` per call beside a bare ``random.choice``
over the same list (target under 5 us); the time from the router's change
event until each of 100 resolvers has applied it (target p99 under 100 ms;
measured from the change request, which includes the router's handling); the
time from a restarted router's start until each resolver has reloaded its view (target:
within one heartbeat interval, 5 s by default).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import tempfile
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nats  # noqa: E402
from aegis.sdk import ClientConfig, Resolver, ServiceClient  # noqa: E402
from aegis.sdk.watch import parse_event  # noqa: E402

from tests.support.procs import NatsServer, router_process  # noqa: E402

FAST = ClientConfig(timeout=2.0, retries=3, backoff_base=0.05, backoff_max=0.5)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * q) - 1)]


def bench_pick(resolver: Resolver) -> list[tuple[str, str, str, str]]:
    healthy = resolver.instances()
    n = 200_000
    pick = timeit.timeit(resolver.pick, number=n) / n * 1e6
    choice = timeit.timeit(lambda: random.choice(healthy), number=n) / n * 1e6
    return [
        (
            f"pick() over {len(healthy)} instances (round robin)",
            f"{pick:.2f} us ({1e6 / pick:,.0f}/s)",
            f"random.choice {choice:.2f} us ({1e6 / choice:,.0f}/s)",
            f"x{pick / choice:.2f} (target < 5 us)",
        )
    ]


async def bench_propagation(
    url: str, resolvers: list[Resolver], client: ServiceClient, changes: int
) -> list[tuple[str, str, str, str]]:
    """Register and deregister an instance ``changes`` times; per resolver, per change:
    time from sending the change request until the resolver applied the event."""
    arrived: dict[tuple[str, int], float] = {}
    nc = await nats.connect(url)

    came = asyncio.Event()

    async def reference(msg: object) -> None:
        event = parse_event(msg)  # type: ignore[arg-type]
        if event is not None and event.instance.version is not None:
            arrived[(event.instance.instance_id, event.instance.version)] = time.perf_counter()
            came.set()

    await nc.subscribe("ipc.events.service.prop", cb=reference)
    await nc.flush()
    marks: list[list[float]] = [[] for _ in resolvers]
    for index, resolver in enumerate(resolvers):
        resolver.on_change(lambda view, i=index: marks[i].append(time.perf_counter()))
    started: list[float] = []
    for n in range(changes):
        came.clear()
        sent = time.perf_counter()
        if n % 2 == 0:
            await client.register("prop", "moving")
        else:
            await client.deregister("prop", "moving")
        await came.wait()
        # From the request, not the event: an upper bound that includes the
        # router's own handling (a subscriber on another connection may even
        # hear the event after some resolvers did).
        started.append(sent)
        await asyncio.sleep(0.02)
    await nc.close()
    delays = [
        (mark - start) * 1000
        for resolver_marks in marks
        for mark, start in zip(resolver_marks, started, strict=False)
    ]
    return [
        (
            f"change -> {len(resolvers)} resolvers ({changes} changes)",
            f"p50 {percentile(delays, 0.5):.1f} ms, p99 {percentile(delays, 0.99):.1f} ms",
            f"{len(delays):,} deliveries",
            f"x{percentile(delays, 0.99) / 100:.2f} of the 100 ms target",
        )
    ]


async def bench_reload(
    router: object, resolvers: list[Resolver]
) -> list[tuple[str, str, str, str]]:
    """SIGKILL the router, start it again; time until every resolver reloaded."""
    before = [r.resyncs for r in resolvers]
    await asyncio.to_thread(router.stop, signal.SIGKILL)  # type: ignore[attr-defined]
    await asyncio.to_thread(router.start)  # type: ignore[attr-defined]
    ready = time.perf_counter()  # start() returns once the router is ready
    while any(r.resyncs == b for r, b in zip(resolvers, before, strict=True)):
        await asyncio.sleep(0.005)
        if time.perf_counter() - ready > 30:
            break
    took = time.perf_counter() - ready
    return [
        (
            f"router restart -> {len(resolvers)} resolvers reloaded",
            f"{took * 1000:.0f} ms after it was ready",
            "heartbeat interval 5 s",
            f"x{took / 5:.3f}",
        )
    ]


async def run(quick: bool) -> None:
    count = 10 if quick else 100
    changes = 10 if quick else 50
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="aegis-resolver-") as tmp_dir:
        tmp = Path(tmp_dir)
        server = NatsServer(data_dir=tmp / "nats")
        server.start()
        try:
            router = router_process(tmp, nats_url=server.url, name="resolver")
            async with router, ServiceClient(server.url, FAST) as client:
                for n in range(20):
                    await client.register("prop", f"p-{n}")
                resolvers = [await client.resolver("prop") for _ in range(count)]
                rows += bench_pick(resolvers[0])
                rows += await bench_propagation(server.url, resolvers, client, changes)
                rows += await bench_reload(router, resolvers)
        finally:
            server.stop()
    print("| measure | figure | baseline | ratio |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    asyncio.run(run(parser.parse_args().quick))


if __name__ == "__main__":
    main()
