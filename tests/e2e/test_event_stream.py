"""GET /api/v1/admin/events: change events over HTTP, read by a real streaming client.

A real nats-server, real aegis-router processes, changes made over NATS as a
service would make them, and httpx reading the server-sent events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import msgpack
import nats
import pytest
from nats.aio.client import Client as NatsClient

from tests.support.procs import NatsServer, RouterProcess, router_process
from tests.support.sse import WAIT, SseReader

pytestmark = pytest.mark.e2e

TOKEN = "sse-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EVENTS = "/api/v1/admin/events"
BUCKET = "aegis_registry"  # the JetStream store's (the default): event ids are its revisions


@asynccontextmanager
async def stream(
    router: RouterProcess, *, headers: dict[str, str] | None = None, **params: str
) -> AsyncIterator[SseReader]:
    """An open event stream of ``router`` (with the admin token unless ``headers`` say else)."""
    async with (
        httpx.AsyncClient(base_url=router.http_url, timeout=WAIT) as http,
        http.stream("GET", EVENTS, headers=AUTH | (headers or {}), params=params) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield SseReader(response)


async def register(nc: NatsClient, instance: str, service: str = "billing") -> None:
    body = {"service_name": service, "instance_id": instance, "session_id": f"s-{instance}"}
    reply = await nc.request("ipc.service.register", msgpack.packb(body), timeout=5)
    assert msgpack.unpackb(reply.data)["status"] == 201


async def deregister(nc: NatsClient, instance: str, service: str = "billing") -> None:
    body = {"service_name": service, "instance_id": instance, "session_id": f"s-{instance}"}
    reply = await nc.request("ipc.service.deregister", msgpack.packb(body), timeout=5)
    assert msgpack.unpackb(reply.data)["status"] == 200


@pytest.fixture
async def router(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[RouterProcess]:
    """A router with an admin token and room for two streams."""
    process = router_process(
        tmp_path,
        nats_url=nats_server.url,
        AEGIS_ADMIN_TOKEN=TOKEN,
        AEGIS_MAX_EVENT_STREAMS="2",
        AEGIS_ROUTER_ID="r1",
    )
    async with process:
        yield process


async def test_changes_arrive_in_order_and_a_reconnect_gets_exactly_the_missed_ones(
    router: RouterProcess, raw_nats: NatsClient
) -> None:
    async with stream(router) as events:
        await register(raw_nats, "b-1")
        await register(raw_nats, "b-2")
        await deregister(raw_nats, "b-1")
        seen = [await events.next() for _ in range(3)]
    assert [e.change for e in seen] == [
        ("registered", "b-1"),
        ("registered", "b-2"),
        ("deregistered", "b-1"),
    ]
    # The body is the NATS change event, as JSON.
    assert seen[2].data["previous_status"] == "ONLINE"
    assert seen[2].data["instance"]["status"] == "OFFLINE"  # type: ignore[index]
    # On the JetStream store an id is the bucket and the revision of the change's write.
    assert all(e.id is not None and e.id.startswith(f"{BUCKET}:") for e in seen)

    # Disconnected: these are missed, then replayed on reconnecting.
    await register(raw_nats, "b-3")
    await register(raw_nats, "other-1", service="shop")
    await deregister(raw_nats, "b-2")
    assert seen[-1].id is not None
    async with stream(router, headers={"Last-Event-ID": seen[-1].id}) as events:
        assert (await events.next()).change == ("registered", "b-3")
        assert (await events.next()).change == ("registered", "other-1")
        assert (await events.next()).change == ("deregistered", "b-2")
        await register(raw_nats, "b-4")  # live again, and nothing came twice
        assert (await events.next()).change == ("registered", "b-4")

    # The query parameter resumes too, and `service` keeps only that service's events.
    async with stream(router, service="billing", last_event_id=seen[-1].id) as events:
        assert (await events.next()).change == ("registered", "b-3")
        assert (await events.next()).change == ("deregistered", "b-2")
        assert (await events.next()).change == ("registered", "b-4")


@pytest.mark.parametrize("given", ["some-other-router:12", "r1:1", "garbage"])
async def test_an_id_not_retained_here_gets_a_reset_then_live_events(
    router: RouterProcess, raw_nats: NatsClient, given: str
) -> None:
    await register(raw_nats, "b-1")
    async with stream(router, headers={"Last-Event-ID": given}) as events:
        reset = await events.next()
        assert reset.event == "reset"
        assert reset.data["reason"] in {"unknown_id", "expired"}
        assert "reload" in str(reset.data["message"])
        await register(raw_nats, "b-2")
        assert (await events.next()).change == ("registered", "b-2")
    # The reset's id is a resume point: from it, nothing is missed.
    assert reset.id is not None
    async with stream(router, headers={"Last-Event-ID": reset.id}) as events:
        assert (await events.next()).change == ("registered", "b-2")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}])
async def test_the_admin_token_is_required(router: RouterProcess, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=router.http_url, timeout=WAIT) as http:
        response = await http.get(EVENTS, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHORIZED"


async def test_streams_past_the_bound_get_a_clear_error_until_one_closes(
    router: RouterProcess,
) -> None:
    async with stream(router), stream(router, service="billing"):
        async with httpx.AsyncClient(base_url=router.http_url, timeout=WAIT) as http:
            refused = await http.get(EVENTS, headers=AUTH)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "TOO_MANY_STREAMS"
        assert "AEGIS_MAX_EVENT_STREAMS" in refused.json()["error"]["message"]
        assert int(refused.headers["retry-after"]) > 0
    # The router notices the clients left; then there is room again.
    for _ in range(100):
        try:
            async with stream(router):
                break
        except AssertionError:
            await asyncio.sleep(0.1)
    else:
        pytest.fail("no stream could open after the others closed")
    assert "event_stream_closed" in router.logs()


async def test_each_router_streams_the_changes_every_router_makes(
    nats_server: NatsServer, raw_nats: NatsClient, tmp_path: Path
) -> None:
    one = router_process(tmp_path, nats_url=nats_server.url, name="one", AEGIS_ROUTER_ID="one")
    two = router_process(tmp_path, nats_url=nats_server.url, name="two", AEGIS_ROUTER_ID="two")
    async with one, two, stream(one) as from_one, stream(two) as from_two:
        # The routers answer in one queue group: each registration reaches one of them.
        names = [f"b-{i}" for i in range(8)]
        for name in names:
            await register(raw_nats, name)
        ids = []
        for events in (from_one, from_two):
            got = [await events.next() for _ in names]
            assert sorted(e.change[1] for e in got) == names
            ids.append([(e.id, e.change) for e in got])
        # One order, one numbering: the bucket's revisions, whichever router wrote.
        assert ids[0] == ids[1]
        assert {i.split(":")[0] for i, _ in ids[0] if i} == {BUCKET}


async def test_list_on_one_router_and_follow_on_another_and_resume_across_routers(
    nats_server: NatsServer, raw_nats: NatsClient, tmp_path: Path
) -> None:
    one = router_process(tmp_path, nats_url=nats_server.url, name="one", AEGIS_ROUTER_ID="one")
    two = router_process(tmp_path, nats_url=nats_server.url, name="two", AEGIS_ROUTER_ID="two")
    async with one, two:
        for i in range(4):
            await register(raw_nats, f"a-{i}")
        async with httpx.AsyncClient(base_url=one.http_url, timeout=WAIT) as http:
            listing = (await http.get("/api/v1/admin/instances", headers=AUTH)).json()
        assert len(listing["instances"]) == 4
        version = listing["version"]
        assert version.startswith(f"{BUCKET}:")
        later = [f"b-{i}" for i in range(6)]
        for name in later:
            await register(raw_nats, name)
        # Listed on one, followed on two from that version: exactly the later changes.
        async with stream(two, headers={"Last-Event-ID": version}) as events:
            got = [await events.next() for _ in later]
            assert [e.event for e in got] == ["registered"] * len(later)
            assert sorted(e.change[1] for e in got) == later
            last = got[-1].id
        assert last is not None
        # A stream that reconnects to the other router resumes there: no reset.
        await deregister(raw_nats, "b-0")
        async with stream(one, headers={"Last-Event-ID": last}) as events:
            resumed = await events.next()
            assert resumed.event != "reset", resumed.data
            assert resumed.change == ("deregistered", "b-0")
            await register(raw_nats, "c-0")
            assert (await events.next()).change == ("registered", "c-0")


async def test_a_name_no_service_can_have_is_a_400(router: RouterProcess) -> None:
    async with httpx.AsyncClient(base_url=router.http_url, timeout=WAIT) as http:
        response = await http.get(EVENTS, headers=AUTH, params={"service": "no such/name"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_SERVICE"


async def test_a_router_that_lost_nats_tells_its_streams_to_reload(
    router: RouterProcess, nats_server: NatsServer
) -> None:
    async with stream(router) as events:
        # Other routers' changes published meanwhile never reach this one.
        await asyncio.to_thread(nats_server.stop)
        await asyncio.to_thread(nats_server.start)
        reset = await events.next(timeout=30)
        assert reset.event == "reset"
        assert reset.data["reason"] == "nats_reconnected"
        nc = await nats.connect(nats_server.url)
        try:
            # The store's bucket watch may restart too (its consumer went with the
            # server): another reset, after which the stream is live again.
            for attempt in range(20):
                await register(nc, f"b-{attempt}")
                got = await events.next(timeout=30)
                if got.event != "reset":
                    break
                assert got.data["reason"] == "kv_watch_restarted"
            assert got.change[0] == "registered"
        finally:
            await nc.close()
