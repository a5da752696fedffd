"""Liveness end to end: heartbeats, expiry, deregistration, discovery, change events.

Real nats-server and aegis-router processes with timings shortened by config.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgpack
import pytest
from aegis.sdk import (
    ClientConfig,
    DuplicateInstanceError,
    EventKind,
    InstanceStatus,
    RegistrationState,
    ServiceClient,
)
from nats.aio.client import Client as NatsClient

from tests.support import eventually
from tests.support.procs import (
    QUICK_HEARTBEAT,
    QUICK_OFFLINE,
    QUICK_REMOVE,
    QUICK_UNHEALTHY,
    NatsServer,
    RouterProcess,
    quick_router_process,
)
from tests.support.wire import raw_request

pytestmark = pytest.mark.e2e

HEARTBEAT, UNHEALTHY, OFFLINE, REMOVE = (
    QUICK_HEARTBEAT,
    QUICK_UNHEALTHY,
    QUICK_OFFLINE,
    QUICK_REMOVE,
)
TICK = UNHEALTHY / 10  # the router's sweep tick for these timings
SLACK = 1.5  # scheduling on 2 shared cores; bounds are checked, not timed
FAST = ClientConfig(timeout=1.0, retries=5, backoff_base=0.05, backoff_max=0.5)


@pytest.fixture
def router(nats_server: NatsServer, tmp_path: Path) -> Iterator[RouterProcess]:
    with quick_router_process(tmp_path, nats_server.url) as process:
        yield process


async def instances(router: RouterProcess, service: str) -> dict[str, dict[str, Any]]:
    """The service's instances as the REST API shows them, by instance id."""
    response = await router.get(f"/api/v1/admin/services/{service}")
    if response.status_code == 404:
        return {}
    return {i["instance_id"]: i for i in response.json()["instances"]}


async def statuses(router: RouterProcess, service: str) -> dict[str, str]:
    return {name: i["status"] for name, i in (await instances(router, service)).items()}


def is_now(
    router: RouterProcess, service: str, expected: dict[str, str]
) -> Callable[[], Awaitable[bool]]:
    """A check for ``eventually``: the service's instances have exactly these statuses."""

    async def check() -> bool:
        return await statuses(router, service) == expected

    return check


async def test_register_reply_carries_the_router_timings(
    router: RouterProcess, raw_nats: NatsClient
) -> None:
    reply = await raw_request(raw_nats, {"service_name": "t", "instance_id": "t-1"})

    assert (reply["heartbeat_interval"], reply["ttl"]) == (HEARTBEAT, UNHEALTHY)


async def test_killed_service_goes_unhealthy_offline_then_removed(
    router: RouterProcess, nats_server: NatsServer, tmp_path: Path
) -> None:
    service = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.service_main", nats_server.url, "crashy", "c-1"],
        stdout=subprocess.PIPE,
    )
    assert service.stdout is not None
    assert service.stdout.readline().strip() == b"READY"
    # A few heartbeats pass, seen as the router's last_heartbeat_at moving on while the
    # registration stays the same one (an SDK whose heartbeats fail registers again).
    registered = (await instances(router, "crashy"))["c-1"]
    contacts = {registered["last_heartbeat_at"]}

    async def three_heartbeats() -> bool:
        now = (await instances(router, "crashy"))["c-1"]
        assert now["registered_at"] == registered["registered_at"], "expired, registered again"
        contacts.add(now["last_heartbeat_at"])
        return len(contacts) > 3  # the registration, then three heartbeats

    await eventually(three_heartbeats, "three heartbeats answered")
    assert await statuses(router, "crashy") == {"c-1": "ONLINE"}

    service.send_signal(signal.SIGKILL)
    service.wait()
    killed = time.monotonic()
    unhealthy = await eventually(is_now(router, "crashy", {"c-1": "UNHEALTHY"}), "UNHEALTHY", 10)
    offline = await eventually(is_now(router, "crashy", {"c-1": "OFFLINE"}), "OFFLINE", 10)
    removed = await eventually(is_now(router, "crashy", {}), "removed", 10)

    # Deadlines count from the last heartbeat, at most one interval before the kill.
    assert killed - HEARTBEAT + UNHEALTHY <= unhealthy + 0.05
    assert unhealthy - killed <= UNHEALTHY + TICK + SLACK
    assert offline - killed <= OFFLINE + TICK + SLACK
    assert removed - killed <= REMOVE + TICK + SLACK


async def test_graceful_exit_deregisters_at_once(
    router: RouterProcess, nats_server: NatsServer
) -> None:
    async with ServiceClient(nats_server.url, FAST) as client:
        await client.register("polite", "p-1")
        await client.register("polite", "p-2")
        assert await statuses(router, "polite") == {"p-1": "ONLINE", "p-2": "ONLINE"}

    assert await statuses(router, "polite") == {"p-1": "OFFLINE", "p-2": "OFFLINE"}


async def test_heartbeats_keep_an_instance_online_past_every_deadline(
    router: RouterProcess, nats_server: NatsServer
) -> None:
    async with ServiceClient(nats_server.url, FAST) as client:
        instance = await client.register("steady", "s-1")
        state = client.instances[("steady", "s-1")]
        registered = state.last_contact_at
        assert registered is not None
        # Time must pass here, past every deadline a silent instance would meet. It is
        # counted in heartbeats the router answered, not slept: wait until one was
        # answered OFFLINE + 0.5 s after the registration.
        past_offline = registered + timedelta(seconds=OFFLINE + 0.5)
        await eventually(
            lambda: state.last_contact_at is not None and state.last_contact_at >= past_offline,
            "a heartbeat answered past the OFFLINE deadline",
        )

        shown = (await instances(router, "steady"))["s-1"]

        assert shown["status"] == "ONLINE"
        # The same registration all along, heartbeats moving its contact on (an
        # instance that expired would come back through the SDK's re-registration).
        assert shown["registered_at"] == instance.registered_at
        assert shown["last_heartbeat_at"] > instance.registered_at
        assert state.state is RegistrationState.REGISTERED
        assert state.last_error is None
        assert state.heartbeat_interval == HEARTBEAT


async def test_router_restart_brings_every_instance_back(
    router: RouterProcess, nats_server: NatsServer
) -> None:
    ids = [f"r-{i}" for i in range(5)]
    async with ServiceClient(nats_server.url, FAST) as client:
        for instance_id in ids:
            await client.register("phoenix", instance_id)
        await asyncio.to_thread(router.stop)
        router.env["AEGIS_STORE"] = "memory"  # the new router knows nothing
        await asyncio.to_thread(router.start)
        restarted = time.monotonic()
        back = await eventually(is_now(router, "phoenix", dict.fromkeys(ids, "ONLINE")), "back", 10)
        await eventually(
            lambda: {r.state for r in client.instances.values()} == {RegistrationState.REGISTERED},
            "registered again on the client side",
            10,
        )

    # One heartbeat finds the router does not know it (404), then a jittered
    # re-registration within one more interval.
    assert back - restarted <= 2 * HEARTBEAT + SLACK


def swept_after_resume(logs: str, instance: str) -> bool:
    """The router's log shows a sweep changing ``instance``'s status after sweeps resumed."""
    events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    resumed = [n for n, e in enumerate(events) if e["event"] == "sweep_resumed"]
    return bool(resumed) and any(
        e["event"] == "instance_status_changed" and e.get("instance") == instance
        for e in events[resumed[-1] :]
    )


async def test_nats_restart_router_and_sdk_reconnect(
    router: RouterProcess, nats_server: NatsServer, raw_nats: NatsClient
) -> None:
    # The sentinel: registered without a client to heartbeat it, it expires at the
    # first sweep once sweeps resume after the outage.
    silent = {"service_name": "silent", "instance_id": "quiet-1", "session_id": "nobody"}
    await raw_request(raw_nats, silent)
    async with ServiceClient(nats_server.url, FAST) as client:
        await client.register("sturdy", "n-1")
        await asyncio.to_thread(nats_server.stop)
        await asyncio.to_thread(nats_server.start)
        # The grace in which clients come back is not slept out: once a sweep after
        # "sweep_resumed" has expired the sentinel, n-1 has faced the sweeps too.
        await eventually(
            lambda: swept_after_resume(router.logs(), "quiet-1"), "a sweep after the outage"
        )
        fresh = await client.register("sturdy", "n-2")
        during = await statuses(router, "sturdy")

    assert fresh.status is InstanceStatus.ONLINE
    assert during == {"n-1": "ONLINE", "n-2": "ONLINE"}, "an outage expires no one"
    assert '"sweep_paused"' in router.logs()
    assert await statuses(router, "sturdy") == {"n-1": "OFFLINE", "n-2": "OFFLINE"}


async def test_wrong_session_gets_403_and_nothing_changes(
    router: RouterProcess, raw_nats: NatsClient
) -> None:
    owner = {"service_name": "owned", "instance_id": "o-1", "session_id": "owner-session"}
    await raw_request(raw_nats, owner)
    before = await statuses(router, "owned")
    intruder = {**owner, "session_id": "intruder"}

    heartbeat = await raw_request(raw_nats, intruder, "ipc.service.heartbeat")
    deregister = await raw_request(raw_nats, intruder, "ipc.service.deregister")

    assert heartbeat["status"] == deregister["status"] == 403
    assert heartbeat["error"]["code"] == "SESSION_MISMATCH"  # type: ignore[index]
    assert await statuses(router, "owned") == before == {"o-1": "ONLINE"}
    unknown = await raw_request(
        raw_nats, {**owner, "instance_id": "ghost"}, "ipc.service.heartbeat"
    )
    assert unknown["status"] == 404
    assert unknown["error"]["code"] == "INSTANCE_NOT_FOUND"  # type: ignore[index]


async def test_watch_sees_registered_status_changed_deregistered_in_order(
    router: RouterProcess, nats_server: NatsServer, raw_nats: NatsClient
) -> None:
    body = {"service_name": "watched", "instance_id": "w-1", "session_id": "watched-session"}
    async with ServiceClient(nats_server.url, FAST) as client, client.watch("watched") as events:
        await raw_request(raw_nats, body)  # no heartbeats follow: it will go UNHEALTHY
        first = await asyncio.wait_for(anext(events), 5)
        second = await asyncio.wait_for(anext(events), 5)
        await raw_request(raw_nats, body, "ipc.service.deregister")
        third = await asyncio.wait_for(anext(events), 5)

    assert [first.event, second.event, third.event] == [
        EventKind.REGISTERED,
        EventKind.STATUS_CHANGED,
        EventKind.DEREGISTERED,
    ]
    assert (second.previous_status, second.instance.status) == (
        InstanceStatus.ONLINE,
        InstanceStatus.UNHEALTHY,
    )
    assert third.instance.status is InstanceStatus.OFFLINE
    assert b"watched-session" not in msgpack.packb(third.model_dump(mode="json"))


async def test_discover_returns_online_instances(
    router: RouterProcess, nats_server: NatsServer, raw_nats: NatsClient
) -> None:
    await raw_request(raw_nats, {"service_name": "found", "instance_id": "gone", "session_id": "s"})
    await raw_request(
        raw_nats,
        {"service_name": "found", "instance_id": "gone", "session_id": "s"},
        "ipc.service.deregister",
    )
    async with ServiceClient(nats_server.url, FAST) as client:
        await client.register("found", "f-1")
        online = await client.discover("found")
        everything = await client.discover("found", status="ANY")
        nothing = await client.discover("nobody-here")

    assert [i.instance_id for i in online] == ["f-1"]
    assert sorted(i.instance_id for i in everything) == ["f-1", "gone"]
    assert nothing == []


async def test_restarted_service_waits_out_its_stale_registration(
    router: RouterProcess, nats_server: NatsServer, raw_nats: NatsClient
) -> None:
    # The previous run registered and crashed: nobody heartbeats "stale-1".
    await raw_request(
        raw_nats, {"service_name": "reborn", "instance_id": "stale-1", "session_id": "old-run"}
    )
    async with ServiceClient(nats_server.url, FAST) as client:
        with pytest.raises(DuplicateInstanceError) as caught:
            await client.register("reborn", "stale-1")
        assert caught.value.retry_after is not None
        assert 0 < caught.value.retry_after <= OFFLINE
        instance = await client.register("reborn", "stale-1", wait_if_taken=OFFLINE + 3)

    assert instance.status is InstanceStatus.ONLINE
    assert instance.registered_at != caught.value.existing.registered_at  # type: ignore[union-attr]


async def test_operator_force_deregistration(router: RouterProcess, raw_nats: NatsClient) -> None:
    await raw_request(raw_nats, {"service_name": "ops", "instance_id": "o-9", "session_id": "s"})

    response = await router.delete("/api/v1/admin/services/ops/instances/o-9")
    missing = await router.delete("/api/v1/admin/services/ops/instances/nope")

    assert response.status_code == 200
    assert response.json()["status"] == "OFFLINE"
    assert await statuses(router, "ops") == {"o-9": "OFFLINE"}
    assert missing.status_code == 404
    assert '"operator_action"' in router.logs()
