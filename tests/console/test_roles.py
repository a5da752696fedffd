"""The console and its token's role: shown on the status line; a read token is offered no
action, and pressing ``d`` or ``m`` says why without sending anything."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from aegis.console.change_events import record_from_event
from aegis.console.events_pane import column_widths, event_text, header_text
from aegis.console.prompts import ConfirmScreen, ReasonScreen
from aegis.console.sse import ServerSentEvent
from pytest_httpx import HTTPXMock
from textual.pilot import Pilot

from .helpers import (
    EVENTS_URL,
    MARKED,
    NOW,
    SAMPLE,
    WHOAMI_URL,
    add_poll,
    change,
    instance,
    make_app,
    poll_now,
    settle,
    sse,
    text_of,
)


def answer_whoami(httpx_mock: HTTPXMock, name: str, role: str) -> None:
    httpx_mock.add_response(url=WHOAMI_URL, json={"name": name, "role": role})


def footer_keys(pilot: Pilot[Any]) -> set[str]:
    """The keys the footer offers on the dashboard."""
    return {
        key
        for key, active in pilot.app.screen.active_bindings.items()
        if active.enabled and active.binding.show
    }


def sent(httpx_mock: HTTPXMock) -> list[str]:
    return [f"{r.method} {r.url.path}" for r in httpx_mock.get_requests()]


@pytest.mark.parametrize(
    ("keys", "what"),
    [
        (("down", "d"), "may deregister instances"),
        (("down", "m"), "may put instances in or out of maintenance"),
        (("shift+tab", "down", "m"), "may put instances in or out of maintenance"),
    ],
)
async def test_a_read_token_is_shown_and_its_keys_say_why_without_a_request(
    httpx_mock: HTTPXMock, keys: tuple[str, ...], what: str
) -> None:
    add_poll(httpx_mock, MARKED)
    answer_whoami(httpx_mock, "ci-dashboard", "read")
    app = make_app(identify=True)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        assert "as ci-dashboard (read)" in text_of(app, "#status")
        assert {"d", "m"}.isdisjoint(footer_keys(pilot))

        await pilot.press(*keys)
        await settle(pilot)

        message, title, severity = app.notices[-1]
        assert (title, severity) == ("Not allowed", "warning")
        assert "token 'ci-dashboard' has role read" in message
        assert f"only an operator token {what}" in message
        assert app.screen is app.dashboard, "no dialog opened"
    assert sent(httpx_mock) == [
        "GET /api/v1/admin/services",
        "GET /api/v1/admin/instances",
        "GET /api/v1/admin/whoami",
    ]


async def test_an_operator_token_is_shown_and_offered_every_action(
    httpx_mock: HTTPXMock,
) -> None:
    add_poll(httpx_mock, SAMPLE)
    answer_whoami(httpx_mock, "oncall", "operator")
    app = make_app(identify=True)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        assert "as oncall (operator)" in text_of(app, "#status")
        assert {"d", "m"} <= footer_keys(pilot)

        await pilot.press("down", "d")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n", "m")
        await settle(pilot)
        assert isinstance(app.screen, ReasonScreen)


async def test_a_router_without_whoami_is_asked_once_and_offers_every_action(
    httpx_mock: HTTPXMock,
) -> None:
    add_poll(httpx_mock, SAMPLE, reusable=True)
    httpx_mock.add_response(
        url=WHOAMI_URL, status_code=404, json={"error": {"code": "NOT_FOUND", "message": "no"}}
    )
    app = make_app(identify=True)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await poll_now(pilot)
        assert " as " not in text_of(app, "#status")
        assert {"d", "m"} <= footer_keys(pilot)
    assert sent(httpx_mock).count("GET /api/v1/admin/whoami") == 1


async def test_whoami_is_asked_again_after_a_failure(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE, reusable=True)
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=WHOAMI_URL)
    answer_whoami(httpx_mock, "ci-dashboard", "read")
    app = make_app(identify=True)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        assert " as " not in text_of(app, "#status")
        await poll_now(pilot)
        assert "as ci-dashboard (read)" in text_of(app, "#status")


def test_the_events_pane_names_the_operator() -> None:
    marked = instance("orders", "orders-1", maintenance="kernel upgrade")
    events = [
        ServerSentEvent(
            id="r1:1",
            event="maintenance",
            data=sse_data(change("maintenance", marked, "ONLINE") | {"actor": "oncall"}),
        ),
        ServerSentEvent(
            id="r1:2",
            event="deregistered",
            data=sse_data(
                change("deregistered", instance("orders", "orders-2", "OFFLINE"), "ONLINE")
                | {"actor": "admin"}
            ),
        ),
        ServerSentEvent(
            id="r1:3", event="registered", data=sse_data(change("registered", instance("a", "b")))
        ),
    ]
    records = [record_from_event(e, NOW) for e in events]

    assert [r.actor for r in records] == ["oncall", "admin", None]
    widths = column_widths(160)
    header = header_text(widths).plain
    lines = [event_text(r, widths).plain for r in records]
    by = header.index("By")
    assert [line[by:].split()[0] for line in lines[:2]] == ["oncall", "admin"]
    assert lines[0][by:].split(maxsplit=1)[1].strip() == "in maintenance: kernel upgrade"
    assert lines[2][by : by + 12].strip() == ""


def sse_data(body: dict[str, Any]) -> str:
    return json.dumps(body)


async def test_a_read_console_follows_the_events_with_their_actor(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, MARKED)
    answer_whoami(httpx_mock, "ci-dashboard", "read")
    httpx_mock.add_response(
        url=EVENTS_URL,
        content=sse(
            (
                "r1:1",
                "maintenance",
                change("maintenance", MARKED[0], "ONLINE") | {"actor": "oncall"},
            )
        ),
    )
    app = make_app(identify=True, events=True)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.pause()
        [record] = app.dashboard.events_pane.records
        assert record.actor == "oncall"
