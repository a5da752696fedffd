"""The recent-events pane: the router's event stream, reconnects, resets, and old routers."""

from __future__ import annotations

import copy

from aegis.console.sse import ServerSentEvent, SseParser
from pytest_httpx import HTTPXMock

from .helpers import (
    EVENTS_URL,
    SAMPLE,
    add_poll,
    change,
    instance,
    make_app,
    settle,
    sse,
)

REGISTERED = ("r1:1", "registered", change("registered", instance("orders", "orders-9")))
DEGRADED = (
    "r1:2",
    "status_changed",
    change("status_changed", instance("orders", "orders-9", "UNHEALTHY"), "ONLINE"),
)
DRAINED = (
    "r1:3",
    "maintenance",
    change("maintenance", instance("orders", "orders-9", maintenance="disk swap"), "ONLINE"),
)


def summary(app) -> list[tuple[str, str, str, str | None]]:
    return [
        (r.kind, r.instance.key, r.instance.status, r.previous_status)
        for r in app.dashboard.events_pane.records
    ]


async def test_events_listed_newest_first(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)
    httpx_mock.add_response(url=EVENTS_URL, content=sse(REGISTERED, DEGRADED, DRAINED))
    app = make_app(events=True, token="t")
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.pause()
        assert summary(app) == [
            ("maintenance", "orders/orders-9", "ONLINE", "ONLINE"),
            ("status_changed", "orders/orders-9", "UNHEALTHY", "ONLINE"),
            ("registered", "orders/orders-9", "ONLINE", None),
        ]
        (request,) = httpx_mock.get_requests(url=EVENTS_URL)
        assert request.headers["Authorization"] == "Bearer t"
        assert "Last-Event-ID" not in request.headers
        # The stream ended: the pane says it will reconnect.
        assert "reconnecting in 3600s" in str(app.dashboard.events_pane.border_subtitle)


async def test_reconnects_with_the_last_event_id(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)
    httpx_mock.add_response(url=EVENTS_URL, content=sse(REGISTERED, DEGRADED))
    httpx_mock.add_response(url=EVENTS_URL, content=sse(DRAINED))
    app = make_app(events=True)
    app.events_delays = [0.0]
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        for _ in range(20):
            if len(httpx_mock.get_requests(url=EVENTS_URL)) == 2 and len(summary(app)) == 3:
                break
            await pilot.pause(0.05)
        _, second = httpx_mock.get_requests(url=EVENTS_URL)
        assert second.headers["Last-Event-ID"] == "r1:2"
        assert [kind for kind, *_ in summary(app)] == [
            "maintenance",
            "status_changed",
            "registered",
        ]


async def test_reset_reloads_the_tables(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)
    add_poll(httpx_mock, SAMPLE)
    reset = ("r1:9", "reset", {"reason": "gap", "message": "NATS was lost"})
    httpx_mock.add_response(url=EVENTS_URL, content=sse(reset))
    app = make_app(events=True)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.pause()
        await settle(pilot)
        assert len(httpx_mock.get_requests(method="GET")) == 5  # two polls and the stream
        assert summary(app) == []


async def test_refused_stream_is_shown_in_the_pane(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)
    httpx_mock.add_response(
        url=EVENTS_URL,
        status_code=401,
        json={"error": {"code": "UNAUTHORIZED", "message": "token required"}},
    )
    app = make_app(events=True)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.pause()
        pane = app.dashboard.events_pane
        assert pane.has_class("-trouble")
        assert str(pane.border_subtitle) == (
            "reconnecting in 3600s: HTTP 401 UNAUTHORIZED: token required "
            "(check --token / AEGIS_CONSOLE_TOKEN)"
        )


async def test_router_without_a_stream_falls_back_to_polls(httpx_mock: HTTPXMock) -> None:
    changed = copy.deepcopy(SAMPLE)
    changed[2]["status"] = "ONLINE"  # orders-2 recovers
    changed[4]["maintenance"] = {"reason": "move", "since": "2026-11-03T11:59:00Z"}
    del changed[0]  # billing-1 is removed
    changed.append(instance("payments", "pay-b"))
    add_poll(httpx_mock, SAMPLE)
    httpx_mock.add_response(
        url=EVENTS_URL, status_code=404, json={"error": {"code": "NOT_FOUND", "message": "no"}}
    )
    add_poll(httpx_mock, changed)
    app = make_app(events=True)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.pause()
        assert app.follower.by_polling
        await pilot.press("r")
        await settle(pilot)
        assert sorted(summary(app)) == [
            ("maintenance", "payments/pay-a", "ONLINE", "ONLINE"),
            ("registered", "payments/pay-b", "ONLINE", None),
            ("removed", "billing/billing-1", "OFFLINE", "OFFLINE"),
            ("status_changed", "orders/orders-2", "ONLINE", "UNHEALTHY"),
        ]
        assert "from polls" in str(app.dashboard.events_pane.border_subtitle)


def test_sse_parser_follows_the_format() -> None:
    parser = SseParser()
    lines = [
        ": comment",
        "id: a:1",
        "event: registered",
        "data: {",
        'data:  "x": 1}',
        "",
        "",  # a blank line with nothing pending dispatches nothing
        "data:plain",
        "",
    ]
    events = [e for line in lines if (e := parser.feed(line)) is not None]
    assert events == [
        ServerSentEvent("registered", '{\n "x": 1}', "a:1"),
        # The id sticks; an unnamed event is a "message".
        ServerSentEvent("message", "plain", "a:1"),
    ]
