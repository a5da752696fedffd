"""High availability: several routers over a 3-node JetStream cluster, nothing lost."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import msgpack
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from tests.support import eventually
from tests.support.procs import NatsServer, RouterProcess, nats_cluster, router_process
from tests.support.wire import raw_request

pytestmark = [pytest.mark.e2e, pytest.mark.one_python]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[NatsServer]]:
    nodes = nats_cluster(tmp_path / "cluster")
    for node in nodes:
        node.start()
    yield nodes
    for node in nodes:
        node.stop()


@pytest.fixture
def routers(cluster: list[NatsServer], tmp_path: Path) -> Iterator[list[RouterProcess]]:
    """Two routers on two nodes, sharing a bucket kept on all three."""

    def on(node: NatsServer, name: str) -> RouterProcess:
        return router_process(
            tmp_path, nats_url=node.url, name=name, AEGIS_STORE="jetstream", AEGIS_KV_REPLICAS="3"
        )

    with on(cluster[0], "router-a") as router_a, on(cluster[1], "router-b") as router_b:
        yield [router_a, router_b]


async def listed(router: RouterProcess) -> set[str]:
    body = (await router.get("/api/v1/admin/instances")).json()
    return {i["instance_id"] for i in body["instances"]}


def all_list(expected: set[str], *routers: RouterProcess) -> Callable[[], Awaitable[bool]]:
    """A check for ``eventually``: each of ``routers`` lists exactly ``expected``."""

    async def check() -> bool:
        return [await listed(router) for router in routers] == [expected] * len(routers)

    return check


def created_a_sentinel(router: RouterProcess) -> bool:
    """The router's log shows it registered one of the sentinel instances."""
    lines = [json.loads(line) for line in router.logs().splitlines() if line.startswith("{")]
    return any(
        e["event"] == "instance_registered" and e["instance"].startswith("sentinel-") for e in lines
    )


def published(events: list[bytes]) -> list[str]:
    """The instance ids of change events, in the order they arrived."""
    return [msgpack.unpackb(e)["instance"]["instance_id"] for e in events]


async def store_writable(nc: NatsClient) -> bool:
    """A registration (of the probe "p") is accepted."""
    probe = {"service_name": "probe", "instance_id": "p", "session_id": "probe"}
    return (await raw_request(nc, probe))["status"] in (200, 201)


async def register_all(nc: NatsClient, ids: list[str]) -> list[dict[str, object]]:
    return await asyncio.gather(
        *(
            raw_request(nc, {"service_name": "ha", "instance_id": i, "session_id": f"s-{i}"})
            for i in ids
        )
    )


async def test_routers_share_the_registry_and_survive_losing_a_router_and_a_node(
    cluster: list[NatsServer], routers: list[RouterProcess]
) -> None:
    router_a, router_b = routers
    nc = await nats.connect(cluster[2].url)
    try:
        info = await nc.jetstream().stream_info("KV_aegis_registry")
        assert info.config.num_replicas == 3
        assert info.cluster is not None
        assert len(info.cluster.replicas or []) == 2, "a leader and two followers"
        events: list[bytes] = []

        async def collect(msg: Msg) -> None:
            events.append(msg.data)

        await nc.subscribe("ipc.events.service.ha", cb=collect)
        await nc.flush()
        first = [f"i-{n}" for n in range(40)]
        replies = await register_all(nc, first)
        assert {r["status"] for r in replies} == {201}
        # The queue group spread the work: both routers registered some.
        assert '"event":"instance_registered"' in router_a.logs()
        assert '"event":"instance_registered"' in router_b.logs()
        await eventually(all_list(set(first), router_a, router_b), "both list all")

        # Each change published once, proved without waiting for duplicates: a router
        # publishes on its own NATS connection, and NATS keeps one connection's
        # messages in order, so once an event each router published after the real
        # ones is here, so is any duplicate either of them sent. The queue group
        # decides which router registers what: register sentinels until each router's
        # log shows it created one.
        sentinels: list[str] = []

        async def each_router_created_a_sentinel() -> bool:
            sentinels.append(f"sentinel-{len(sentinels)}")
            body = {"service_name": "ha", "instance_id": sentinels[-1], "session_id": "sentinel"}
            assert (await raw_request(nc, body))["status"] == 201
            return all(created_a_sentinel(router) for router in routers)

        await eventually(each_router_created_a_sentinel, "a sentinel created by each router")
        await eventually(lambda: set(sentinels) <= set(published(events)), "the sentinels")
        real = [i for i in published(events) if not i.startswith("sentinel-")]
        assert sorted(real) == sorted(first), "each change published once"

        await asyncio.to_thread(router_b.stop, signal.SIGKILL)
        second = [f"j-{n}" for n in range(20)]
        replies = await register_all(nc, second)
        assert {r["status"] for r in replies} == {201}, "router A alone answers everything"
        await eventually(all_list({*first, *second, *sentinels}, router_a), "A lists all")

        await asyncio.to_thread(cluster[0].stop)  # the node router A is connected to
        await eventually(lambda: '"nats_reconnected"' in router_a.logs(), "A reconnected")
        # The bucket's leader may have died with the node: until the two left
        # elect another, writes are answered 503 STORE_UNAVAILABLE (the SDK
        # retries those); then everything works again.
        await eventually(lambda: store_writable(nc), "store writable again", within=30)
        third = [f"k-{n}" for n in range(10)]
        replies = await register_all(nc, third)
        assert {r["status"] for r in replies} == {201}
        everything = {*first, *second, *sentinels, *third, "p"}
        await eventually(all_list(everything, router_a), "nothing lost")
    finally:
        await nc.close()


async def test_100_racing_registrations_through_two_routers_have_one_winner(
    cluster: list[NatsServer], routers: list[RouterProcess]
) -> None:
    nc = await nats.connect(cluster[2].url)
    try:
        bodies = [
            {"service_name": "race", "instance_id": "only-one", "session_id": secrets.token_hex(8)}
            for _ in range(100)
        ]
        replies = await asyncio.gather(*(raw_request(nc, b) for b in bodies))
    finally:
        await nc.close()

    statuses = sorted(r["status"] for r in replies)  # type: ignore[type-var]
    assert statuses == [201] + [409] * 99
    winner = next(r for r in replies if r["status"] == 201)
    losers = [r for r in replies if r["status"] == 409]
    assert all(r["existing"] == winner["instance"] for r in losers)


async def test_restarted_router_keeps_every_registration_with_status_and_session(
    nats_server: NatsServer, raw_nats: NatsClient, tmp_path: Path
) -> None:
    durable = router_process(tmp_path, nats_url=nats_server.url, AEGIS_STORE="jetstream")
    async with durable as router:
        owners = {f"p-{n}": f"session-{n}" for n in range(5)}
        for instance_id, session in owners.items():
            await raw_request(
                raw_nats,
                {"service_name": "durable", "instance_id": instance_id, "session_id": session},
            )
        await raw_request(
            raw_nats,
            {"service_name": "durable", "instance_id": "p-0", "session_id": "session-0"},
            "ipc.service.deregister",
        )
        before = (await router.get("/api/v1/admin/services/durable")).json()
        await asyncio.to_thread(router.stop)
        await asyncio.to_thread(router.start)
        after = (await router.get("/api/v1/admin/services/durable")).json()
        owner = await raw_request(
            raw_nats,
            {"service_name": "durable", "instance_id": "p-1", "session_id": "session-1"},
            "ipc.service.heartbeat",
        )
        intruder = await raw_request(
            raw_nats,
            {"service_name": "durable", "instance_id": "p-2", "session_id": "session-1"},
            "ipc.service.heartbeat",
        )

    assert after == before
    assert {i["instance_id"]: i["status"] for i in after["instances"]} == {
        "p-0": "OFFLINE",
        **dict.fromkeys(["p-1", "p-2", "p-3", "p-4"], "ONLINE"),
    }
    assert owner["status"] == 200, "the session survived the restart"
    assert intruder["status"] == 403
