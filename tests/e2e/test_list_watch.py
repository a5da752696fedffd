"""List + watch over the REST API: page with a cursor while instances come and go, then
follow the event stream from the listing's version, and end with exactly the registry.

A real nats-server, a real aegis-router process (each store), changes made over
NATS as services make them, httpx paging and reading the server-sent events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
from nats.aio.client import Client as NatsClient

from tests.support.procs import NatsServer, RouterProcess, router_process
from tests.support.sse import WAIT, SseReader

pytestmark = pytest.mark.e2e

ADMIN = "/api/v1/admin"
SEEDED = 150  # instances before the listing starts
REQUEST_WAIT = 5.0
PAGE = 25

View = dict[tuple[str, str], tuple[str, int]]  # key -> (status, version)


@pytest.fixture(params=["memory", "jetstream"])
async def router(
    request: pytest.FixtureRequest, nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[RouterProcess]:
    process = router_process(
        tmp_path, nats_url=nats_server.url, AEGIS_STORE=request.param, AEGIS_ROUTER_ID="lw"
    )
    async with process:
        yield process


async def call(nc: NatsClient, verb: str, service: str, instance: str) -> None:
    body = {"service_name": service, "instance_id": instance, "session_id": f"s-{instance}"}
    # nats-py's default 0.5 s is short for a burst of them on a loaded CI machine; this
    # test is about what the listing and the stream show, not about latency.
    msg = await nc.request(f"ipc.service.{verb}", msgpack.packb(body), timeout=REQUEST_WAIT)
    reply = msgpack.unpackb(msg.data)
    assert reply["ok"], reply


def service_of(i: int) -> str:
    return "fleet" if i % 3 else "other"


async def churn(nc: NatsClient, stop: asyncio.Event) -> int:
    """Register new instances and deregister seeded ones until ``stop``; how many rounds."""
    rounds = 0
    while not stop.is_set() and rounds < SEEDED:
        await call(nc, "register", service_of(rounds), f"new-{rounds:04d}")
        await call(nc, "deregister", service_of(rounds), f"i-{rounds:04d}")
        rounds += 1
        await asyncio.sleep(0.01)
    return rounds


def viewed(instances: list[dict[str, Any]]) -> View:
    return {(i["service_name"], i["instance_id"]): (i["status"], i["version"]) for i in instances}


def sequence(event_id: str) -> int:
    return int(event_id.rpartition(":")[2])


async def follow(
    http: httpx.AsyncClient, view: View, since: str, until: str, *, strict: bool
) -> int:
    """Apply the events after ``since`` up to ``until`` to ``view``; how many were applied.

    Each instance's ``version`` is one more with each of its change events: an event
    may never skip one (a gap); ``strict``: nor repeat one the view holds (a duplicate).
    """
    applied, last = 0, sequence(since)
    headers = {"Last-Event-ID": since}
    async with http.stream("GET", f"{ADMIN}/events", headers=headers) as response:
        assert response.status_code == 200
        events = SseReader(response)
        while last < sequence(until):
            event = await events.next()
            assert event.event != "reset", event.data
            assert event.id is not None
            assert sequence(event.id) > last  # in order, none twice
            last = sequence(event.id)
            if last > sequence(until):
                break
            instance: dict[str, Any] = event.data["instance"]  # type: ignore[assignment]
            key = (instance["service_name"], instance["instance_id"])
            held = view.get(key, ("", 0))[1]
            if strict or instance["version"] > held:
                assert instance["version"] == held + 1, (event, held)
            if event.event == "removed":
                view.pop(key, None)
            else:
                view[key] = (instance["status"], instance["version"])
            applied += 1
    return applied


async def test_pages_then_the_stream_from_their_version_give_exactly_the_registry(
    router: RouterProcess, raw_nats: NatsClient
) -> None:
    await asyncio.gather(
        *(call(raw_nats, "register", service_of(i), f"i-{i:04d}") for i in range(SEEDED))
    )
    async with httpx.AsyncClient(base_url=router.http_url, timeout=WAIT) as http:
        stop = asyncio.Event()
        changes = asyncio.create_task(churn(raw_nats, stop))
        await asyncio.sleep(0.1)

        # One listing in one page, read while things change: the stream after its
        # version holds each change it does not, and none it does.
        whole = (await http.get(f"{ADMIN}/instances")).json()
        single, single_version = viewed(whole["instances"]), whole["version"]
        assert whole["next_cursor"] is None
        assert len(single) == whole["total"]

        # Pages, read while things change: each page as it is when asked for.
        view: View = {}
        first_version, cursor, pages = None, None, 0
        while True:
            params: dict[str, Any] = {"limit": PAGE} | ({"cursor": cursor} if cursor else {})
            response = await http.get(f"{ADMIN}/instances", params=params)
            assert response.status_code == 200
            body = response.json()
            assert len(body["instances"]) <= PAGE
            assert response.headers["x-aegis-version"] == body["version"]
            first_version = first_version or body["version"]
            page = viewed(body["instances"])
            assert not page.keys() & view.keys()  # no instance on two pages
            view |= page
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
            await asyncio.sleep(0.03)
        stop.set()
        rounds = await changes
        assert rounds > 5, "the changes did not overlap the pages"
        assert pages >= SEEDED // PAGE

        # The registry now, and the version it is at.
        final = await http.get(f"{ADMIN}/instances")
        registry, final_version = viewed(final.json()["instances"]), final.json()["version"]

        # From the pages' first version: every event applied in order (each carries its
        # instance whole), some already shown by a later page, none missed.
        assert await follow(http, view, first_version, final_version, strict=False) > 0
        assert view == registry
        # From the single listing's version: exactly the changes after it.
        assert await follow(http, single, single_version, final_version, strict=True) > 0
        assert single == registry

        # Unchanged since: 304 with the same tag and version.
        tag = final.headers["etag"]
        again = await http.get(f"{ADMIN}/instances", headers={"If-None-Match": tag})
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["x-aegis-version"] == final_version
