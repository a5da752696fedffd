"""The console at 100,000 instances against a router that pages (list + watch)."""

from __future__ import annotations

import time
from typing import Any

from pytest_httpx import HTTPXMock
from textual.pilot import Pilot

from .helpers import INSTANCES_URL, instance, make_app, settle, text_of
from .paged_router import PagedRouter


def fleet() -> list[dict[str, Any]]:
    """One service of 50,000 and 500 services of 100, as in the issue."""
    items = [instance("fleet", f"fleet-{n:05d}") for n in range(50_000)]
    items += [
        instance(f"svc-{s:03d}", f"svc-{s:03d}-{n:03d}") for s in range(500) for n in range(100)
    ]
    return items


async def until(pilot: Pilot[Any], check: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "not on screen in time"
        await pilot.pause(0.02)


def on_screen(app: Any) -> list[str]:
    table = app.dashboard.instances_table
    return table.loaded_keys(table.top_row, table.top_row + table.visible_rows)


async def test_filter_scroll_and_a_burst_of_changes_at_100k(httpx_mock: HTTPXMock) -> None:
    router = PagedRouter(fleet())
    router.install(httpx_mock)
    app = make_app(events=True)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        await until(pilot, lambda: "live" in text_of(app, "#status"))
        table = app.dashboard.instances_table

        # The real totals, and the first rows; nothing but pages was asked for.
        assert "501 services · 100,000 instances" in text_of(app, "#status")
        assert on_screen(app)[0] == "fleet/fleet-00000"
        assert table.row_count == 100_000
        listed = [r for r in router.requests if str(r.url).startswith(INSTANCES_URL)]
        assert listed
        assert all(int(r.url.params["limit"]) <= 1000 for r in listed)
        assert sum(int(r.url.params["limit"]) for r in listed) <= 2000

        # Filter to one id: the router filters, one row shows.
        await pilot.press("slash", *"fleet-31337")
        await until(pilot, lambda: on_screen(app) == ["fleet/fleet-31337"])
        assert table.row_count == 1
        assert "1 of 100,000 instances" in str(app.dashboard.instances_box.border_subtitle)
        await pilot.press("escape")
        await until(pilot, lambda: table.row_count == 100_000 and bool(on_screen(app)))

        # Scroll: page down, then to the very end (walked a page at a time), then up.
        await pilot.press("pagedown", "pagedown")
        await until(pilot, lambda: len(on_screen(app)) == table.visible_rows)
        assert table.cursor_key == f"fleet/fleet-{2 * table.visible_rows:05d}"
        await pilot.press("end")
        await until(pilot, lambda: table.cursor_key == "svc-499/svc-499-099")
        await pilot.press("pageup")
        await until(pilot, lambda: len(on_screen(app)) == table.visible_rows)

        # A burst of 600 changes: rows on screen change status, rows above go away,
        # new ones register below; the screen follows without listing again.
        before = len(router.requests)
        shown = on_screen(app)
        for key in shown[::2]:
            service, _, instance_id = key.partition("/")
            router.change("status_changed", instance(service, instance_id, "UNHEALTHY"), "ONLINE")
        for n in range(200):
            gone = instance("fleet", f"fleet-{n:05d}")
            router.change("removed", gone, "ONLINE")
        for n in range(600 - 200 - len(shown[::2])):
            router.change("registered", instance("svc-499", f"svc-499-z{n:03d}"))
        total = 100_000 - 200 + (600 - 200 - len(shown[::2]))
        await until(pilot, lambda: f"{total:,} instances" in text_of(app, "#status"))
        await pilot.pause(0.3)

        assert on_screen(app) == shown  # the same rows on the same lines
        statuses = [table.cells(k)["status"].plain for k in shown]
        assert statuses[::2] == ["UNHEALTHY"] * len(shown[::2])
        assert set(statuses[1::2]) == {"ONLINE"}
        assert table.row_count == total
        assert f"{total:,} instances" in text_of(app, "#status")
        assert "last event" in text_of(app, "#status")
        # Applied from the stream: no listing was asked for meanwhile.
        assert [r.url.path for r in router.requests[before:]] == []
        router.close_streams()


async def test_rows_of_the_last_filter_are_not_counted_under_the_next(
    httpx_mock: HTTPXMock,
) -> None:
    router = PagedRouter([instance("pay", f"pay-{n}") for n in range(3)])
    router.install(httpx_mock)
    app = make_app(events=True)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        dashboard = app.dashboard
        table = dashboard.instances_table
        await until(pilot, lambda: table.row_count == 3)
        assert dashboard.live.paged
        assert str(dashboard.instances_box.border_subtitle) == "3 instances"

        # The router's rows for the new filter have not come: the table still holds
        # the last ones, and its subtitle must not count them as the filter's.
        relist, dashboard.relist = dashboard.relist, lambda: None
        await pilot.press("slash", *"pay-1", "enter")
        await pilot.pause()
        assert "filter: 'pay-1'" in str(dashboard.instances_box.border_title)
        assert table.row_count == 3
        assert str(dashboard.instances_box.border_subtitle) == "listing…"

        relist()
        await until(pilot, lambda: table.row_count == 1)
        assert str(dashboard.instances_box.border_subtitle) == "1 of 3 instances"
        assert table.cursor_key == "pay/pay-1"
