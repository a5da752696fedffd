"""What the user sees, as SVG snapshots (``--snapshot-update`` rewrites them; review the diff).

The clock is fixed, so ages and timestamps are the same on every run.
"""

from __future__ import annotations

from typing import Any

from pytest_httpx import HTTPXMock
from textual.pilot import Pilot

from .helpers import (
    EVENTS_URL,
    MARKED,
    SAMPLE,
    WHOAMI_URL,
    add_outage,
    add_poll,
    change,
    fake_clock,
    instance,
    make_app,
    poll_now,
    settle,
    sse,
)

SIZE = (120, 32)


def test_normal(snap_compare: Any, httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)

    async def loaded(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("down", "down")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=loaded)


def test_empty_registry(snap_compare: Any, httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, [])
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=settle)


def test_unreachable_with_stale_data(snap_compare: Any, httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)
    add_outage(httpx_mock)
    clock = fake_clock()

    async def outage(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        clock.advance(42)
        await poll_now(pilot)

    assert snap_compare(make_app(clock), terminal_size=SIZE, run_before=outage)


def test_unreachable_from_the_start(snap_compare: Any, httpx_mock: HTTPXMock) -> None:
    add_outage(httpx_mock)
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=settle)


def test_detail_panel(snap_compare: Any, httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)

    async def detail(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("down", "down", "down", "enter")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=detail)


def test_filtered(snap_compare: Any, httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)

    async def filtered(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("slash", *"orders-")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=filtered)


def test_confirm_deregister(snap_compare: Any, httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)

    async def asked(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("down", "d")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=asked)


def test_maintenance_reason(snap_compare: Any, httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, MARKED)

    async def asked(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("down", "m", *"disk swap")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=asked)


def test_events_and_marks(snap_compare: Any, httpx_mock: HTTPXMock) -> None:
    """Maintenance and micro marks in the table; the events pane, newest first."""
    add_poll(httpx_mock, MARKED)
    orders_2 = instance("orders", "orders-2")
    httpx_mock.add_response(
        url=EVENTS_URL,
        content=sse(
            ("r1:1", "registered", change("registered", orders_2)),
            (
                "r1:2",
                "status_changed",
                change("status_changed", {**orders_2, "status": "UNHEALTHY"}, "ONLINE"),
            ),
            ("r1:3", "status_changed", change("status_changed", orders_2, "UNHEALTHY")),
            ("r1:4", "maintenance", change("maintenance", MARKED[0], "ONLINE")),
            (
                "r1:5",
                "removed",
                change("removed", instance("billing", "billing-1", "OFFLINE"), "OFFLINE"),
            ),
        ),
    )

    async def followed(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.pause()

    assert snap_compare(make_app(events=True), terminal_size=(120, 36), run_before=followed)


def test_read_token(snap_compare: Any, httpx_mock: HTTPXMock) -> None:
    """A read token: its name and role on the status line, no d or m in the footer, and
    the events pane naming the operator who drained an instance."""
    add_poll(httpx_mock, MARKED)
    httpx_mock.add_response(url=WHOAMI_URL, json={"name": "ci-dashboard", "role": "read"})
    drained = change("maintenance", MARKED[0], "ONLINE") | {"actor": "oncall"}
    httpx_mock.add_response(url=EVENTS_URL, content=sse(("r1:1", "maintenance", drained)))

    async def followed(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.pause()

    app = make_app(events=True, identify=True)
    assert snap_compare(app, terminal_size=(120, 36), run_before=followed)
