"""NATS micro services on the bus appear in the registry, age, and are closed to clients.

A real router (short timings, a poll every half second) finds a Python
``nats.micro`` service and a nats.js ``Svcm`` service (tests/e2e/svcm_service.cjs,
with the packages tests/e2e/conftest.py installs); REST and discovery list
them; the registry subjects refuse to heartbeat, deregister or take them;
stopping one ages it to UNHEALTHY and OFFLINE. With two routers only one polls.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import nats
import nats.micro
import pytest
from aegis.router.leases.membership import owner_table
from aegis.sdk import ServiceClient
from nats.aio.client import Client as NatsClient
from nats.micro.request import Request
from nats.micro.service import Service

from tests.support import eventually
from tests.support.procs import NatsServer, RouterProcess, router_process
from tests.support.wire import raw_request

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.one_python,
    pytest.mark.filterwarnings("ignore:datetime.datetime.utcnow:DeprecationWarning"),  # nats.micro
]

TIMINGS = {
    "AEGIS_MICRO_POLL": "0.5",
    "AEGIS_HEARTBEAT_INTERVAL": "0.5",
    "AEGIS_UNHEALTHY_AFTER": "2",
    "AEGIS_OFFLINE_AFTER": "4",
    "AEGIS_REMOVE_AFTER": "60",
}
# Two routers share leases (jetstream): unhealthy_after above 3 s plus the interval.
SHARED_UNHEALTHY_AFTER = 4.0
SHARED_TIMINGS = {
    **TIMINGS,
    "AEGIS_UNHEALTHY_AFTER": str(SHARED_UNHEALTHY_AFTER),
    "AEGIS_OFFLINE_AFTER": "6",
}


@asynccontextmanager
async def python_service(url: str) -> AsyncIterator[Service]:
    """``inventory`` 2.0.0, a nats-py micro service with one endpoint, until the block ends."""
    nc = await nats.connect(url)

    async def count(request: Request) -> None:
        await request.respond(b"7")

    service = await nats.micro.add_service(
        nc,
        name="inventory",
        version="2.0.0",
        description="Counts stock (nats-py)",
        metadata={"language": "python"},
    )
    await service.add_endpoint(name="count", subject="inventory.count", handler=count)
    try:
        yield service
    finally:
        await service.stop()
        await nc.close()


def node_service(folder: Path, url: str) -> tuple[subprocess.Popen[str], str]:
    """``prices`` 1.4.0, a nats.js Svcm service, running until killed; with its id."""
    process = subprocess.Popen(
        ["node", "svcm_service.cjs", url, "prices", "1.4.0"],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.kill()
        raise AssertionError(f"svcm_service.cjs did not start: {process.communicate()[1]}")
    service_id: str = json.loads(line)["id"]
    return process, service_id


async def instances(router: RouterProcess, service: str) -> list[dict[str, Any]]:
    """The service's instances over REST (none if the service is unknown)."""
    response = await router.get(f"/api/v1/admin/services/{service}/instances")
    if response.status_code == 404:
        return []
    found: list[dict[str, Any]] = response.json()["instances"]
    return found


async def status_of(router: RouterProcess, service: str) -> str | None:
    """The status of the service's one instance, if it has one."""
    listed = await instances(router, service)
    return listed[0]["status"] if listed else None


async def test_python_and_nats_js_micro_services_appear_age_and_refuse_clients(
    svcm_folder: Path, nats_server: NatsServer, raw_nats: NatsClient, tmp_path: Path
) -> None:
    url = nats_server.url
    router = router_process(tmp_path, nats_url=url, AEGIS_STORE="memory", **TIMINGS)
    async with router, python_service(url) as inventory, ServiceClient(url) as client:
        node, prices_id = await asyncio.to_thread(node_service, svcm_folder, url)
        try:
            await eventually(lambda: status_of(router, "prices"), "prices listed", 10)
            await eventually(lambda: status_of(router, "inventory"), "inventory listed", 10)
            [python_listed] = await instances(router, "inventory")
            [node_listed] = await instances(router, "prices")
            discovered = await client.discover("inventory")
            body = {"service_name": "prices", "instance_id": prices_id, "session_id": "s-1"}
            heartbeat = await raw_request(raw_nats, body, "ipc.service.heartbeat")
            deregister = await raw_request(raw_nats, body, "ipc.service.deregister")
            register = await raw_request(raw_nats, body, "ipc.service.register")

            node.kill()  # no goodbye: it just stops answering
            started = await eventually(
                lambda: _is(router, "prices", "UNHEALTHY"), "prices UNHEALTHY", 10
            )
            await eventually(lambda: _is(router, "prices", "OFFLINE"), "prices OFFLINE", 10)
            offline = asyncio.get_running_loop().time()
            still = await status_of(router, "inventory")
        finally:
            node.kill()
            node.wait()

    assert python_listed["instance_id"] == inventory.id
    assert python_listed["status"] == "ONLINE"
    assert python_listed["metadata"] == {
        "source": "micro",
        "version": "2.0.0",
        "description": "Counts stock (nats-py)",
        "metadata": {"language": "python"},
        "endpoints": [{"name": "count", "subject": "inventory.count", "queue_group": "q"}],
    }
    assert node_listed["instance_id"] == prices_id
    node_meta = node_listed["metadata"]
    assert (node_meta["source"], node_meta["version"]) == ("micro", "1.4.0")
    assert node_meta["metadata"] == {"language": "javascript"}
    assert [e["subject"] for e in node_meta["endpoints"]] == ["prices.lookup"]
    assert [i.instance_id for i in discovered] == [inventory.id]
    for reply in (heartbeat, deregister):
        code, message = refusal(reply)
        assert code == (403, "SESSION_MISMATCH")
        assert "NATS micro service" in message
    assert refusal(register)[0] == (409, "DUPLICATE_INSTANCE")
    assert offline - started > 1.0  # UNHEALTHY first, OFFLINE a while later
    assert still == "ONLINE"
    assert logged(router, "micro_service_discovered") == 2


async def _is(router: RouterProcess, service: str, status: str) -> bool:
    return await status_of(router, service) == status


def refusal(reply: dict[str, Any]) -> tuple[tuple[int, str], str]:
    """An error reply's (status, code), and its message."""
    return (reply["status"], reply["error"]["code"]), reply["error"]["message"]


def logged(router: RouterProcess, event: str) -> int:
    """How many times the router has logged ``event`` (its log is one JSON object a line)."""
    lines = router.logs().splitlines()
    return sum(1 for line in lines if line.startswith("{") and json.loads(line)["event"] == event)


def polls(router: RouterProcess) -> int:
    """How many polls the router has logged."""
    return logged(router, "micro_poll")


async def test_with_two_routers_one_polls_and_hands_over_when_it_stops(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    url = nats_server.url
    env = {**SHARED_TIMINGS, "AEGIS_LOG_LEVEL": "DEBUG"}
    ids = ["poll-a", "poll-b"]
    routers = {
        rid: router_process(tmp_path, nats_url=url, name=rid, AEGIS_ROUTER_ID=rid, **env)
        for rid in ids
    }
    holder = owner_table(ids)[0]  # partition 0's holder, as every router computes it
    poller, heir = routers[holder], routers[next(r for r in ids if r != holder)]
    try:
        for router in routers.values():
            await asyncio.to_thread(router.start)
        async with python_service(url):
            await asyncio.sleep(1.5)  # both know of each other by now
            before = [polls(poller), polls(heir)]
            await asyncio.sleep(2.0)
            during = [polls(poller) - before[0], polls(heir) - before[1]]
            await eventually(lambda: _is(heir, "inventory", "ONLINE"), "listed", 10)

            await asyncio.to_thread(poller.stop)
            taken_over = polls(heir)
            await eventually(lambda: polls(heir) > taken_over + 2, "the heir polling", 10)
            # Past unhealthy_after: its answers keep it ONLINE.
            await asyncio.sleep(SHARED_UNHEALTHY_AFTER + 1)
            after = await status_of(heir, "inventory")
    finally:
        for router in routers.values():
            await asyncio.to_thread(router.stop)

    assert 2 <= during[0] <= 6, during  # every 0.5 s (plus the gathering) for 2 s
    assert during[1] == 0, during
    assert after == "ONLINE"
