"""A service whose instance another session took over lets it go, against a real router.

The first client stalls (its sleeps are held, as in a long pause of the
process) until its instance goes OFFLINE and a second client takes the id
over. Its next heartbeat is answered 403: the instance must turn
``superseded`` and the first client must neither heartbeat it again nor try
to register it back (each try would be a 409), nor deregister it on close.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aegis.sdk import ClientConfig, RegistrationState, ServiceClient

from tests.support import eventually
from tests.support.procs import NatsServer, RouterProcess, router_process

pytestmark = pytest.mark.e2e

HEARTBEAT = 0.2
# A long removal deadline keeps the OFFLINE instance (rather than a new one) to take over.
TIMINGS = {"HEARTBEAT_INTERVAL": 0.2, "UNHEALTHY_AFTER": 1.0, "OFFLINE_AFTER": 2.0}
FAST = ClientConfig(timeout=1.0, retries=5, backoff_base=0.05, backoff_max=0.5)
KEY = ("contested", "c-1")


@pytest.fixture
def router(nats_server: NatsServer, tmp_path: Path) -> Iterator[RouterProcess]:
    env = {f"AEGIS_{name}": str(value) for name, value in TIMINGS.items()}
    # One router: the quick timings are shorter than shared leases (jetstream) honour.
    with router_process(
        tmp_path, nats_url=nats_server.url, AEGIS_STORE="memory", AEGIS_REMOVE_AFTER="60", **env
    ) as process:
        yield process


class Stall:
    """An ``asyncio.sleep`` that can be held: the client's loops stop where they wait."""

    def __init__(self) -> None:
        self.running = asyncio.Event()
        self.running.set()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.running.wait()


async def status(router: RouterProcess) -> str | None:
    async with httpx.AsyncClient(base_url=router.http_url, timeout=5) as http:
        response = await http.get(f"/api/v1/admin/services/{KEY[0]}")
    if response.status_code == 404:
        return None
    return {i["instance_id"]: i["status"] for i in response.json()["instances"]}.get(KEY[1])


def router_results(router: RouterProcess, event: str) -> list[str]:
    """The ``result`` of each router log line of ``event`` for the contested instance."""
    lines = [json.loads(line) for line in router.logs().splitlines() if line.startswith("{")]
    return [
        line["result"]
        for line in lines
        if line.get("event") == event and line.get("instance") == KEY[1]
    ]


async def test_a_taken_over_instance_is_superseded_not_fought_for(
    router: RouterProcess, nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aegis.sdk")
    stall = Stall()
    first = ServiceClient(nats_server.url, FAST, sleep=stall.sleep)
    async with first, ServiceClient(nats_server.url, FAST) as second:
        await first.register(*KEY)
        mine = first.instances[KEY]
        stall.running.clear()

        async def offline() -> bool:
            return await status(router) == "OFFLINE"

        await eventually(offline, "OFFLINE while stalled")
        await second.register(*KEY)  # any session may take an OFFLINE instance
        stall.running.set()

        await eventually(lambda: mine.state is RegistrationState.SUPERSEDED, "superseded")
        # Let the new owner heartbeat a few times: time in which the first would try again.
        theirs, since = second.instances[KEY], datetime.now(UTC)
        await eventually(
            lambda: (
                theirs.last_contact_at is not None
                and theirs.last_contact_at > since + timedelta(seconds=5 * HEARTBEAT)
            ),
            "the new owner heartbeating",
        )
        await first.close()
        after_first_left = await status(router)

    assert mine.last_error is not None
    assert "another session" in mine.last_error
    assert router_results(router, "heartbeat").count("session_mismatch") == 1
    assert "duplicate" not in router_results(router, "registration")
    assert after_first_left == "ONLINE", "closing did not take the new owner's instance down"
    superseded = [
        r for r in caplog.records if getattr(r, "aegis_event", "") == "instance_superseded"
    ]
    assert len(superseded) == 1
