"""One scrape of ``/metrics`` covers every worker of ``aegis-router --workers 2``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import nats
import pytest

from tests.support import eventually
from tests.support.procs import NatsServer, RouterProcess, free_port, router_process
from tests.support.prometheus import sample_value
from tests.support.wire import raw_request

pytestmark = pytest.mark.e2e

REGISTRATIONS = 100


@pytest.fixture
def monitored_nats(tmp_path: Path) -> Iterator[tuple[NatsServer, int]]:
    """A nats-server with its monitoring port, which counts messages per subscription."""
    monitor_port = free_port()
    server = NatsServer(data_dir=tmp_path / "nats", extra_args=["-m", str(monitor_port)])
    server.start()
    yield server, monitor_port
    server.stop()


async def scrape(router: RouterProcess) -> str:
    """One GET /metrics, on a new connection (so either worker may answer)."""
    response = await router.get("/metrics")
    response.raise_for_status()
    return response.text


async def registrations_per_worker(monitor_port: int) -> list[int]:
    """Registrations NATS delivered to each router connection (one per worker)."""
    async with httpx.AsyncClient(timeout=5) as http:
        connz = (await http.get(f"http://127.0.0.1:{monitor_port}/connz?subs=detail")).json()
    return [
        sub["msgs"]
        for conn in connz["connections"]
        if conn.get("name") == "aegis-router"
        for sub in conn.get("subscriptions_list_detail", [])
        if sub["subject"] == "ipc.service.register"
    ]


def metrics_directory(router: RouterProcess) -> Path:
    """The directory the router's main process shares among its workers (from its log)."""
    for line in router.logs().splitlines():
        if '"metrics_shared"' in line:
            return Path(json.loads(line)["directory"])
    raise AssertionError(f"no metrics_shared event in the log:\n{router.logs()}")


async def test_one_scrape_counts_the_requests_of_both_workers_and_instances_once(
    monitored_nats: tuple[NatsServer, int], tmp_path: Path
) -> None:
    server, monitor_port = monitored_nats
    router = router_process(
        tmp_path, nats_url=server.url, args=["--workers", "2"], AEGIS_STORE="jetstream"
    )
    async with router:
        directory = metrics_directory(router)

        async def both_subscribed() -> bool:
            return len(await registrations_per_worker(monitor_port)) == 2

        await eventually(both_subscribed, "both subscribed")
        nc = await nats.connect(server.url)
        try:
            replies = await asyncio.gather(
                *(
                    raw_request(
                        nc, {"service_name": "m", "instance_id": f"i-{n}", "session_id": "s"}
                    )
                    for n in range(REGISTRATIONS)
                )
            )
        finally:
            await nc.close()
        assert {r["status"] for r in replies} == {201}
        per_worker = await registrations_per_worker(monitor_port)
        assert sum(per_worker) == REGISTRATIONS
        assert min(per_worker) > 0, f"the queue group gave one worker everything: {per_worker}"

        # Counted before each reply is sent: every one is in the first scrape.
        created = sample_value(
            await scrape(router), "aegis_requests_total", kind="registration", result="created"
        )
        assert created == REGISTRATIONS

        # Each worker sets the instance gauge when it answers a scrape, from
        # its own (whole) view of the registry, in its own file
        # (prometheus-client's gauge_<mode>_<pid>.db). Once both have, a sum
        # of the two would show twice the instances.
        async def scraped_by_both() -> bool:
            await scrape(router)
            return len(list(directory.glob("gauge_livemostrecent_*.db"))) == 2

        await eventually(scraped_by_both, "both workers answered a scrape")

        async def online() -> float | None:
            return sample_value(await scrape(router), "aegis_instances", status="ONLINE")

        async def all_online() -> bool:
            return await online() == REGISTRATIONS

        await eventually(all_online, "every instance in the gauge")
        for _ in range(10):
            assert await online() == REGISTRATIONS

        # Each worker is a router of its own: the leases are split, each held once.
        async def leases_held() -> bool:
            text = await scrape(router)
            return (
                sample_value(text, "aegis_leases_held") == REGISTRATIONS
                and sample_value(text, "aegis_routers") == 2
            )

        await eventually(leases_held, "every lease held by exactly one worker")

    assert not directory.exists(), "the router removes its metrics directory on exit"
