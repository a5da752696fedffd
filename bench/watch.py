"""What the load benchmarks (storm.py, capacity.py) watch besides their own load.

- ``statuses``: instances by status from the REST API.
- ``watch_events``: a process counting the change events that take an instance
  out of ONLINE (the most precise record of who left: the router says so itself).
- ``poll_healthz``: a process timing ``GET /healthz`` every ``HEALTHZ_EVERY``
  seconds; in a process of its own so the benchmark's own work does not show
  up as router latency.

Both processes report through a ``multiprocessing`` queue about once a second
and send a last message with ``final`` set once ``stop`` is set.
"""

from __future__ import annotations

import asyncio
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

import httpx
import msgpack
import nats
from open_loop import Histogram, index_of

HEALTHZ_EVERY = 0.1  # seconds between /healthz probes
LEAVING = ("UNHEALTHY", "OFFLINE")


async def statuses(http: httpx.AsyncClient, prefix: str | None = None) -> dict[str, int]:
    """Instances by status, over every service (or those named ``<prefix>-svc-*``)."""
    totals: dict[str, int] = {}
    for service in (await http.get("/api/v1/admin/services")).json()["services"]:
        if prefix is not None and not service["name"].startswith(f"{prefix}-svc-"):
            continue
        for status, n in service["statuses"].items():
            totals[status] = totals.get(status, 0) + n
    return totals


async def _watch_events(
    url: str, prefix: str, until: Any, out: Queue[dict[str, Any]], stop: Event
) -> None:
    nc = await nats.connect(url, max_reconnect_attempts=3, connect_timeout=5)
    changes = dict.fromkeys(LEAVING, 0)
    left: set[int] = set()
    events = 0

    async def keep(msg: Any) -> None:
        nonlocal events
        events += 1
        # Registrations are most of the events: skip them before decoding.
        if b"status_changed" not in msg.data:
            return
        if until.value and time.monotonic() > until.value:
            return  # the load has stopped: instances fall silent now
        event = msgpack.unpackb(msg.data)
        instance = event.get("instance") or {}
        status = instance.get("status")
        index = index_of(prefix, str(instance.get("instance_id")))
        if event.get("event") == "status_changed" and status in LEAVING and index is not None:
            changes[status] += 1
            left.add(index)

    await nc.subscribe("ipc.events.service.>", cb=keep, pending_msgs_limit=0, pending_bytes_limit=0)
    await nc.flush()
    out.put({"ready": True})
    while not stop.is_set():
        await asyncio.sleep(1.0)
        out.put({"events": events, "changes": dict(changes), "left": len(left)})
    await nc.drain()
    out.put({"events": events, "changes": changes, "left": len(left), "final": sorted(left)})


def watch_events(
    url: str, prefix: str, until: Any, out: Queue[dict[str, Any]], stop: Event
) -> None:
    """A process's body: count the change events that take ``prefix``'s instances out of
    ONLINE (``status_changed`` to UNHEALTHY or OFFLINE) until ``stop``; the last message
    lists the indexes of the instances that left. Events after ``until.value`` (a shared
    ``time.monotonic()`` value, 0: not yet known), when the load stops, are not counted."""
    asyncio.run(_watch_events(url, prefix, until, out, stop))


def poll_healthz(urls: list[str], out: Queue[dict[str, Any]], stop: Event) -> None:
    """A process's body: ``GET /healthz`` of each router every ``HEALTHZ_EVERY`` seconds
    until ``stop``; each second a histogram of the latencies (seconds) since the last,
    failures counted apart (a probe that failed after 5 s counts 5 s)."""
    clients = [httpx.Client(base_url=url, timeout=5) for url in urls]
    window, failures = Histogram(), 0
    next_report = time.monotonic() + 1.0
    out.put({"ready": True})
    while not stop.is_set():
        began = time.monotonic()
        for client in clients:
            start = time.perf_counter()
            try:
                client.get("/healthz").raise_for_status()
            except httpx.HTTPError:
                failures += 1
            window.add(time.perf_counter() - start)
        if time.monotonic() >= next_report:
            next_report += 1.0
            out.put({"latency": window.to_wire(), "failures": failures})
            window = Histogram()
        stop.wait(max(0.0, began + HEALTHZ_EVERY - time.monotonic()))
    out.put({"latency": window.to_wire(), "failures": failures, "final": True})
    for client in clients:
        client.close()
