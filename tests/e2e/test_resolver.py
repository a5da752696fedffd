"""The SDK resolver against a real router: a local view that follows registrations,
expiry and deregistration, heals a dropped event, and outlives the router."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aegis.sdk import ClientConfig, NoHealthyInstanceError, Resolver, ServiceClient
from aegis.sdk.watch import parse_event
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from tests.support import eventually
from tests.support.procs import NatsServer, RouterProcess, quick_router_process, router_process
from tests.support.wire import raw_request

pytestmark = pytest.mark.e2e

# A short breaker cooldown: these tests are about the resolver catching up, and on a
# loaded machine a router's restart outlasts five failed reloads, which opens the
# breaker for its default 30 s.
FAST = ClientConfig(
    timeout=1.0, retries=2, backoff_base=0.05, backoff_max=0.2, breaker_cooldown=1.0
)


@pytest.fixture
def quick_router(nats_server: NatsServer, tmp_path: Path) -> Iterator[RouterProcess]:
    with quick_router_process(tmp_path, nats_server.url) as process:
        yield process


def ids(resolver: Resolver) -> list[str]:
    return [i.instance_id for i in resolver.instances()]


async def test_the_view_follows_registration_expiry_and_deregistration(
    quick_router: RouterProcess, nats_server: NatsServer, raw_nats: NatsClient
) -> None:
    async with (
        ServiceClient(nats_server.url, FAST) as provider,
        ServiceClient(nats_server.url, FAST) as caller,
    ):
        await provider.register("pay", "p-1", {"zone": "eu-1"})
        resolver = await caller.resolver("pay")
        assert ids(resolver) == ["p-1"]

        await provider.register("pay", "p-2", {"zone": "us-1"})
        await eventually(lambda: ids(resolver) == ["p-1", "p-2"], "p-2 seen")
        assert {resolver.pick().instance_id for _ in range(4)} == {"p-1", "p-2"}

        # Registered without heartbeats: it expires.
        body = {"service_name": "pay", "instance_id": "p-3", "session_id": "s"}
        assert (await raw_request(raw_nats, body))["status"] == 201
        await eventually(lambda: "p-3" in ids(resolver), "p-3 seen")
        await eventually(lambda: "p-3" not in ids(resolver), "p-3 expired", within=5.0)

        await provider.deregister("pay", "p-1")
        await eventually(lambda: ids(resolver) == ["p-2"], "p-1 gone at once", within=2.0)
        assert not resolver.stale


async def test_filters_hold_in_the_resolver_nats_discover_and_rest(
    quick_router: RouterProcess, nats_server: NatsServer, raw_nats: NatsClient
) -> None:
    async with ServiceClient(nats_server.url, FAST) as client:
        await client.register("pay", "p-eu", {"zone": "eu-1", "weight": 2})
        await client.register("pay", "p-us", {"zone": "us-1"})
        eu = await client.resolver("pay", where={"zone": "eu-1"})
        mars = await client.resolver("pay", where={"zone": "mars"})
        assert ids(eu) == ["p-eu"]
        with pytest.raises(NoHealthyInstanceError) as caught:
            mars.pick()
        assert caught.value.reason == "filtered_out"
        assert [i.instance_id for i in await client.discover("pay")] == ["p-eu", "p-us"]
        # The same filter over NATS discover (as any client sends it) and over REST.
        body = {"service_name": "pay", "metadata": {"zone": "eu-1"}}
        reply = await raw_request(raw_nats, body, "ipc.service.discover")
        assert [i["instance_id"] for i in reply["instances"]] == ["p-eu"]  # type: ignore[union-attr]
        rest = await quick_router.get("/api/v1/admin/services/pay/instances?meta.zone=eu-1")
        assert [i["instance_id"] for i in rest.json()["instances"]] == ["p-eu"]
        weighted = await raw_request(
            raw_nats, {**body, "metadata": {"weight": 2}}, "ipc.service.discover"
        )
        assert [i["instance_id"] for i in weighted["instances"]] == ["p-eu"]  # type: ignore[union-attr]


async def test_a_dropped_event_is_detected_and_healed(
    quick_router: RouterProcess, nats_server: NatsServer, raw_nats: NatsClient
) -> None:
    async with ServiceClient(nats_server.url, FAST) as caller:
        body = {"service_name": "pay", "instance_id": "p-1", "session_id": "s"}
        assert (await raw_request(raw_nats, body))["status"] == 201
        resolver = await caller.resolver("pay")
        assert ids(resolver) == ["p-1"]
        # Lose the next event on its way in, as a slow consumer would.
        deliver = resolver._on_message
        dropped: list[str] = []

        async def lossy(msg: Msg) -> None:
            event = parse_event(msg)
            if not dropped and event is not None:
                dropped.append(event.event.value)
                return
            await deliver(msg)

        resolver._on_message = lossy  # type: ignore[method-assign]
        resubscribe = await raw_nats.subscribe("ipc.events.service.pay", cb=lossy)
        events_sub = resolver._subs[0]
        await events_sub.unsubscribe()
        resolver._subs[0] = resubscribe

        # UNHEALTHY (version 2) is dropped; OFFLINE (version 3) shows the gap.
        await eventually(lambda: dropped == ["status_changed"], "UNHEALTHY dropped", within=5)
        assert ids(resolver) == ["p-1"], "the drop left the view wrong for a while"
        await eventually(lambda: resolver.resyncs == 2, "a new snapshot", within=5)
        known = resolver._all["p-1"]
        assert (known.status.value, known.version) == ("OFFLINE", 3)
        assert ids(resolver) == []


async def test_the_last_view_outlives_the_router_and_catches_up_after(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    router = router_process(tmp_path, nats_url=nats_server.url, AEGIS_STORE="jetstream")
    async with router, ServiceClient(nats_server.url, FAST) as client:
        await client.register("pay", "p-1")
        resolver = await client.resolver("pay", resync_every=0.5)
        await asyncio.to_thread(router.stop, signal.SIGKILL)

        await eventually(lambda: resolver.stale, "marked stale", within=10)
        assert resolver.pick().instance_id == "p-1", "picks go on from the last view"
        age = resolver.age
        assert age is not None
        assert age > 0

        await asyncio.to_thread(router.start)
        await eventually(lambda: not resolver.stale, "current again", within=10)
        async with ServiceClient(nats_server.url, FAST) as other:
            await other.register("pay", "p-2")
            await eventually(lambda: ids(resolver) == ["p-1", "p-2"], "p-2 seen")


async def test_callbacks_hear_each_change(
    quick_router: RouterProcess, nats_server: NatsServer
) -> None:
    async with ServiceClient(nats_server.url, FAST) as client:
        resolver = await client.resolver("pay")
        views: list[list[str]] = []
        seen: list[Any] = []

        async def later(view: list[Any]) -> None:
            seen.append(len(view))

        resolver.on_change(lambda view: views.append([i.instance_id for i in view]))
        resolver.on_change(later)
        await client.register("pay", "p-1")
        await client.register("pay", "p-2")
        await eventually(lambda: views == [["p-1"], ["p-1", "p-2"]], "two changes")
        await eventually(lambda: seen == [1, 2], "async callbacks too")


async def test_a_restarted_router_makes_every_resolver_reload(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    router = router_process(tmp_path, nats_url=nats_server.url, AEGIS_STORE="jetstream")
    async with router, ServiceClient(nats_server.url, FAST) as client:
        await client.register("pay", "p-1")
        resolvers = [await client.resolver("pay", resync_every=3600) for _ in range(3)]
        await asyncio.to_thread(router.stop, signal.SIGKILL)
        await asyncio.to_thread(router.start)
        await eventually(
            lambda: [r.resyncs for r in resolvers] == [2, 2, 2], "reloaded", within=5.0
        )
        assert all(ids(r) == ["p-1"] for r in resolvers)
