"""Maintenance end to end: an operator drains an instance over REST; it stays alive,
leaves discovery and resolvers, says so in an event, and survives a router restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from aegis.sdk import ClientConfig, ServiceClient

from tests.support import eventually
from tests.support.procs import NatsServer, router_process

pytestmark = [pytest.mark.e2e, pytest.mark.one_python]

FAST = ClientConfig(timeout=1.0, retries=5, backoff_base=0.05, backoff_max=0.5)
# The jetstream store (the mark must survive a restart) needs unhealthy_after above
# 3 s plus the heartbeat interval.
OFFLINE_AFTER = 4.0
TIMINGS = {
    "AEGIS_HEARTBEAT_INTERVAL": "0.2",
    "AEGIS_UNHEALTHY_AFTER": "3.5",
    "AEGIS_OFFLINE_AFTER": str(OFFLINE_AFTER),
    "AEGIS_REMOVE_AFTER": "30",
}


async def test_a_drained_instance_stays_alive_hidden_and_marked_across_a_restart(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    router = router_process(tmp_path, nats_url=nats_server.url, AEGIS_STORE="jetstream", **TIMINGS)
    async with router, ServiceClient(nats_server.url, FAST) as client:
        for n in range(2):
            await client.register("pay", f"p-{n}")
        resolver = await client.resolver("pay")
        async with (
            client.watch("pay") as events,
            httpx.AsyncClient(base_url=router.http_url, timeout=5) as http,
        ):
            marked = await http.put(
                "/api/v1/admin/services/pay/instances/p-0/maintenance",
                json={"reason": "kernel upgrade"},
            )
            assert marked.status_code == 200
            assert marked.json()["maintenance"]["reason"] == "kernel upgrade"
            event = await asyncio.wait_for(anext(aiter(events)), 5)
            assert event.event.value == "maintenance"
            assert event.instance.maintenance is not None

        await eventually(lambda: [i.instance_id for i in resolver.instances()] == ["p-1"], "hidden")
        assert [i.instance_id for i in await client.discover("pay")] == ["p-1"]
        # Past offline_after: its heartbeats keep it ONLINE, marked.
        await asyncio.sleep(OFFLINE_AFTER + 0.5)
        listing = await detail(router.http_url)
        assert listing["p-0"]["status"] == "ONLINE"
        assert listing["p-0"]["maintenance"]["reason"] == "kernel upgrade"

        await asyncio.to_thread(router.stop)
        await asyncio.to_thread(router.start)
        listing = await detail(router.http_url)
        assert listing["p-0"]["maintenance"]["reason"] == "kernel upgrade", "kept in the store"
        assert [i.instance_id for i in await client.discover("pay")] == ["p-1"]

        async with httpx.AsyncClient(base_url=router.http_url, timeout=5) as http:
            cleared = await http.delete("/api/v1/admin/services/pay/instances/p-0/maintenance")
            assert cleared.status_code == 200
        await eventually(
            lambda: [i.instance_id for i in resolver.instances()] == ["p-0", "p-1"], "back"
        )


async def detail(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=5) as http:
        body = (await http.get("/api/v1/admin/services/pay")).json()
    return {i["instance_id"]: i for i in body["instances"]}


async def test_a_drain_survives_a_restart_of_its_instance(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    # Issue 25: drained for a kernel upgrade, then the service restarted (a new
    # client, a new session): it must come back still drained, not in rotation.
    router = router_process(tmp_path, nats_url=nats_server.url, **TIMINGS)
    async with router, httpx.AsyncClient(base_url=router.http_url, timeout=5) as http:
        async with ServiceClient(nats_server.url, FAST) as first_run:
            await first_run.register("pay", "p-0")
            marked = await http.put(
                "/api/v1/admin/services/pay/instances/p-0/maintenance",
                json={"reason": "kernel upgrade"},
            )
            assert marked.status_code == 200
        # Closing the client deregistered it: OFFLINE, and still marked.
        stopped = await detail(router.http_url)
        assert stopped["p-0"]["status"] == "OFFLINE"
        assert stopped["p-0"]["maintenance"]["reason"] == "kernel upgrade"

        async with ServiceClient(nats_server.url, FAST) as second_run:
            await second_run.register("pay", "p-0")
            restarted = await detail(router.http_url)
            assert restarted["p-0"]["status"] == "ONLINE"
            assert restarted["p-0"]["maintenance"]["reason"] == "kernel upgrade"
            assert await second_run.discover("pay") == [], "still out of rotation"
            listed = await http.get("/api/v1/admin/services/pay/instances?status=ONLINE")
            assert listed.json()["instances"] == []
            cleared = await http.delete("/api/v1/admin/services/pay/instances/p-0/maintenance")
            assert cleared.status_code == 200
            assert [i.instance_id for i in await second_run.discover("pay")] == ["p-0"]
