"""Canned router answers and a fixed clock for the console tests."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import httpx
from aegis.console.ui import ConsoleApp
from pytest_httpx import HTTPXMock
from rich.syntax import Syntax
from rich.text import Text
from textual.pilot import Pilot
from textual.timer import Timer
from textual.widgets import Static

from tests.support import FakeClock

API = "http://router.test:8000"
SERVICES_URL = f"{API}/api/v1/admin/services"
INSTANCES_URL = f"{API}/api/v1/admin/instances"
EVENTS_URL = f"{API}/api/v1/admin/events"
WHOAMI_URL = f"{API}/api/v1/admin/whoami"
ANY_INSTANCES_URL = re.compile(re.escape(INSTANCES_URL) + r"(\?.*)?$")
"""``GET /instances`` with any query: an older router ignores ``limit`` and the filters."""
NOW = datetime(2026, 11, 3, 12, 0, 0, tzinfo=UTC)


def fixed_clock() -> datetime:
    """Always ``NOW``: ages and timestamps on screen never move."""
    return NOW


def instance(
    service: str,
    instance_id: str,
    status: str = "ONLINE",
    metadata: dict[str, Any] | None = None,
    *,
    registered: str = "2026-11-03T11:00:00Z",
    heartbeat: str = "2026-11-03T11:59:55Z",
    maintenance: str | None = None,
) -> dict[str, Any]:
    """One instance as ``GET /instances`` shows it; ``maintenance`` is the mark's reason."""
    body: dict[str, Any] = {
        "service_name": service,
        "instance_id": instance_id,
        "status": status,
        "metadata": {"version": "1.4.2", "zone": "eu-west-1"} if metadata is None else metadata,
        "registered_at": registered,
        "last_heartbeat_at": heartbeat,
        "version": 1,
    }
    if maintenance is not None:
        body["maintenance"] = {"reason": maintenance, "since": "2026-11-03T11:45:00Z"}
    return body


def services_body(instances: list[dict[str, Any]]) -> dict[str, Any]:
    """``GET /services`` consistent with ``instances``."""
    by_service: dict[str, Counter[str]] = {}
    for item in instances:
        by_service.setdefault(item["service_name"], Counter())[item["status"]] += 1
    services = [
        {
            "name": name,
            "instance_count": sum(counts.values()),
            "statuses": {s: counts[s] for s in ("ONLINE", "UNHEALTHY", "OFFLINE")},
        }
        for name, counts in sorted(by_service.items())
    ]
    return {"services": services, "total": len(services)}


def add_poll(
    httpx_mock: HTTPXMock, instances: list[dict[str, Any]], *, reusable: bool = False
) -> None:
    """Answer one poll (both requests) with ``instances``."""
    httpx_mock.add_response(url=SERVICES_URL, json=services_body(instances), is_reusable=reusable)
    httpx_mock.add_response(
        url=ANY_INSTANCES_URL,
        json={"instances": instances, "total": len(instances)},
        is_reusable=reusable,
    )


def add_outage(httpx_mock: HTTPXMock, *, reusable: bool = False) -> None:
    """Fail one poll as a stopped router would: the first request is refused."""
    httpx_mock.add_exception(
        httpx.ConnectError("[Errno 111] Connection refused"),
        url=SERVICES_URL,
        is_reusable=reusable,
    )


def fake_clock() -> FakeClock:
    """A clock at ``NOW`` that moves only when a test advances it."""
    return FakeClock(NOW)


class StillConsole(ConsoleApp):
    """A console that never polls on its own: tests poll with ``r``.

    ``armed`` records each delay the real console would have waited. The event
    stream is reconnected after the next of ``events_delays``, then after an hour.
    ``notices`` records each notification as (message, title, severity).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.armed: list[float] = []
        self.events_delays: list[float] = []
        self.notices: list[tuple[str, str, str]] = []

    def schedule_poll(self, delay: float) -> Timer | None:
        self.armed.append(delay)
        return None

    def events_retry_delay(self, failures: int) -> float:
        return self.events_delays.pop(0) if self.events_delays else 3600.0

    def notify(self, message: str, **kwargs: Any) -> None:
        self.notices.append((message, kwargs.get("title", ""), kwargs.get("severity", "")))
        super().notify(message, **kwargs)


def make_app(clock: FakeClock | None = None, **kwargs: Any) -> StillConsole:
    """A console on the fake router, with a clock that stands still unless advanced."""
    kwargs.setdefault("interval", 2.0)
    # Off unless a test is about events or the token's role: every mocked request
    # is then a poll's.
    kwargs.setdefault("events", False)
    kwargs.setdefault("identify", False)
    return StillConsole(API, clock=clock or fake_clock(), **kwargs)


async def settle(pilot: Pilot[Any]) -> None:
    """Wait until the poll (or action) in flight is shown; the event stream never ends."""
    workers = [w for w in pilot.app.workers if w.group != "events"]
    if workers:  # an empty list would wait for every worker
        await pilot.app.workers.wait_for_complete(workers)
    await pilot.pause()


async def poll_now(pilot: Pilot[Any]) -> None:
    """Press ``r`` and wait for that poll to be shown."""
    await pilot.press("r")
    await settle(pilot)


SAMPLE = [
    instance("billing", "billing-1", "OFFLINE", {"version": "0.9.0"}),
    instance("orders", "orders-1"),
    instance("orders", "orders-2", "UNHEALTHY"),
    instance(
        "orders",
        "orders-3",
        metadata={"version": "1.4.2", "tags": ["blue", "canary"], "limits": {"rps": 250}},
        heartbeat="2026-11-03T11:57:30Z",
    ),
    instance("payments", "pay-a"),
]


def text_of(app: ConsoleApp, selector: str) -> str:
    """The plain text a ``Static`` on the dashboard was last given."""
    content = app.dashboard.query_one(selector, Static).content
    if isinstance(content, Text):
        return content.plain
    if isinstance(content, Syntax):
        return content.code
    return str(content)


MARKED = [
    instance("orders", "orders-1", maintenance="kernel upgrade"),
    instance("orders", "orders-2"),
    instance(
        "weather",
        "wx-7f3a",
        metadata={"source": "micro", "version": "0.3.0", "description": "forecasts"},
    ),
]
"""An instance in maintenance, one not, and a NATS micro service."""


def sse(*events: tuple[str, str, dict[str, Any]]) -> bytes:
    """A ``text/event-stream`` body of (id, kind, data) events, with a keep-alive comment."""
    frames = [": events of router r1\n\n", ": keep-alive\n\n"]
    for event_id, kind, data in events:
        frames.append(f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data)}\n\n")
    return "".join(frames).encode()


def change(kind: str, item: dict[str, Any], previous: str | None = None) -> dict[str, Any]:
    """A change event's ``data``."""
    return {"event": kind, "instance": item, "previous_status": previous}
