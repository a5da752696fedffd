"""What one page of an instance listing costs the router at 100,000 instances.

A memory-store registry in this process holds 100,000 instances (one service
of 50,000 and 500 services of 100, as issue 24's fleet), loaded straight into
the store. Each figure is the process CPU time (``time.process_time``) per
request, the median of several rounds:

- *handler*: what the route does for a page: the page off the sorted keys
  and its JSON body (no HTTP); with the instances' texts kept from an earlier
  request (``InstanceTexts``), and with none kept;
- *HTTP*: the whole request, served by Sanic in a child process (the same
  registry, built there) and sent by httpx from this one: the child's CPU
  time (``/proc/<pid>/stat``) over 200 requests, divided by 200;
- *304*: the same, with the page's ETag in ``If-None-Match``;
- *sorted* (the baseline, what the listing did before): every record of the
  service listed and sorted, then the first 500 rendered.

    python bench/rest_pages.py            # 100,000 instances, pages of 500
    python bench/rest_pages.py --quick    # a tiny size, to check it runs

A benchmark, not a test: it reports numbers and never fails on them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import structlog  # noqa: E402
from aegis.router.bootstrap import bootstrap  # noqa: E402
from aegis.router.domain import InstanceRecord  # noqa: E402
from aegis.router.registry.operations import PageQuery, Registry  # noqa: E402
from aegis.router.rest.cursor import encode_cursor  # noqa: E402
from aegis.router.rest.instance_json import InstanceTexts  # noqa: E402
from aegis.router.settings import Settings  # noqa: E402
from aegis.router.store.port import MemoryStore  # noqa: E402
from aegis.wire.messages import InstanceStatus  # noqa: E402

from tests.support.procs import free_port, stop_process, wait_for_port  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ADMIN = "/api/v1/admin"


def cpu_per_call(call: Callable[[], Any], calls: int, rounds: int = 5) -> float:
    """The median over ``rounds`` of process CPU seconds per ``call()``."""
    results = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(calls):
            call()
        results.append((time.process_time() - start) / calls)
    return statistics.median(results)


async def acpu_per_call(call: Callable[[], Any], calls: int, rounds: int = 5) -> float:
    """``cpu_per_call`` of a coroutine function."""
    results = []
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(calls):
            await call()
        results.append((time.process_time() - start) / calls)
    return statistics.median(results)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def served(path: str, limit: int, calls: int) -> tuple[float, float]:
    """Router CPU per request for ``path`` and for its 304, served by a child process."""
    port = free_port()
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(port), *sys.argv[1:]])
    try:
        wait_for_port(port, timeout=300)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            response = http.get(path)
            assert response.status_code == 200, response.text[:300]
            assert len(response.json()["instances"]) == limit
            tag = response.headers["etag"]
            figures = []
            for headers in ({}, {"If-None-Match": tag}):
                http.get(path, headers=headers)
                start = process_cpu(child.pid)
                for _ in range(calls):
                    http.get(path, headers=headers)
                figures.append((process_cpu(child.pid) - start) / calls)
            return figures[0], figures[1]
    finally:
        stop_process(child)


async def fill(store: MemoryStore, big: int, services: int, per_service: int) -> None:
    """``big`` instances of fleet, and ``services`` services of ``per_service``."""
    online = InstanceStatus.ONLINE
    for i in range(big):
        await store.create(InstanceRecord("fleet", f"f-{i:06d}", online, {"i": i}, T0, T0, "s"))
    for s in range(services):
        for i in range(per_service):
            record = InstanceRecord(f"svc-{s:03d}", f"i-{i:03d}", online, {}, T0, T0, "s")
            await store.create(record)


def serve(port: int, big: int, services: int, per_service: int) -> None:
    """Serve the filled registry's REST API on ``port`` until stopped."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    store = MemoryStore()
    app = bootstrap(Settings(store="memory"), store=store, nats=None, clock=lambda: T0)
    asyncio.run(fill(store, big, services, per_service))  # tracked by the store's listener
    app.run(host="127.0.0.1", port=port, single_process=True, access_log=False)


async def main(big: int, services: int, per_service: int, limit: int, calls: int) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    store = MemoryStore()
    app = bootstrap(Settings(store="memory"), store=store, nats=None, clock=lambda: T0)
    registry: Registry = app.ctx.registry
    await fill(store, big, services, per_service)
    total = big + services * per_service
    await registry.load()  # nothing to load: the store's listener tracked every create

    texts: InstanceTexts = app.ctx.texts
    query = PageQuery(service="fleet", limit=limit)
    after = registry.page(PageQuery(service="fleet", limit=big // 2)).records[-1].key
    middle = encode_cursor(after)
    query_mid = PageQuery(service="fleet", limit=limit, after=after)

    def handler() -> bytes:
        page = registry.page(query_mid)
        last = page.last
        return texts.instances_response(
            page.records, page.total, None if last is None else encode_cursor(last), "r:1"
        )

    async def sorted_baseline() -> bytes:
        records = await registry.instances("fleet")  # listed, contacts applied, sorted
        return texts.instances_response(records[:limit], len(records))

    def cold() -> bytes:
        page = registry.page(query_mid)
        return InstanceTexts().instances_response(page.records, page.total, None, "r:1")

    cold_cpu = cpu_per_call(cold, calls)
    handler()  # the texts kept, as for a console asking again
    handler_cpu = cpu_per_call(handler, calls)
    first_cpu = cpu_per_call(lambda: registry.page(query), calls)
    sorted_cpu = await acpu_per_call(sorted_baseline, max(1, calls // 10), rounds=3)

    path = f"{ADMIN}/services/fleet/instances?limit={limit}&cursor={middle}"
    http_cpu, cpu_304 = await asyncio.to_thread(served, path, limit, calls * 2)
    print(f"instances: {total:,} (fleet: {big:,}; {services} services of {per_service})")
    print(f"page of {limit}, from the middle of fleet, CPU per request (median of 5 rounds):")
    print(f"  handler (page + JSON body)      {handler_cpu * 1e3:7.2f} ms")
    print(f"  handler, no instance text kept  {cold_cpu * 1e3:7.2f} ms")
    print(f"  page only (first page)          {first_cpu * 1e3:7.2f} ms")
    print(f"  HTTP, router process CPU        {http_cpu * 1e3:7.2f} ms")
    print(f"  304, router process CPU         {cpu_304 * 1e3:7.2f} ms")
    print(f"  baseline: list + sort + render  {sorted_cpu * 1e3:7.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny size, to check it runs")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the child's port
    args = parser.parse_args()
    sizes = (2_000, 10, 10) if args.quick else (50_000, 500, 100)
    if args.serve:
        serve(args.serve, *sizes)
    else:
        asyncio.run(main(*sizes, *((100, 20) if args.quick else (500, 100))))
