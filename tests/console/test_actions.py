"""Operator actions driven through the pilot: deregister and maintenance, against a fake router."""

from __future__ import annotations

import io
import json

import httpx
import pytest
from aegis.console.dashboard import DashboardScreen
from aegis.console.prompts import ConfirmScreen, ReasonScreen
from pytest_httpx import HTTPXMock
from rich.console import Console
from textual.widgets import Input, Static

from .helpers import (
    MARKED,
    SAMPLE,
    SERVICES_URL,
    add_poll,
    instance,
    make_app,
    settle,
)

ORDERS_2 = f"{SERVICES_URL}/orders/instances/orders-2"
ORDERS_1 = f"{SERVICES_URL}/orders/instances/orders-1"


def rendered(renderable: object) -> str:
    console = Console(width=140, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def sent(httpx_mock: HTTPXMock, method: str) -> list[httpx.Request]:
    return [r for r in httpx_mock.get_requests() if r.method == method]


async def test_deregister_asks_then_deletes_with_the_token(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)
    httpx_mock.add_response(
        method="DELETE", url=ORDERS_2, json=instance("orders", "orders-2", "OFFLINE")
    )
    add_poll(httpx_mock, SAMPLE)  # the poll that follows a successful action
    app = make_app(token="s3cret")
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("down", "down", "d")
        assert isinstance(app.screen, ConfirmScreen)
        question = app.screen.query_one("#confirm-question", Static).content
        assert "Deregister orders/orders-2?" in str(question)
        assert not sent(httpx_mock, "DELETE")  # nothing happens before the answer

        await pilot.press("y")
        await settle(pilot)

        assert isinstance(app.screen, DashboardScreen)
        (request,) = sent(httpx_mock, "DELETE")
        assert request.headers["Authorization"] == "Bearer s3cret"
        assert app.notices[-1] == (
            "orders/orders-2 deregistered: now OFFLINE",
            "Done",
            "information",
        )
    assert len(sent(httpx_mock, "GET")) == 4


async def test_deregister_cancelled_sends_nothing(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("d", "n")
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("d", "escape")
        # Enter presses Cancel, which has the focus: a stray enter is harmless.
        await pilot.press("d", "enter")
        await settle(pilot)
        assert isinstance(app.screen, DashboardScreen)
    assert not sent(httpx_mock, "DELETE")


async def test_refusal_without_token_is_a_notification_not_a_crash(
    httpx_mock: HTTPXMock,
) -> None:
    add_poll(httpx_mock, SAMPLE)
    httpx_mock.add_response(
        method="DELETE",
        status_code=401,
        json={"error": {"code": "UNAUTHORIZED", "message": "bearer token missing or wrong"}},
    )
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("d", "y")
        await settle(pilot)
        message, title, severity = app.notices[-1]
        assert title == "Not allowed"
        assert severity == "error"
        assert message == (
            "Could not deregister billing/billing-1: HTTP 401 UNAUTHORIZED: "
            "bearer token missing or wrong (check --token / AEGIS_CONSOLE_TOKEN)"
        )
        assert app.is_running
        # The table is as it was: nothing changed, nothing reloaded.
        assert app.dashboard.instances_table.row_count == len(SAMPLE)


@pytest.mark.parametrize(
    ("key", "hint"),
    [("d", "pick one in the instances table"), ("m", "pick a service")],
)
async def test_keys_on_all_services_say_what_to_pick(
    httpx_mock: HTTPXMock, key: str, hint: str
) -> None:
    add_poll(httpx_mock, MARKED)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        app.dashboard.services_table.focus()
        await pilot.press(key)
        assert isinstance(app.screen, DashboardScreen)
        assert hint in app.notices[-1][0]


async def test_maintenance_asks_for_a_reason_then_puts(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, MARKED)
    httpx_mock.add_response(
        method="PUT",
        url=f"{ORDERS_2}/maintenance",
        json=instance("orders", "orders-2", maintenance="disk swap"),
    )
    add_poll(httpx_mock, MARKED)
    app = make_app(token="t")
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("down", "m")
        screen = app.screen
        assert isinstance(screen, ReasonScreen)
        assert app.focused is screen.query_one("#reason-input", Input)

        await pilot.press("space", "enter")  # blank: refused on the spot
        assert app.screen is screen
        assert "A reason is required" in str(screen.query_one("#hint", Static).content)

        await pilot.press(*"disk swap", "enter")
        await settle(pilot)

        (request,) = sent(httpx_mock, "PUT")
        assert json.loads(request.content) == {"reason": "disk swap"}
        assert request.headers["Authorization"] == "Bearer t"
        assert app.notices[-1][0] == "orders/orders-2 in maintenance: disk swap"


async def test_maintenance_off_needs_no_reason(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, MARKED)
    httpx_mock.add_response(
        method="DELETE", url=f"{ORDERS_1}/maintenance", json=instance("orders", "orders-1")
    )
    add_poll(httpx_mock, MARKED)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("m")  # orders-1, in maintenance
        await settle(pilot)
        assert isinstance(app.screen, DashboardScreen)
        assert len(sent(httpx_mock, "DELETE")) == 1
        assert app.notices[-1][0] == "orders/orders-1 out of maintenance"


async def test_escape_on_the_reason_changes_nothing(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, MARKED)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("down", "m", *"oops", "escape")
        await settle(pilot)
        assert isinstance(app.screen, DashboardScreen)
    assert [r.method for r in httpx_mock.get_requests()] == ["GET", "GET"]


async def test_service_maintenance_from_the_services_table(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, MARKED)
    marked = [
        instance("orders", "orders-1", maintenance="kernel upgrade"),
        instance("orders", "orders-2", maintenance="kernel upgrade"),
    ]
    httpx_mock.add_response(
        method="PUT",
        url=f"{SERVICES_URL}/orders/maintenance",
        json={"instances": marked, "total": 2},
    )
    add_poll(httpx_mock, marked)
    httpx_mock.add_response(
        method="DELETE",
        url=f"{SERVICES_URL}/orders/maintenance",
        json={"instances": [instance("orders", "orders-1"), instance("orders", "orders-2")]}
        | {"total": 2},
    )
    add_poll(httpx_mock, MARKED)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        app.dashboard.services_table.focus()
        # One of two is drained: m drains the service (asks why).
        await pilot.press("down", "m")
        assert isinstance(app.screen, ReasonScreen)
        await pilot.press(*"kernel upgrade", "enter")
        await settle(pilot)
        assert app.notices[-1][0] == "service orders: 2 instances in maintenance: kernel upgrade"

        # All drained now: m takes them out, without asking.
        await pilot.press("m")
        await settle(pilot)
        assert isinstance(app.screen, DashboardScreen)
        assert app.notices[-1][0] == "service orders: 2 instances out of maintenance"
    assert [r.method for r in httpx_mock.get_requests()] == ["GET"] * 2 + (
        ["PUT", "GET", "GET", "DELETE", "GET", "GET"]
    )


async def test_forbidden_and_missing_instance_are_shown_plainly(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, MARKED)
    httpx_mock.add_response(
        method="PUT",
        status_code=403,
        json={"error": {"code": "FORBIDDEN", "message": "micro services are not ours to drain"}},
    )
    httpx_mock.add_response(
        method="DELETE",
        status_code=404,
        json={"error": {"code": "INSTANCE_NOT_FOUND", "message": "no live instance"}},
    )
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("down", "m", *"why", "enter")
        await settle(pilot)
        assert app.notices[-1][1:] == ("Not allowed", "error")
        assert "HTTP 403 FORBIDDEN: micro services are not ours to drain" in app.notices[-1][0]

        await pilot.press("up", "m")
        await settle(pilot)
        assert app.notices[-1] == (
            "Could not take orders/orders-1 out of maintenance: "
            "HTTP 404 INSTANCE_NOT_FOUND: no live instance",
            "Failed",
            "error",
        )


async def test_router_gone_during_an_action(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)
    httpx_mock.add_exception(httpx.ConnectError("[Errno 111] Connection refused"), method="DELETE")
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("d", "y")
        await settle(pilot)
        assert "cannot connect: [Errno 111] Connection refused" in app.notices[-1][0]
        assert app.is_running


async def test_instances_in_maintenance_and_micro_services_are_marked(
    httpx_mock: HTTPXMock,
) -> None:
    add_poll(httpx_mock, MARKED)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        table = app.dashboard.instances_table
        marks = {key: str(table.cells(key)["marks"]) for key in table.loaded_keys()}
        assert marks == {
            "orders/orders-1": "maint",
            "orders/orders-2": "",
            "weather/wx-7f3a": "micro",
        }
        await pilot.press("enter")
        fields = rendered(app.screen.query_one("#detail-fields", Static).content)
        assert "Maintenance     IN MAINTENANCE since 2026-11-03 11:45:00 UTC (15m00s): " in fields
        assert "kernel upgrade" in fields
        await pilot.press("escape", "down", "down", "enter")
        fields = rendered(app.screen.query_one("#detail-fields", Static).content)
        assert "Source          NATS micro service, found on the bus" in fields
        assert "Maintenance" not in fields


async def test_help_lists_the_actions(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        text = str(app.screen.query_one("#help", Static).content)
        assert "deregister the instance under the cursor" in text
        assert "maintenance on or off" in text
