"""How long one diff-refresh of the console's tables takes at 10,000 instances.

Runs the real ``ConsoleApp`` headless (``App.run_test``) and feeds it a sequence of
registry snapshots in which a fraction of the instances changed (most updated, some
added, some removed). Side by side, in the same process and on the same data:

- keyed diff: what the console does with a router that does not page (the whole
  registry held and sorted, the instances table drawing only the lines on screen;
  the services table is still a keyed DataTable: add/update/remove by row key);
- clear + re-add: the naive console (``clear()`` then every row rendered and added
  again, each poll).

Two figures per approach: *apply*, the wall time of the refresh call itself, and
*apply+settle*, the process CPU time until the app is idle again (the DataTable's
deferred measuring and the screen render included; sleeps excluded). "full GCs"
counts CPython's generation-2 collections during the measured polls: with this
many live objects each costs over 100 ms, and they make the slow tail.

    python bench/console_refresh.py            # 10,000 instances, 5 % changed
    python bench/console_refresh.py --quick    # a tiny size, to check it runs

A benchmark, not a test: it reports numbers and never fails on them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from typing import Any

from aegis.console.api_client import ApiError, InstancePage, ServicesListing
from aegis.console.listing import InstanceQuery
from aegis.console.models import InstanceInfo, RegistrySnapshot, ServiceSummary
from aegis.console.tables import INSTANCE_COLUMNS, INSTANCE_SORTS, instance_cells
from aegis.console.ui import ConsoleApp
from textual.app import App, ComposeResult
from textual.widgets import DataTable

NOW = datetime(2026, 11, 3, 12, 0, 0, tzinfo=UTC)
STATUSES = ("ONLINE", "UNHEALTHY", "OFFLINE")


def clock() -> datetime:
    return NOW


def first_snapshot(count: int, services: int) -> RegistrySnapshot:
    instances = tuple(
        InstanceInfo(
            service_name=f"service-{n % services:03d}",
            instance_id=f"inst-{n:06d}",
            status="ONLINE",
            registered_at=NOW - timedelta(hours=1, seconds=n),
            last_heartbeat_at=NOW - timedelta(seconds=n % 30),
            metadata={"version": "1.4.2", "zone": f"zone-{n % 3}", "port": 8000 + n % 100},
        )
        for n in range(count)
    )
    return snapshot_of(instances)


def snapshot_of(instances: tuple[InstanceInfo, ...]) -> RegistrySnapshot:
    counts: dict[str, Counter[str]] = {}
    for item in instances:
        counts.setdefault(item.service_name, Counter())[item.status] += 1
    services = tuple(
        ServiceSummary(name, sum(c.values()), c["ONLINE"], c["UNHEALTHY"], c["OFFLINE"])
        for name, c in sorted(counts.items())
    )
    return RegistrySnapshot(services=services, instances=instances, fetched_at=NOW)


def evolve(previous: RegistrySnapshot, fraction: float, rng: random.Random) -> RegistrySnapshot:
    """The next poll: ``fraction`` of the rows changed, 80 % updated, 10 % gone, 10 % new."""
    rows = {item.key: item for item in previous.instances}
    changed = max(3, int(len(rows) * fraction))
    removes, adds = changed // 10, changed // 10
    picked = rng.sample(sorted(rows), changed - adds)
    for key in picked[:removes]:
        del rows[key]
    for key in picked[removes:]:
        item = rows[key]
        rows[key] = replace(
            item,
            status=rng.choice([s for s in STATUSES if s != item.status]),
            last_heartbeat_at=item.last_heartbeat_at + timedelta(seconds=5),
        )
    services = sorted({item.service_name for item in rows.values()})
    while adds:
        item = InstanceInfo(
            service_name=rng.choice(services),
            instance_id=f"new-{rng.randrange(10**9):09d}",
            status="ONLINE",
            registered_at=NOW,
            last_heartbeat_at=NOW,
            metadata={"version": "1.5.0"},
        )
        if item.key not in rows:
            rows[item.key] = item
            adds -= 1
    return snapshot_of(tuple(rows.values()))


def snapshots(count: int, services: int, fraction: float, rounds: int) -> list[RegistrySnapshot]:
    rng = random.Random(20261103)
    sequence = [first_snapshot(count, services)]
    for _ in range(rounds):
        sequence.append(evolve(sequence[-1], fraction, rng))
    return sequence


class StubClient:
    """Serves the first snapshot to the app's own first poll; the rest are pushed."""

    base_url = "http://bench.invalid"

    def __init__(self, first: RegistrySnapshot) -> None:
        self.first = first

    async def fetch(self) -> RegistrySnapshot:
        return self.first

    async def list_services(self) -> ServicesListing:
        """As a router without paging answers (no ``version``)."""
        return ServicesListing(self.first.services, None)

    async def list_instances(
        self, query: InstanceQuery, limit: int | None = None, cursor: str | None = None
    ) -> InstancePage:
        """Every instance, as a router without paging answers whatever is asked."""
        instances = self.first.instances
        return InstancePage(instances, len(instances), None, None, paged=False)

    async def events(
        self, last_event_id: str | None, on_open: Callable[[], None]
    ) -> AsyncIterator[object]:
        """No change-event stream (as an older router): the console falls back to polls,
        and the benchmark pushes every snapshot itself."""
        raise ApiError("no event stream in the benchmark", unreachable=False, status=404)
        yield None  # never reached; makes this an async generator

    async def whoami(self) -> object:
        """As a router without roles answers: no ``/whoami``, every action offered."""
        raise ApiError("no whoami in the benchmark", unreachable=False, status=404)

    async def aclose(self) -> None:
        pass


class StillConsole(ConsoleApp):
    """The console, polled only by the benchmark."""

    def schedule_poll(self, delay: float) -> None:
        return None

    def show_snapshot(self, snapshot: RegistrySnapshot) -> None:
        self.dashboard.show_snapshot(snapshot)


class NaiveApp(App[None]):
    """One DataTable refreshed the naive way: clear() and add every row again."""

    def compose(self) -> ComposeResult:
        yield DataTable(cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for column in INSTANCE_COLUMNS:
            table.add_column(column.label, key=column.key, width=column.width)

    def show_snapshot(self, snapshot: RegistrySnapshot) -> None:
        table = self.query_one(DataTable)
        table.clear()
        order = INSTANCE_SORTS[0].key
        for item in sorted(snapshot.instances, key=order):
            table.add_row(*instance_cells(item, NOW), key=item.key)


Timings = tuple[list[float], list[float], int]

FULL_COLLECTIONS: list[float] = []


def count_full_collections(phase: str, info: dict[str, int]) -> None:
    # CPython's occasional full (generation 2) collection shows up as the slow tail.
    if phase == "start" and info["generation"] == 2:
        FULL_COLLECTIONS.append(time.perf_counter())


async def measure(
    app: Any, sequence: list[RegistrySnapshot], warmup: int, prepare: Callable[[Any], None]
) -> Timings:
    apply_ms: list[float] = []
    settle_ms: list[float] = []
    full_collections = 0
    async with app.run_test(size=(160, 50)) as pilot:
        await app.workers.wait_for_complete()
        prepare(app)
        app.show_snapshot(sequence[0])
        await pilot.pause()
        for index, snapshot in enumerate(sequence[1:]):
            collections = len(FULL_COLLECTIONS)
            cpu, wall = time.process_time(), time.perf_counter()
            app.show_snapshot(snapshot)
            applied = time.perf_counter() - wall
            await pilot.pause()
            settled = time.process_time() - cpu
            if index >= warmup:
                apply_ms.append(applied * 1000)
                settle_ms.append(settled * 1000)
                full_collections += len(FULL_COLLECTIONS) - collections
    return apply_ms, settle_ms, full_collections


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def keyed_app(first: RegistrySnapshot) -> ConsoleApp:
    client: Any = StubClient(first)
    return StillConsole("http://bench.invalid", clock=clock, client=client)


def rows(results: dict[str, Timings]) -> Iterator[str]:
    heads = ("apply median", "apply p95", "+settle median", "+settle p95")
    yield f"{'approach':<22}" + "".join(f"{head:>16}" for head in heads) + "  full GCs"
    for name, (apply_ms, settle_ms, full_collections) in results.items():
        figures = (statistics.median(apply_ms), p95(apply_ms))
        figures += (statistics.median(settle_ms), p95(settle_ms))
        line = f"{name:<22}" + "".join(f"{value:>13.1f} ms" for value in figures)
        yield line + f"{full_collections:>10}"


async def run(count: int, services: int, fraction: float, rounds: int, warmup: int) -> None:
    sequence = snapshots(count, services, fraction, rounds + warmup)
    changed = max(3, int(count * fraction))
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"textual {version('textual')}"
    )
    print(
        f"{count:,} instances in {services} services; {changed} rows changed per poll "
        f"({fraction:.0%}: ~80 % updated, 10 % removed, 10 % added); "
        f"{rounds} measured polls after {warmup} warm-up"
    )
    gc.callbacks.append(count_full_collections)
    results: dict[str, Timings] = {}
    results["keyed diff"] = await measure(
        keyed_app(sequence[0]), sequence, warmup, lambda app: None
    )
    results["clear + re-add"] = await measure(NaiveApp(), sequence, warmup, lambda app: None)
    print()
    for line in rows(results):
        print(line)
    keyed, naive = results["keyed diff"], results["clear + re-add"]
    apply_ratio = statistics.median(naive[0]) / statistics.median(keyed[0])
    settle_ratio = statistics.median(naive[1]) / statistics.median(keyed[1])
    print()
    print(
        f"clear + re-add takes x{apply_ratio:.1f} the keyed diff's time to apply, "
        f"x{settle_ratio:.1f} to apply and settle (medians)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="500 instances, 5 polls")
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--changed", type=float, default=0.05, help="fraction changed per poll")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    if args.quick:
        args.instances, args.rounds = 500, 5
    asyncio.run(run(args.instances, args.services, args.changed, args.rounds, warmup=2))


if __name__ == "__main__":
    sys.exit(main())
