"""The dashboard driven through Textual's pilot against canned router answers."""

from __future__ import annotations

import copy

import httpx
from aegis.console.dashboard import DashboardScreen
from aegis.console.detail_screen import DetailScreen
from aegis.console.help_screen import HelpScreen
from aegis.console.instances_table import InstancesTable
from aegis.console.tables import ALL_SERVICES
from pytest_httpx import HTTPXMock
from rich.syntax import Syntax
from rich.text import Text
from textual import events
from textual.widgets import Static

from .helpers import (
    API,
    INSTANCES_URL,
    SAMPLE,
    SERVICES_URL,
    add_outage,
    add_poll,
    fake_clock,
    instance,
    make_app,
    poll_now,
    settle,
    text_of,
)


def row_keys(table) -> list[str]:
    if isinstance(table, InstancesTable):
        return table.loaded_keys()
    return [row.key.value for row in table.ordered_rows]


def cell(table, key: str, column: str) -> Text:
    if isinstance(table, InstancesTable):
        return table.cells(key)[column]
    value = table.get_cell(key, column)
    assert isinstance(value, Text)
    return value


async def test_first_load_shows_services_and_instances(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)

        assert isinstance(app.screen, DashboardScreen)
        assert row_keys(app.dashboard.services_table) == [
            ALL_SERVICES,
            "billing",
            "orders",
            "payments",
        ]
        assert cell(app.dashboard.services_table, "orders", "instances").plain == "3"
        assert cell(app.dashboard.services_table, "orders", "unhealthy").plain == "1"
        assert cell(app.dashboard.services_table, ALL_SERVICES, "offline").plain == "1"
        assert row_keys(app.dashboard.instances_table) == [
            "billing/billing-1",
            "orders/orders-1",
            "orders/orders-2",
            "orders/orders-3",
            "payments/pay-a",
        ]
        table = app.dashboard.instances_table
        assert cell(table, "orders/orders-3", "metadata").plain == (
            "version=1.4.2 tags=[2] limits={1}"
        )
        assert cell(table, "orders/orders-3", "heartbeat").plain == "2m30s"
        assert cell(table, "orders/orders-3", "registered").plain == "2026-11-03 11:00:00"
        assert "green" in str(cell(table, "orders/orders-1", "status").style)
        assert "yellow" in str(cell(table, "orders/orders-2", "status").style)
        assert "red" in str(cell(table, "billing/billing-1", "status").style)
        assert app.state.error is None
        assert "connected" in text_of(app, "#status")
    # One poll is exactly two requests, whatever the number of services.
    assert [r.url.path for r in httpx_mock.get_requests()] == [
        "/api/v1/admin/services",
        "/api/v1/admin/instances",
    ]


async def test_token_is_sent_as_bearer(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)
    app = make_app(token="s3cret")
    async with app.run_test() as pilot:
        await settle(pilot)
    assert {r.headers["Authorization"] for r in httpx_mock.get_requests()} == {"Bearer s3cret"}


async def test_no_token_no_authorization_header(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)
    app = make_app()
    async with app.run_test() as pilot:
        await settle(pilot)
    assert all("Authorization" not in r.headers for r in httpx_mock.get_requests())


async def test_status_change_recoloured_in_place_cursor_kept(httpx_mock: HTTPXMock) -> None:
    changed = copy.deepcopy(SAMPLE)
    changed[2]["status"] = "ONLINE"  # orders-2 recovers
    changed[1]["status"] = "UNHEALTHY"  # orders-1 degrades
    add_poll(httpx_mock, SAMPLE)
    add_poll(httpx_mock, changed)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        table = app.dashboard.instances_table
        await pilot.press("down", "down")
        before_key, before_row = table.cursor_key, table.cursor_row

        await poll_now(pilot)

        assert before_key == "orders/orders-2"
        assert (table.cursor_key, table.cursor_row) == (before_key, before_row)
        status = cell(table, "orders/orders-2", "status")
        assert status.plain == "ONLINE"
        assert "green" in str(status.style)
        assert "yellow" in str(cell(table, "orders/orders-1", "status").style)
        assert cell(app.dashboard.services_table, "orders", "unhealthy").plain == "1"


async def test_removed_instance_disappears_cursor_stays_on_its_row(
    httpx_mock: HTTPXMock,
) -> None:
    fewer = [item for item in SAMPLE if item["instance_id"] != "billing-1"]
    add_poll(httpx_mock, SAMPLE)
    add_poll(httpx_mock, fewer)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        table = app.dashboard.instances_table
        await pilot.press("down", "down", "down")
        assert table.cursor_key == "orders/orders-3"

        await poll_now(pilot)

        assert "billing/billing-1" not in row_keys(table)
        assert table.row_count == 4
        # The row above went away: the cursor follows its instance up one line.
        assert (table.cursor_key, table.cursor_row) == ("orders/orders-3", 2)
        assert "billing" not in row_keys(app.dashboard.services_table)


async def test_added_instance_lands_in_sort_order(httpx_mock: HTTPXMock) -> None:
    more = [*SAMPLE, instance("billing", "billing-0")]
    add_poll(httpx_mock, SAMPLE)
    add_poll(httpx_mock, more)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("down")
        await poll_now(pilot)
        table = app.dashboard.instances_table
        assert row_keys(table)[:2] == ["billing/billing-0", "billing/billing-1"]
        assert (table.cursor_key, table.cursor_row) == ("orders/orders-1", 2)


async def test_ids_and_services_list_in_natural_order(httpx_mock: HTTPXMock) -> None:
    numbered = [instance("svc-10", "big-1")] + [instance("svc-9", f"big-{n}") for n in (10, 2, 1)]
    add_poll(httpx_mock, numbered)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        assert row_keys(app.dashboard.services_table) == [ALL_SERVICES, "svc-9", "svc-10"]
        assert row_keys(app.dashboard.instances_table) == [
            "svc-9/big-1",
            "svc-9/big-2",
            "svc-9/big-10",
            "svc-10/big-1",
        ]


async def test_filter_by_substring_then_clear(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        assert app.focused is not None
        assert app.focused.id == "filter"
        await pilot.press(*"PAY")
        assert row_keys(app.dashboard.instances_table) == ["payments/pay-a"]
        await pilot.press("enter")
        # Enter closes the line and keeps the filter.
        assert app.focused is app.dashboard.instances_table
        assert row_keys(app.dashboard.instances_table) == ["payments/pay-a"]
        assert "filter: 'PAY'" in str(app.dashboard.instances_box.border_title)

        await pilot.press("slash", "backspace", "backspace", "backspace", *"s-2")
        assert row_keys(app.dashboard.instances_table) == ["orders/orders-2"]
        await pilot.press("escape")
        assert len(row_keys(app.dashboard.instances_table)) == len(SAMPLE)
        assert app.dashboard.filter_text == ""


async def test_keys_typed_right_after_slash_go_to_the_filter(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        # Queued at once, as a fast typist or a paste delivers them.
        for key, character in [("slash", "/"), ("p", "p"), ("s", "s"), ("a", "a")]:
            app.post_message(events.Key(key, character))
        await pilot.pause()
        assert app.dashboard.filter_text == "psa"
        assert app.dashboard.sort_index == 0
        assert app.dashboard.instances_table.row_count == 0


async def test_filter_matching_nothing_says_so(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"nope")
        assert app.dashboard.instances_table.row_count == 0
        assert app.dashboard.query_one("#empty").has_class("-shown")
        assert "No instances match" in text_of(app, "#empty")


async def test_selecting_a_service_shows_only_its_instances(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)
    add_poll(httpx_mock, SAMPLE)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        app.dashboard.services_table.focus()
        await pilot.press("down", "down")
        assert app.dashboard.selected_service == "orders"
        assert row_keys(app.dashboard.instances_table) == [
            "orders/orders-1",
            "orders/orders-2",
            "orders/orders-3",
        ]
        # The selection survives a poll.
        await poll_now(pilot)
        assert app.dashboard.services_table.cursor_key == "orders"
        assert app.dashboard.instances_table.row_count == 3
        await pilot.press("enter")
        assert app.focused is app.dashboard.instances_table


async def test_metadata_uses_the_room_to_its_right(httpx_mock: HTTPXMock) -> None:
    labels = {"version": "1.4.2", "zone": "eu-west-1", "team": "payments", "build": "4f2a9c1e"}
    add_poll(httpx_mock, [instance("billing", "billing-1", metadata=labels)])
    app = make_app()
    async with app.run_test(size=(160, 30)) as pilot:
        await settle(pilot)
        table = app.dashboard.instances_table
        summary = "version=1.4.2 zone=eu-west-1 team=payments build=4f2a9c1e"  # 57 characters

        assert cell(table, "billing/billing-1", "metadata").plain == summary
        widths = table.widths
        assert widths["metadata"] >= len(summary)  # shown whole: it has the room
        # And every column, with a space each side, is on screen.
        assert sum(widths.values()) + 2 * len(widths) <= table.size.width


async def test_enter_opens_detail_with_pretty_metadata(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("down", "down", "down", "enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        assert screen.instance.instance_id == "orders-3"
        metadata = screen.query_one("#detail-metadata", Static).content
        assert isinstance(metadata, Syntax)
        text = metadata.code
        assert '"tags": [\n    "blue",\n    "canary"\n  ]' in text
        assert '"limits": {\n    "rps": 250\n  }' in text
        # Keys meant for the tables do nothing while the panel covers them.
        await pilot.press("s", "slash", "question_mark")
        assert app.dashboard.sort_index == 0
        assert app.screen is screen
        assert app.focused is not app.dashboard.query_one("#filter")
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)


async def test_router_unreachable_keeps_data_stale_then_recovers(
    httpx_mock: HTTPXMock,
) -> None:
    recovered = copy.deepcopy(SAMPLE)
    recovered[0]["status"] = "ONLINE"
    add_poll(httpx_mock, SAMPLE)
    add_outage(httpx_mock)
    add_poll(httpx_mock, recovered)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        banner = app.dashboard.query_one("#banner")
        assert not banner.has_class("-shown")

        await poll_now(pilot)

        assert banner.has_class("-shown")
        text = text_of(app, "#banner")
        assert f"Router unreachable at {API}" in text
        assert "Connection refused" in text
        assert "marked stale" in text
        assert app.dashboard.instances_table.row_count == len(SAMPLE)
        assert app.dashboard.instances_box.has_class("-stale")
        assert app.dashboard.services_box.has_class("-stale")
        assert "unreachable" in text_of(app, "#status")
        assert "(stale)" in text_of(app, "#status")
        assert app.state.failures == 1

        await poll_now(pilot)

        assert not banner.has_class("-shown")
        assert not app.dashboard.instances_box.has_class("-stale")
        assert app.state.failures == 0
        assert cell(app.dashboard.instances_table, "billing/billing-1", "status").plain == "ONLINE"


async def test_retries_back_off_then_reset(httpx_mock: HTTPXMock) -> None:
    add_outage(httpx_mock)
    add_outage(httpx_mock)
    add_outage(httpx_mock)
    add_poll(httpx_mock, SAMPLE)
    clock = fake_clock()
    app = make_app(clock, interval=2.0)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await poll_now(pilot)
        await poll_now(pilot)
        assert app.armed == [2.0, 4.0, 8.0]
        assert "3 failed attempts; retrying in 8s" in text_of(app, "#banner")
        clock.advance(3)
        await pilot.pause()
        app.dashboard.refresh_clock_texts()
        assert "retrying in 5s" in text_of(app, "#banner")

        await poll_now(pilot)

        assert app.armed[-1] == 2.0
        assert not app.dashboard.query_one("#banner").has_class("-shown")


async def test_ages_follow_the_clock(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)
    clock = fake_clock()
    app = make_app(clock)
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        assert "data 0s old" in text_of(app, "#status")
        clock.advance(60)
        app.dashboard.refresh_clock_texts()
        assert "data 1m00s old" in text_of(app, "#status")
        assert cell(app.dashboard.instances_table, "orders/orders-1", "heartbeat").plain == "1m05s"


async def test_unreachable_from_the_start(httpx_mock: HTTPXMock) -> None:
    add_outage(httpx_mock)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        assert "No data yet" in text_of(app, "#banner")
        assert app.dashboard.instances_table.row_count == 0
        assert "Waiting for the router" in text_of(app, "#empty")


async def test_error_answer_shows_code_and_message(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)
    httpx_mock.add_response(
        url=SERVICES_URL,
        status_code=503,
        json={"error": {"code": "STORE_UNAVAILABLE", "message": "store is down"}},
    )
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await poll_now(pilot)
        text = text_of(app, "#banner")
        assert "Router error" in text
        assert "HTTP 503 STORE_UNAVAILABLE: store is down" in text
        assert app.dashboard.instances_table.row_count == len(SAMPLE)


async def test_timeout_is_reported(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ReadTimeout("slow"), url=SERVICES_URL)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        assert "no answer within 5s" in text_of(app, "#banner")


async def test_sort_cycles_and_keeps_cursor(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        table = app.dashboard.instances_table
        await pilot.press("down")
        assert table.cursor_key == "orders/orders-1"

        await pilot.press("s")  # status, worst first
        assert row_keys(table)[:2] == ["billing/billing-1", "orders/orders-2"]
        assert table.cursor_key == "orders/orders-1"
        assert "status, worst first" in str(app.dashboard.instances_box.border_title)

        await pilot.press("s")  # heartbeat, oldest first
        assert row_keys(table)[0] == "orders/orders-3"
        assert table.cursor_key == "orders/orders-1"

        await pilot.press("s", "s")  # back to service, id
        assert row_keys(table)[0] == "billing/billing-1"


async def test_pause_stops_polling_and_resume_polls_at_once(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)
    add_poll(httpx_mock, SAMPLE)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        assert app.state.next_poll_at is not None

        await pilot.press("p")
        assert app.state.paused
        assert app.state.next_poll_at is None
        assert "paused" in text_of(app, "#status")
        assert len(httpx_mock.get_requests()) == 2

        await pilot.press("p")
        await settle(pilot)
        assert not app.state.paused
        assert len(httpx_mock.get_requests()) == 4
        assert app.state.next_poll_at is not None


async def test_help_opens_and_closes(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_q_quits(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)
    app = make_app()
    async with app.run_test() as pilot:
        await settle(pilot)
        await pilot.press("q")
        await pilot.pause()
        assert app.return_code == 0
        assert not app.is_running


async def test_footer_lists_the_bindings(httpx_mock: HTTPXMock) -> None:
    add_poll(httpx_mock, SAMPLE)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        shown = {
            binding.key
            for _, binding, enabled, _ in app.screen.active_bindings.values()
            if binding.show and enabled
        }
        assert {"slash", "s", "enter", "d", "m", "r", "p", "question_mark", "q"} <= shown


async def test_many_instances_scrolled_view_keeps_place_on_update(
    httpx_mock: HTTPXMock,
) -> None:
    many = [instance("svc", f"i-{n:04d}") for n in range(300)]
    changed = copy.deepcopy(many)
    for item in changed[::7]:
        item["status"] = "UNHEALTHY"
    del changed[5:15]  # ten rows above the cursor go away
    add_poll(httpx_mock, many)
    add_poll(httpx_mock, changed)
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        table = app.dashboard.instances_table
        table.move_cursor(row=150)
        await pilot.pause()
        key = table.cursor_key
        screen_line = table.cursor_row - table.scroll_y
        assert table.scroll_y > 0

        await poll_now(pilot)
        await pilot.pause()

        assert table.cursor_key == key
        assert table.cursor_row == 140
        # The cursor's row stays on the same line of the screen.
        assert table.cursor_row - table.scroll_y == screen_line
        # Rows in view show fresh ages; the heartbeat column is filled everywhere.
        assert cell(table, key or "", "heartbeat").plain == "5s"


async def test_filter_hiding_most_rows_keeps_the_cursor_on_its_instance(
    httpx_mock: HTTPXMock,
) -> None:
    add_poll(httpx_mock, [instance("svc", f"i-{n:04d}") for n in range(300)])
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        table = app.dashboard.instances_table
        table.move_cursor(row=150)
        await pilot.pause()

        await pilot.press("slash", *"i-01")

        assert table.row_count == 100
        assert (table.cursor_key, table.cursor_row) == ("svc/i-0150", 50)
        await pilot.press("escape")
        assert table.row_count == 300
        assert (table.cursor_key, table.cursor_row) == ("svc/i-0150", 150)


async def test_unexpected_requests_would_fail(httpx_mock: HTTPXMock) -> None:
    """Guards the fixture itself: the URLs the console calls are the ones mocked."""
    add_poll(httpx_mock, SAMPLE)
    app = make_app()
    async with app.run_test() as pilot:
        await settle(pilot)
    assert {str(r.url.copy_with(query=None)) for r in httpx_mock.get_requests()} == {
        SERVICES_URL,
        INSTANCES_URL,
    }
