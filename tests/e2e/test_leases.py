"""Leases end to end: two real routers over one JetStream bucket split the leases,
steady heartbeats write nothing, and a router killed with SIGKILL hands its
leases over without a live instance ever going UNHEALTHY.

Timings are shortened by configuration; the membership's own timing (a put a
second, gone after 3 s) is the product's.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import msgpack
import nats
import pytest
from aegis.sdk import ClientConfig, ServiceClient
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from tests.support import eventually
from tests.support.procs import NatsServer, RouterProcess, router_process
from tests.support.prometheus import sample_value
from tests.support.wire import raw_request

pytestmark = [pytest.mark.e2e, pytest.mark.one_python]

HEARTBEAT, UNHEALTHY, OFFLINE, REMOVE = 0.5, 4.0, 8.0, 60.0
TIMINGS = {
    "AEGIS_HEARTBEAT_INTERVAL": str(HEARTBEAT),
    "AEGIS_UNHEALTHY_AFTER": str(UNHEALTHY),
    "AEGIS_OFFLINE_AFTER": str(OFFLINE),
    "AEGIS_REMOVE_AFTER": str(REMOVE),
}
# The stated bound for a dead instance under a dead router: UNHEALTHY within
# unhealthy_after + 5 s of both dying (docs/architecture.md).
TAKEOVER_BOUND = UNHEALTHY + 5.0
FAST = ClientConfig(timeout=1.0, retries=5, backoff_base=0.05, backoff_max=0.5)
INSTANCES = 200


def make_router(tmp_path: Path, nats_server: NatsServer, router_id: str) -> RouterProcess:
    return router_process(
        tmp_path,
        nats_url=nats_server.url,
        name=router_id,
        AEGIS_STORE="jetstream",
        AEGIS_ROUTER_ID=router_id,
        **TIMINGS,
    )


@pytest.fixture
def pair(nats_server: NatsServer, tmp_path: Path) -> Iterator[tuple[RouterProcess, RouterProcess]]:
    """Routers alpha and beta on one NATS server, sharing the registry bucket."""
    with (
        make_router(tmp_path, nats_server, "alpha") as alpha,
        make_router(tmp_path, nats_server, "beta") as beta,
    ):
        yield alpha, beta


async def metric(router: RouterProcess, name: str, **labels: str) -> float:
    text = (await router.get("/metrics")).text
    return sample_value(text, name, **labels) or 0.0


async def both_see_two(alpha: RouterProcess, beta: RouterProcess) -> bool:
    return [await metric(r, "aegis_routers") for r in (alpha, beta)] == [2.0, 2.0]


@pytest.fixture
async def status_changes(raw_nats: NatsClient) -> AsyncIterator[list[tuple[float, dict[str, Any]]]]:
    """Every change event of every service, with the moment it arrived."""
    seen: list[tuple[float, dict[str, Any]]] = []

    async def keep(msg: Msg) -> None:
        seen.append((time.monotonic(), msgpack.unpackb(msg.data)))

    sub = await raw_nats.subscribe("ipc.events.service.*", cb=keep)
    yield seen
    await sub.unsubscribe()


async def register_fleet(client: ServiceClient, service: str, count: int) -> None:
    for n in range(count):
        await client.register(service, f"{service}-{n}", {"n": n})


async def test_two_routers_split_the_leases_and_the_heartbeat_work(
    pair: tuple[RouterProcess, RouterProcess],
    nats_server: NatsServer,
    raw_nats: NatsClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "aegis.sdk.heartbeats")
    alpha, beta = pair
    await eventually(lambda: both_see_two(alpha, beta), "both routers see two routers")
    async with ServiceClient(nats_server.url, FAST) as client:
        await register_fleet(client, "split", INSTANCES)

        async def held() -> list[float]:
            return [await metric(r, "aegis_leases_held") for r in (alpha, beta)]

        async def all_held_once() -> bool:
            return sum(await held()) == INSTANCES

        await eventually(all_held_once, "every lease held by exactly one router")
        shares = [h / INSTANCES for h in await held()]
        assert all(0.4 <= s <= 0.6 for s in shares), shares

        # The SDK sends each heartbeat to its holder: the work splits as the leases do.
        async def answered() -> list[float]:
            return [
                await metric(r, "aegis_requests_total", kind="heartbeat", result="ok")
                for r in (alpha, beta)
            ]

        before = await answered()
        await asyncio.sleep(6 * HEARTBEAT)
        work = [a - b for a, b in zip(await answered(), before, strict=True)]
        assert sum(work) >= 4 * INSTANCES, work
        assert max(work) / sum(work) <= 0.6, f"one router did {work}"
        assert all(
            reg.heartbeat_subject in ("ipc.router.alpha.heartbeat", "ipc.router.beta.heartbeat")
            for reg in client.instances.values()
        )
        # Straight to the holder: a heartbeat reaches a router that passes it on only
        # when the SDK's direct try got no reply within half its time (a loaded machine)
        # and it fell back to the shared subject; those are few.
        forwarded = [
            await metric(r, "aegis_heartbeats_forwarded_total", result="ok") for r in (alpha, beta)
        ]
        fallbacks = [
            r for r in caplog.records if getattr(r, "aegis_event", "") == "heartbeat_fallback"
        ]
        assert sum(forwarded) <= len(fallbacks), "SDK heartbeats go straight to the holder"
        assert len(fallbacks) * 20 <= sum(await answered()), f"{len(fallbacks)} fell back"

    # A wire v1 client knows only the shared subjects; whichever router it
    # reaches, the reply is right (the holder's, passed on when needed).
    body = {"service_name": "v1", "instance_id": "v1-0", "session_id": "v1-session"}
    assert (await raw_request(raw_nats, body))["status"] == 201
    replies = [await raw_request(raw_nats, body, "ipc.service.heartbeat") for _ in range(20)]
    assert {r["status"] for r in replies} == {200}
    assert {r["heartbeat_subject"] for r in replies} == {replies[0]["heartbeat_subject"]}
    intruder = {**body, "session_id": "someone-else"}
    assert (await raw_request(raw_nats, intruder, "ipc.service.heartbeat"))["status"] == 403


async def test_sigkill_of_a_router_hands_its_leases_over_and_no_live_instance_suffers(
    pair: tuple[RouterProcess, RouterProcess],
    nats_server: NatsServer,
    status_changes: list[tuple[float, dict[str, Any]]],
) -> None:
    alpha, beta = pair
    await eventually(lambda: both_see_two(alpha, beta), "both routers see two routers")
    async with ServiceClient(nats_server.url, FAST) as client:
        await register_fleet(client, "kill", INSTANCES)
        alpha_held = await metric(alpha, "aegis_leases_held")
        assert alpha_held > 0.3 * INSTANCES

        alpha.stop(signal.SIGKILL)

        async def beta_holds_all() -> bool:
            return await metric(beta, "aegis_leases_held") == INSTANCES

        await eventually(beta_holds_all, "beta holds every lease", within=10.0)
        # Past the point where an instance not heard since the kill would be UNHEALTHY.
        await asyncio.sleep(UNHEALTHY + 2.0)
        listing = (await beta.get("/api/v1/admin/services/kill")).json()["instances"]
        assert {i["status"] for i in listing} == {"ONLINE"}
        assert len(listing) == INSTANCES
        changed = [e for _, e in status_changes if e["event"] != "registered"]
        assert changed == [], "no live instance ever left ONLINE"
        assert all(
            reg.heartbeat_subject == "ipc.router.beta.heartbeat"
            for reg in client.instances.values()
        )
        assert "router_lost" in beta.logs()


async def test_a_dead_instance_under_a_dead_router_still_expires_within_the_bound(
    pair: tuple[RouterProcess, RouterProcess],
    raw_nats: NatsClient,
    status_changes: list[tuple[float, dict[str, Any]]],
) -> None:
    alpha, beta = pair
    await eventually(lambda: both_see_two(alpha, beta), "both routers see two routers")
    # An instance whose lease alpha holds, heartbeating through its holder's subject.
    n = 0
    while True:
        body = {"service_name": "dead", "instance_id": f"d-{n}", "session_id": "s"}
        reply = await raw_request(raw_nats, body)
        if reply["heartbeat_subject"] == "ipc.router.alpha.heartbeat":
            break
        n += 1
    for _ in range(4):
        await asyncio.sleep(HEARTBEAT)
        assert (await raw_request(raw_nats, body, "ipc.router.alpha.heartbeat"))["status"] == 200

    # The instance and its router die together.
    killed_at = time.monotonic()
    alpha.stop(signal.SIGKILL)

    def unhealthy() -> list[float]:
        return [
            at
            for at, e in status_changes
            if e["instance"]["instance_id"] == body["instance_id"]
            and e["instance"]["status"] == "UNHEALTHY"
        ]

    await eventually(lambda: bool(unhealthy()), "UNHEALTHY", within=TAKEOVER_BOUND + 5.0)
    took = unhealthy()[0] - killed_at
    # Counted from alpha's last membership refresh (up to 1 s before the kill):
    # its in-memory contacts died with it.
    assert UNHEALTHY - 1.5 <= took <= TAKEOVER_BOUND, f"UNHEALTHY {took:.2f}s after the kill"


async def test_a_restarted_router_rejoins_and_takes_its_share_again(
    pair: tuple[RouterProcess, RouterProcess], nats_server: NatsServer
) -> None:
    alpha, beta = pair
    await eventually(lambda: both_see_two(alpha, beta), "both routers see two routers")
    async with ServiceClient(nats_server.url, FAST) as client:
        await register_fleet(client, "back", 100)
        await asyncio.to_thread(alpha.stop)  # a clean stop says goodbye: no TTL wait

        async def beta_holds(count: float) -> bool:
            return await metric(beta, "aegis_leases_held") == count

        await eventually(lambda: beta_holds(100), "beta holds every lease")
        await asyncio.to_thread(alpha.start)

        async def split_again() -> bool:
            held = [await metric(r, "aegis_leases_held") for r in (alpha, beta)]
            return sum(held) == 100 and min(held) >= 30

        await eventually(split_again, "alpha holds its share again", within=10.0)
        await asyncio.sleep(UNHEALTHY)
        listing = (await beta.get("/api/v1/admin/services/back")).json()["instances"]
        assert {i["status"] for i in listing} == {"ONLINE"}


async def kv_last_sequence(nc: NatsClient) -> int:
    info = await nc.jetstream().stream_info("KV_aegis_registry")
    return int(info.state.last_seq)


async def test_steady_heartbeats_write_nothing_to_the_store(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """1,000 heartbeats from a wire v1 client (shared subjects only), counted against
    the KV stream's own sequence. Sent faster than the interval: the store refresh
    is due by time (lease_refresh, >= 30 s), so pace cannot add writes."""
    with make_router(tmp_path, nats_server, "solo") as router:
        nc = await nats.connect(nats_server.url)
        try:
            bodies = [
                {"service_name": "steady", "instance_id": f"s-{n}", "session_id": f"sess-{n}"}
                for n in range(100)
            ]
            for body in bodies:
                assert (await raw_request(nc, body))["status"] == 201
            writes_before = await metric(router, "aegis_store_writes_total", cause="refresh")
            sequence_before = await kv_last_sequence(nc)
            for _ in range(10):
                replies = await asyncio.gather(
                    *(raw_request(nc, b, "ipc.service.heartbeat") for b in bodies)
                )
                assert {r["status"] for r in replies} == {200}
                await asyncio.sleep(0.1)
            written = await kv_last_sequence(nc) - sequence_before
            assert written / 1000 <= 0.05, f"{written} store writes for 1,000 heartbeats"
            assert written == 0
            refreshes = await metric(router, "aegis_store_writes_total", cause="refresh")
            assert refreshes == writes_before
        finally:
            await nc.close()
