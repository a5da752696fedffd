"""A registration storm past a router's capacity: the instances that heartbeat on time
stay ONLINE, and the excess registrations are refused at once with 503 and a
``retry_after``, not queued until their callers give up (issue 22, at small scale).

A real aegis-router on the JetStream store, with a registration lane of two
workers so that a few thousand registrations overload it; a real nats-server;
raw wire clients sending open loop (each request on its own schedule).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from tests.support.procs import NatsServer, RouterProcess, router_process

pytestmark = [pytest.mark.e2e, pytest.mark.one_python]

STEADY = 40  # instances heartbeating on time through the storm
STORM = 6000  # registrations sent in about two seconds
INTERVAL = 0.5  # the router's heartbeat interval; they beat a little more often
UNHEALTHY_AFTER = 4.0


@pytest.fixture
def busy_router(nats_server: NatsServer, tmp_path: Path) -> Iterator[RouterProcess]:
    with router_process(
        tmp_path,
        nats_url=nats_server.url,
        AEGIS_STORE="jetstream",
        AEGIS_HEARTBEAT_INTERVAL=str(INTERVAL),
        AEGIS_UNHEALTHY_AFTER=str(UNHEALTHY_AFTER),
        AEGIS_OFFLINE_AFTER="8",
        AEGIS_REMOVE_AFTER="16",
        AEGIS_REGISTER_WORKERS="2",
        AEGIS_REGISTER_MAX_WAIT="0.2",
    ) as process:
        yield process


def owner(n: int) -> dict[str, Any]:
    return {"service_name": "steady", "instance_id": f"s-{n}", "session_id": f"sess-{n}"}


async def heartbeat_on_time(nc: NatsClient, n: int, until: float, replies: Counter[Any]) -> None:
    """Beat every 0.8 intervals on the loop's clock, whatever the latency (open loop)."""
    loop = asyncio.get_running_loop()
    seq, due = 1, loop.time()
    pending: set[asyncio.Task[None]] = set()

    async def beat(body: bytes) -> None:
        try:
            msg = await nc.request("ipc.service.heartbeat", body, timeout=2 * UNHEALTHY_AFTER)
        except nats.errors.TimeoutError:
            replies["timeout"] += 1
            return
        reply = msgpack.unpackb(msg.data)
        replies[(reply["status"], reply.get("instance", {}).get("status"))] += 1

    while (due := due + 0.8 * INTERVAL) < until:
        await asyncio.sleep(max(0.0, due - loop.time()))
        seq += 1
        task = asyncio.create_task(beat(msgpack.packb({**owner(n), "seq": seq})))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)


async def test_heartbeats_on_time_keep_their_instances_online_through_a_registration_storm(
    busy_router: RouterProcess, nats_server: NatsServer
) -> None:
    steady = await nats.connect(nats_server.url)
    storm = await nats.connect(nats_server.url, pending_size=64 * 1024 * 1024)
    changes: list[dict[str, Any]] = []

    async def on_event(msg: Msg) -> None:
        event = msgpack.unpackb(msg.data)
        if event["event"] == "status_changed":
            changes.append(event)

    await steady.subscribe("ipc.events.service.steady", cb=on_event)
    for n in range(STEADY):
        reply = await steady.request(
            "ipc.service.register", msgpack.packb({**owner(n), "seq": 1}), timeout=5
        )
        assert msgpack.unpackb(reply.data)["status"] == 201

    storm_replies: list[dict[str, Any]] = []

    async def on_storm_reply(msg: Msg) -> None:
        storm_replies.append(msgpack.unpackb(msg.data))

    inbox = storm.new_inbox()
    await storm.subscribe(inbox, cb=on_storm_reply)
    loop = asyncio.get_running_loop()
    until = loop.time() + 2 * UNHEALTHY_AFTER
    beats: Counter[Any] = Counter()
    beaters = [
        asyncio.create_task(heartbeat_on_time(steady, n, until, beats)) for n in range(STEADY)
    ]
    # Open loop: 300 registrations every 100 ms, replies or not.
    for start in range(0, STORM, 300):
        for i in range(start, start + 300):
            body = {"service_name": "storm", "instance_id": f"x-{i}", "session_id": f"x-{i}"}
            await storm.publish("ipc.service.register", msgpack.packb(body), reply=inbox)
        await storm.flush()
        await asyncio.sleep(0.1)
    await asyncio.gather(*beaters)
    with contextlib.suppress(Exception):
        await steady.flush()
    await steady.close()
    await storm.close()

    statuses = Counter(r["status"] for r in storm_replies)
    refused = [r for r in storm_replies if r["status"] == 503]
    assert changes == [], "an instance heartbeating on time left ONLINE"
    assert set(beats) == {(200, "ONLINE")}, beats
    assert statuses[201] > 0, statuses
    assert refused, f"the excess was not refused: {statuses}"
    assert {r["error"]["code"] for r in refused} == {"OVERLOADED"}
    assert all(r["retry_after"] > 0 for r in refused)
    assert set(statuses) <= {201, 503}, statuses
    health = await busy_router.get("/healthz")
    assert health.status_code == 200
