"""The console against a real aegis-router on a real nats-server."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from aegis.console.models import InstanceInfo
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
                "checkout/checkout-7" in app.dashboard.instances_table.loaded_keys()
                and "checkout" in app.dashboard.services_table.rows
            ),
            "checkout-7 in both tables",
            within=10,
        )
        row = app.dashboard.instances_table.cells("checkout/checkout-7")

    cells = [cell.plain for cell in row.values()]
    assert "checkout-7" in cells
    assert "ONLINE" in cells


async def _until_row(app: ConsoleApp, key: str, check: Callable[[InstanceInfo], bool]) -> None:
    def ready() -> bool:
        table = app.dashboard.instances_table
        model = table.cursor_model
        return (
            key in table.loaded_keys() and model is not None and model.key == key and check(model)
        )

    await eventually(ready, f"{key} as expected", within=10)


async def test_drain_and_deregister_from_the_console(
    router: RouterProcess, nats_server: NatsServer
) -> None:
    """The operator's path on a real router: m with a reason, m again, then d and y."""
    app = ConsoleApp(router.http_url, interval=0.2)
    async with ServiceClient(nats_server.url) as client, app.run_test(size=(140, 40)) as pilot:
        await client.register("checkout", "checkout-7", {"version": "3.1"})
        key = "checkout/checkout-7"
        await _until_row(app, key, lambda i: i.status == "ONLINE")
        await eventually(
            lambda: "live" in str(app.dashboard.events_pane.border_subtitle), "events followed"
        )

        await pilot.press("m", *"kernel upgrade", "enter")
        await _until_row(app, key, lambda i: i.maintenance is not None)
        body = (await router.get("/api/v1/admin/services/checkout/instances")).json()
        assert body["instances"][0]["maintenance"]["reason"] == "kernel upgrade"
        await eventually(
            lambda: any(r.kind == "maintenance" for r in app.dashboard.events_pane.records),
            "the maintenance event in the pane",
        )

        await pilot.press("m")  # out again: no question
        await _until_row(app, key, lambda i: i.maintenance is None)

        await pilot.press("d", "y")
        await _until_row(app, key, lambda i: i.status == "OFFLINE")
        # Newest first; the still-running service may register again right after.
        await eventually(
            lambda: (
                [r.kind for r in app.dashboard.events_pane.records if r.kind != "registered"][:3]
                == ["deregistered", "maintenance", "maintenance"]
            ),
            "deregistered over both maintenance events",
        )
