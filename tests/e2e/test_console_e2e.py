"""The console against a real aegis-router on a real nats-server."""

from __future__ import annotations

import asyncio

import pytest
from aegis.console.ui import ConsoleApp
from aegis.sdk import ServiceClient

from tests.procs import NatsServer, RouterProcess

pytestmark = pytest.mark.e2e


async def test_registered_service_appears_in_the_console(
    router: RouterProcess, nats_server: NatsServer
) -> None:
    app = ConsoleApp(router.http_url, interval=0.2)
    async with ServiceClient(nats_server.url) as client, app.run_test() as pilot:
        await client.register("checkout", "checkout-7", {"version": "3.1"})
        # Services and instances are two requests: wait until both show it.
        async with asyncio.timeout(10):
            while not (
                "checkout/checkout-7" in app.dashboard.instances_table.rows
                and "checkout" in app.dashboard.services_table.rows
            ):
                await pilot.pause(0.1)
        row = app.dashboard.instances_table.get_row("checkout/checkout-7")

    cells = [getattr(cell, "plain", str(cell)) for cell in row]
    assert "checkout-7" in cells
    assert "ONLINE" in cells
