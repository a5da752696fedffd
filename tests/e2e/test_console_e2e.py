"""The console against a real aegis-router on a real nats-server."""

from __future__ import annotations

import pytest
from aegis.console.ui import ConsoleApp
from aegis.sdk import ServiceClient

from tests.support import eventually
from tests.support.procs import NatsServer, RouterProcess

pytestmark = pytest.mark.e2e


async def test_registered_service_appears_in_the_console(
    router: RouterProcess, nats_server: NatsServer
) -> None:
    app = ConsoleApp(router.http_url, interval=0.2)
    async with ServiceClient(nats_server.url) as client, app.run_test():
        await client.register("checkout", "checkout-7", {"version": "3.1"})
        # Services and instances are two requests: wait until both show it.
        await eventually(
            lambda: (
                "checkout/checkout-7" in app.dashboard.instances_table.rows
                and "checkout" in app.dashboard.services_table.rows
            ),
            "checkout-7 in both tables",
            within=10,
        )
        row = app.dashboard.instances_table.get_row("checkout/checkout-7")

    cells = [getattr(cell, "plain", str(cell)) for cell in row]
    assert "checkout-7" in cells
    assert "ONLINE" in cells
