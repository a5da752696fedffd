"""Leases end to end: two real routers over one JetStream bucket split the leases,
steady heartbeats write nothing, and a router killed with SIGKILL, or cut from
NATS through a proxy while its REST API stays up, hands its leases over without
a live instance ever going UNHEALTHY.

Timings are shortened by configuration; the membership's own timing (a put a
second, gone after 3 s) is the product's.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import signal
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import msgpack
import nats
import pytest
from aegis.sdk import ClientConfig, RegisteredInstance, ServiceClient
from aegis.wire.messages import service_heartbeat_subject
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from tests.support import eventually
from tests.support.procs import NatsServer, RouterProcess, router_process
from tests.support.prometheus import sample_value
from tests.support.proxy import Link, ProxyHub
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
# A router that loses NATS is counted gone 3 s after its last membership put, by a
# check that runs each second: its leases are taken over within 4 s of that put
# (docs/architecture.md, "Failure cases and their bounds"); the check comes after
# the router's own put, a few milliseconds, more on a loaded machine.
MEMBER_TTL = 3.0
GONE_BOUND = MEMBER_TTL + 1.0
TIMER_SLACK = 0.5
MEMBERS_BUCKET = "aegis_registry_routers"
FAST = ClientConfig(timeout=1.0, retries=5, backoff_base=0.05, backoff_max=0.5)
INSTANCES = 200
CUT_FLEET = 100
ALPHA, BETA = "ipc.router.alpha.heartbeat", "ipc.router.beta.heartbeat"


def sdk_holder(reg: RegisteredInstance) -> str | None:
    """The router an SDK instance heartbeats to: the SDK is on the per-service subjects,
    whose replies name ipc.svc.<service>.heartbeat.<router>."""
    for router_id in ("alpha", "beta"):
        if reg.heartbeat_subject == service_heartbeat_subject(reg.service_name, router_id):
            return router_id
    return None


def make_router(tmp_path: Path, nats_url: str, router_id: str) -> RouterProcess:
    return router_process(
        tmp_path,
        nats_url=nats_url,
        name=router_id,
        AEGIS_STORE="jetstream",
        AEGIS_ROUTER_ID=router_id,
        **TIMINGS,
    )


@pytest.fixture
def pair(nats_server: NatsServer, tmp_path: Path) -> Iterator[tuple[RouterProcess, RouterProcess]]:
    """Routers alpha and beta on one NATS server, sharing the registry bucket."""
    with (
        make_router(tmp_path, nats_server.url, "alpha") as alpha,
        make_router(tmp_path, nats_server.url, "beta") as beta,
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


async def register_held_by(nc: NatsClient, service: str, router_id: str) -> dict[str, Any]:
    """Register (raw wire) instances of ``service`` until one's lease is ``router_id``'s;
    its request body (the others stay registered, and silent)."""
    for n in itertools.count():
        body = {"service_name": service, "instance_id": f"{service}-{n}", "session_id": "s"}
        reply = await raw_request(nc, body)
        if reply["heartbeat_subject"] == f"ipc.router.{router_id}.heartbeat":
            return body
    raise AssertionError("unreachable")


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
        assert all(sdk_holder(reg) in ("alpha", "beta") for reg in client.instances.values())
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
        assert all(sdk_holder(reg) == "beta" for reg in client.instances.values())
        assert "router_lost" in beta.logs()


async def test_a_dead_instance_under_a_dead_router_still_expires_within_the_bound(
    pair: tuple[RouterProcess, RouterProcess],
    raw_nats: NatsClient,
    status_changes: list[tuple[float, dict[str, Any]]],
) -> None:
    alpha, beta = pair
    await eventually(lambda: both_see_two(alpha, beta), "both routers see two routers")
    # An instance whose lease alpha holds, heartbeating through its holder's subject.
    body = await register_held_by(raw_nats, "dead", "alpha")
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
    # Counted from alpha's last membership refresh (up to 1 s before the kill) plus
    # the 3 s alpha could have gone on answering from memory had it only been cut
    # off: its in-memory contacts died with it.
    earliest = UNHEALTHY + MEMBER_TTL - 1.5
    assert earliest <= took <= TAKEOVER_BOUND, f"UNHEALTHY {took:.2f}s after the kill"


@pytest.fixture
def cut_pair(
    nats_server: NatsServer, proxies: ProxyHub, tmp_path: Path
) -> Iterator[tuple[RouterProcess, RouterProcess, Link]]:
    """alpha on the NATS server, beta through a proxy link the test can cut (both ways)."""
    link = proxies.add("beta>nats", node="nats", owner="beta", upstream=nats_server.port)
    with (
        make_router(tmp_path, nats_server.url, "alpha") as alpha,
        make_router(tmp_path, link.url, "beta") as beta,
    ):
        yield alpha, beta, link


async def all_online(router: RouterProcess, service: str, count: int) -> None:
    """``router`` lists ``count`` instances of ``service``, every one ONLINE."""
    listing = (await router.get(f"/api/v1/admin/services/{service}")).json()["instances"]
    assert len(listing) == count
    assert [f"{i['instance_id']} {i['status']}" for i in listing if i["status"] != "ONLINE"] == []


def left_online(changes: list[tuple[float, dict[str, Any]]], service: str) -> list[str]:
    """The change events of ``service`` other than registrations: "instance status"."""
    return [
        f"{e['instance']['instance_id']} {e['instance']['status']}"
        for _, e in changes
        if e["instance"]["service_name"] == service and e["event"] != "registered"
    ]


def logged_at(router: RouterProcess, event: str) -> list[float]:
    """When ``router`` logged ``event`` (epoch seconds), oldest first."""
    lines = (json.loads(line) for line in router.logs().splitlines() if line.startswith("{"))
    return [
        datetime.fromisoformat(e["timestamp"]).timestamp() for e in lines if e["event"] == event
    ]


async def keep_beating(nc: NatsClient, body: dict[str, Any], subject: str) -> None:
    """Heartbeat ``body`` on ``subject`` each interval until cancelled."""
    while True:
        await asyncio.sleep(HEARTBEAT)
        assert (await raw_request(nc, body, subject))["status"] == 200


async def test_a_router_cut_from_nats_hands_its_leases_over_and_no_heartbeating_instance_suffers(
    cut_pair: tuple[RouterProcess, RouterProcess, Link],
    nats_server: NatsServer,
    proxies: ProxyHub,
    raw_nats: NatsClient,
    status_changes: list[tuple[float, dict[str, Any]]],
) -> None:
    """beta loses NATS (its link reset both ways) while its REST API stays up and its
    instances, on NATS directly, keep heartbeating: alpha takes every lease over within
    the stated bound, and no heartbeating instance leaves ONLINE, nor when beta is back."""
    alpha, beta, link = cut_pair
    await eventually(lambda: both_see_two(alpha, beta), "both routers see two routers")
    # A control: an instance under beta that stops heartbeating at the cut must go
    # UNHEALTHY, so alpha does judge the partitions it took over.
    control = await register_held_by(raw_nats, "control", "beta")
    beating = asyncio.create_task(keep_beating(raw_nats, control, BETA))
    async with ServiceClient(nats_server.url, FAST) as client:
        await register_fleet(client, "cut", CUT_FLEET)

        async def alpha_lists_the_fleet() -> bool:
            listing = (await alpha.get("/api/v1/admin/services/cut")).json()["instances"]
            return len(listing) == CUT_FLEET

        await eventually(alpha_lists_the_fleet, "alpha lists the fleet")
        registered = len((await alpha.get("/api/v1/admin/instances")).json()["instances"])

        async def held() -> list[float]:
            return [await metric(r, "aegis_leases_held") for r in (alpha, beta)]

        async def all_held_once() -> bool:
            return sum(await held()) == registered

        await eventually(all_held_once, "every lease held by exactly one router")
        beta_before = (await held())[1]
        assert beta_before >= 0.3 * registered, f"beta holds {beta_before} of {registered}"
        on_beta = [key for key, reg in client.instances.items() if sdk_holder(reg) == "beta"]
        assert len(on_beta) >= 0.3 * CUT_FLEET, "the SDK heartbeats beta's share to beta"

        beating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beating
        await asyncio.to_thread(proxies.cut, [link])
        cut_at, cut_wall = time.monotonic(), time.time()

        async def alpha_holds_all() -> bool:
            return await metric(alpha, "aegis_leases_held") == registered

        await eventually(alpha_holds_all, "alpha holds every lease", GONE_BOUND + 5.0)
        # Counted from beta's last membership put that got through (at most a second
        # before the cut): the bound holds from the cut too, and a late takeover shows.
        members = await raw_nats.jetstream().key_value(MEMBERS_BUCKET)
        beta_entry = (await members.get("beta")).value
        assert beta_entry is not None
        last_put = msgpack.unpackb(beta_entry)["at"]
        [lost_at] = logged_at(alpha, "router_lost")
        silent, after_cut = lost_at - last_put, lost_at - cut_wall
        said = f"beta counted gone {silent:.2f}s after its last put, {after_cut:.2f}s after the cut"
        assert MEMBER_TTL < silent <= GONE_BOUND + TIMER_SLACK, said
        assert last_put <= cut_wall
        assert await metric(alpha, "aegis_routers") == 1.0
        # beta still serves its REST API, and says it cannot take traffic.
        assert (await beta.get("/healthz")).status_code == 200
        assert (await beta.get("/readyz")).status_code == 503

        def control_unhealthy() -> list[float]:
            return [
                at
                for at, e in status_changes
                if e["instance"]["instance_id"] == control["instance_id"]
                and e["instance"]["status"] == "UNHEALTHY"
            ]

        await eventually(control_unhealthy, "the control UNHEALTHY", TAKEOVER_BOUND)
        assert control_unhealthy()[0] - cut_at <= TAKEOVER_BOUND
        # A fleet instance alpha had not heard since the cut would be UNHEALTHY by now
        # too: its deadline is the control's, give or take a sweep tick.
        await asyncio.sleep(1.0 + HEARTBEAT)
        await all_online(alpha, "cut", CUT_FLEET)
        assert left_online(status_changes, "cut") == [], "no live instance left ONLINE"
        assert all(sdk_holder(reg) == "alpha" for reg in client.instances.values())

        # Healed once every contact beta knows is older than unhealthy_after (alpha
        # keeps steady ones in memory): beta must count its share alive from when it
        # hears again, not judge it on what it knew. Heartbeats reach it again
        # (alpha forwards them), and the SDK follows the replies back to it.
        await asyncio.sleep(cut_at + GONE_BOUND + UNHEALTHY + 1.0 - time.monotonic())
        await asyncio.to_thread(proxies.restore, [link])

        async def beta_holds_its_share() -> bool:
            # beta never stopped counting its share as its own: alpha's view says it is back.
            return await held() == [registered - beta_before, beta_before]

        await eventually(beta_holds_its_share, "beta holds its share again", within=10.0)
        await eventually(
            lambda: all(sdk_holder(client.instances[key]) == "beta" for key in on_beta),
            "beta's share heartbeats beta again",
        )
        # Past the deadline of an instance beta has not heard since it came back.
        await asyncio.sleep(UNHEALTHY + 1.0)
        await all_online(beta, "cut", CUT_FLEET)
        assert left_online(status_changes, "cut") == [], "no live instance left ONLINE"


async def test_a_router_that_cannot_send_costs_no_heartbeating_instance_its_status(
    cut_pair: tuple[RouterProcess, RouterProcess, Link],
    nats_server: NatsServer,
    proxies: ProxyHub,
    status_changes: list[tuple[float, dict[str, Any]]],
) -> None:
    """beta's data to NATS is dropped, its connection left open (as a paused process,
    or a one-way partition, leaves it): NATS still routes to beta's subscriptions."""
    alpha, beta, link = cut_pair
    await eventually(lambda: both_see_two(alpha, beta), "both routers see two routers")
    async with ServiceClient(nats_server.url, FAST) as client:
        await register_fleet(client, "mute", CUT_FLEET)
        assert sum(sdk_holder(reg) == "beta" for reg in client.instances.values()) > 0

        async def alpha_holds_all() -> bool:
            return await metric(alpha, "aegis_leases_held") == CUT_FLEET

        await asyncio.to_thread(proxies.drop, [link], "forward")
        muted_at = time.monotonic()
        try:
            await eventually(alpha_holds_all, "alpha holds every lease", GONE_BOUND + 5.0)
            # By now an instance alpha has not heard since beta went mute is UNHEALTHY.
            await asyncio.sleep(muted_at + TAKEOVER_BOUND - time.monotonic())
            assert left_online(status_changes, "mute") == [], "no live instance left ONLINE"
        finally:
            await asyncio.to_thread(beta.stop, signal.SIGKILL)  # it could not drain


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
    with make_router(tmp_path, nats_server.url, "solo") as router:
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
