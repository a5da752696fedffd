"""The instances table on its own: change events on and off screen."""

from __future__ import annotations

from dataclasses import replace

import pytest
from aegis.console.instances_table import InstancesTable
from aegis.console.listing import Listing, LocalSegment, change_of, server_order
from aegis.console.models import InstanceInfo
from textual.app import App, ComposeResult
from textual.strip import Strip

from .helpers import NOW, fixed_clock

ROWS = [InstanceInfo("svc", f"i-{n:03d}", "ONLINE", NOW, NOW) for n in range(500)]


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield InstancesTable(fixed_clock, id="instances")


def lines(table: InstancesTable) -> list[str]:
    return [table.render_line(y).text for y in range(table.scrollable_content_region.height)]


async def test_only_a_change_on_screen_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    app = TableApp()
    async with app.run_test(size=(120, 20)) as pilot:
        table = app.query_one(InstancesTable)
        await pilot.pause()  # laid out: the table knows how many rows it shows
        listing = Listing([LocalSegment(ROWS, lambda i: True, server_order)])
        table.show(listing)
        await pilot.pause()
        assert "i-000" in lines(table)[1]
        drawn: list[int] = []
        original = InstancesTable.render_line

        def counting(self: InstancesTable, y: int) -> Strip:
            drawn.append(y)
            return original(self, y)

        monkeypatch.setattr(InstancesTable, "render_line", counting)

        # Off screen: nothing on screen moves, nothing is drawn.
        listing.apply(change_of("status_changed", replace(ROWS[400], status="OFFLINE"), "ONLINE"))
        table.changed()
        await pilot.pause()
        assert drawn == []

        # On screen: the row shows its new status.
        listing.apply(change_of("status_changed", replace(ROWS[2], status="UNHEALTHY"), "ONLINE"))
        table.changed()
        await pilot.pause()
        assert drawn
        monkeypatch.undo()
        assert "UNHEALTHY" in lines(table)[3]
