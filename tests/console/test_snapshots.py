"""What the user sees, as SVG snapshots (``--snapshot-update`` rewrites them; review the diff).

The clock is fixed, so ages and timestamps are the same on every run.
"""

from __future__ import annotations

from typing import Any

from pytest_httpx import HTTPXMock
from textual.pilot import Pilot

from .helpers import SAMPLE, add_outage, add_poll, fake_clock, make_app, poll_now, settle

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
