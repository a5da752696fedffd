"""Routers that disagree refuse to share a bus (issue 25, finding 3): a second router
with another store, or other timings, or a memory store of its own, on the same NATS
exits 2 saying both."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support import eventually
from tests.support.procs import NatsServer, router_process

pytestmark = [pytest.mark.e2e, pytest.mark.one_python]


@pytest.mark.parametrize(
    ("second", "said"),
    [
        ({"AEGIS_STORE": "jetstream"}, "jetstream bucket aegis_registry"),
        ({"AEGIS_UNHEALTHY_AFTER": "20"}, "unhealthy after 20 s"),
        # The same memory store: a registry of its own, the registry split all the same.
        ({"AEGIS_STORE": "memory"}, "memory store is its own router's registry"),
    ],
)
async def test_a_router_with_another_store_or_timings_refuses_to_start(
    nats_server: NatsServer, tmp_path: Path, second: dict[str, str], said: str
) -> None:
    first = router_process(tmp_path, nats_url=nats_server.url, name="first", AEGIS_STORE="memory")
    async with first:
        other = router_process(tmp_path, nats_url=nats_server.url, name="second", **second)
        code = await asyncio.to_thread(other.run)
        await eventually(lambda: "router_config_mismatch" in first.logs(), "the first says so")

    refused = other.logs()
    assert code == 2, refused
    assert "router_config_mismatch" in refused
    assert said in refused, "its own shape"
    assert "memory, heartbeat" in refused, "the other router's shape"
    assert "hint" in refused
    assert "router_ready" not in refused


async def test_routers_that_agree_share_the_bus(nats_server: NatsServer, tmp_path: Path) -> None:
    first = router_process(tmp_path, nats_url=nats_server.url, name="first")
    second = router_process(tmp_path, nats_url=nats_server.url, name="second")
    async with first, second:
        assert (await second.get("/readyz")).status_code == 200
    assert "router_config_mismatch" not in first.logs() + second.logs()
