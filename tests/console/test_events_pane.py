"""The events pane on its own: its lines, their colours, scrolling, and what it keeps."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest
from aegis.console import events_pane
from aegis.console.change_events import ChangeRecord
from aegis.console.events_pane import (
    EVENT_COLUMNS,
    KEPT,
    EventsPane,
    column_widths,
    event_cells,
    event_text,
    header_text,
)
from aegis.console.models import InstanceInfo, MaintenanceMark
from rich.console import Console
from rich.style import Style
from rich.table import Table
from textual.app import App, ComposeResult
from textual.pilot import Pilot

from .helpers import NOW

WIDTH = 120
HEIGHT = 9  # as on the dashboard: a border, a header and six events


class PaneApp(App[None]):
    CSS = f"#events {{ height: {HEIGHT}; border: round white; }}"

    def compose(self) -> ComposeResult:
        yield EventsPane(id="events")


@asynccontextmanager
async def mounted() -> AsyncIterator[tuple[EventsPane, Pilot[None]]]:
    app = PaneApp()
    async with app.run_test(size=(WIDTH, HEIGHT + 2)) as pilot:
        yield app.query_one(EventsPane), pilot


@pytest.fixture(autouse=True)
def draw_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every event is drawn at the next idle moment, not up to half a second later."""
    monkeypatch.setattr(events_pane, "REDRAW_SECONDS", 0.0)


def record(
    n: int,
    kind: str = "registered",
    status: str = "ONLINE",
    previous: str | None = None,
    *,
    maintenance: str | None = None,
    actor: str | None = None,
) -> ChangeRecord:
    mark = None if maintenance is None else MaintenanceMark(maintenance, NOW)
    instance = InstanceInfo("orders", f"orders-{n}", status, NOW, NOW, {}, mark)
    return ChangeRecord(NOW + timedelta(seconds=n), kind, instance, previous, actor)


def lines(pane: EventsPane) -> list[str]:
    return [pane.render_line(y).text for y in range(pane.scrollable_content_region.height)]


def style_of(pane: EventsPane, y: int, word: str) -> Style:
    """The style ``word`` is drawn with on line ``y``."""
    for segment in pane.render_line(y):
        if word in segment.text:
            return segment.style or Style()
    raise AssertionError(f"{word!r} is not on line {y}: {pane.render_line(y).text!r}")


def look(pane: EventsPane, y: int, word: str) -> tuple[str | None, bool, bool]:
    """``word`` on line ``y``: its colour's name, bold, dim."""
    style = style_of(pane, y, word)
    colour = None if style.color is None else style.color.name
    return colour, bool(style.bold), bool(style.dim)


async def test_an_empty_pane_says_so() -> None:
    async with mounted() as (pane, _):
        first, *rest = lines(pane)
        assert first.strip() == "No changes seen yet."
        assert style_of(pane, 0, "No changes").dim
        assert all(not line.strip() for line in rest)


async def test_events_are_listed_under_the_header_newest_first() -> None:
    async with mounted() as (pane, pilot):
        pane.add(record(1))
        pane.add(record(2, "status_changed", "UNHEALTHY", "ONLINE"))
        pane.add(record(3, "maintenance", maintenance="disk swap", actor="oncall"))
        await pilot.pause()
        header, third, second, first, *rest = lines(pane)
        assert header.split() == ["UTC", "Event", "Service", "Instance", "Status", "By", "Note"]
        assert third.split() == [
            *("12:00:03", "maintenance", "orders", "orders-3", "ONLINE", "oncall"),
            *("in", "maintenance:", "disk", "swap"),
        ]
        assert second.split() == [
            *("12:00:02", "status_changed", "orders", "orders-2", "ONLINE", "→", "UNHEALTHY"),
        ]
        assert first.split() == ["12:00:01", "registered", "orders", "orders-1", "ONLINE"]
        assert all(not line.strip() for line in rest)
        # Every line spans the pane, and the columns line up under the header.
        assert {len(line) for line in lines(pane)} == {pane.scrollable_content_region.width}
        assert {line.index("orders-") for line in (first, second, third)} == {
            header.index("Instance")
        }


async def test_statuses_and_kinds_keep_their_colours() -> None:
    async with mounted() as (pane, pilot):
        pane.add(record(1, "removed", "OFFLINE", "OFFLINE"))
        pane.add(record(2, "deregistered", "OFFLINE", "UNHEALTHY"))
        pane.add(record(3, "status_changed", "ONLINE", "UNHEALTHY"))
        pane.add(record(4, "maintenance", maintenance="swap"))
        await pilot.pause()
        assert style_of(pane, 0, "Event").bold
        assert look(pane, 1, "maintenance") == ("magenta", False, False)
        assert look(pane, 1, "in maintenance:") == ("magenta", False, False)
        assert style_of(pane, 1, "orders-4").bold
        assert look(pane, 2, "UNHEALTHY") == ("yellow", True, False)
        assert look(pane, 2, "ONLINE") == ("green", True, False)
        assert look(pane, 3, "deregistered") == ("red", False, False)
        assert look(pane, 4, "OFFLINE") == ("red", False, True)
        assert look(pane, 4, "removed") == ("red", False, True)


async def test_scrolling_shows_older_events() -> None:
    async with mounted() as (pane, pilot):
        for n in range(1, 21):
            pane.add(record(n))
        await pilot.pause()
        assert pane.virtual_size.height == 21  # the header and twenty events
        pane.scroll_to(y=5, animate=False, immediate=True)
        await pilot.pause()
        shown = lines(pane)
        assert "orders-16" in shown[0]  # the fifth newest, the header scrolled away
        assert "orders-10" in shown[-1]
        pane.scroll_end(animate=False, immediate=True)
        await pilot.pause()
        assert "orders-1 " in lines(pane)[-1]


async def test_only_the_newest_are_kept() -> None:
    async with mounted() as (pane, pilot):
        for n in range(KEPT + 5):
            pane.add(record(n))
        await pilot.pause()
        assert len(pane.records) == KEPT
        pane.scroll_end(animate=False, immediate=True)
        await pilot.pause()
        assert "orders-5 " in lines(pane)[-1]


async def test_a_new_event_lays_out_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lines already drawn are kept: a new event costs its own line, not the pane's."""
    async with mounted() as (pane, pilot):
        for n in range(10):
            pane.add(record(n))
        await pilot.pause()
        lines(pane)
        laid_out: list[str] = []
        original = events_pane.event_text

        def counting(rec: ChangeRecord, widths: tuple[int, ...]) -> object:
            laid_out.append(rec.instance.instance_id)
            return original(rec, widths)

        monkeypatch.setattr(events_pane, "event_text", counting)
        pane.add(record(10))
        await pilot.pause()
        assert "orders-10" in lines(pane)[1]
        assert laid_out == ["orders-10"]


async def test_a_wider_pane_lays_the_lines_out_again() -> None:
    async with mounted() as (pane, pilot):
        pane.add(record(1))
        pane.add(record(2, "maintenance", maintenance="a reason " * 5))
        await pilot.pause()
        assert lines(pane)[1].rstrip().endswith("…")
        await pilot.resize_terminal(200, HEIGHT + 2)
        await pilot.pause()
        assert lines(pane)[1].rstrip().endswith("a reason")
        assert len(lines(pane)[1]) == pane.scrollable_content_region.width


def test_columns_share_the_width_as_the_table_did() -> None:
    # Fixed columns keep their width; the rest is shared 1 : 1 : 2, rounded up in order.
    assert column_widths(120) == (8, 14, 13, 12, 21, 12, 26)
    assert column_widths(200) == (8, 14, 33, 32, 21, 12, 66)
    for width in (80, 120, 200):
        assert sum(w + 2 for w in column_widths(width)) == width  # a space each side


def test_every_width_lays_out_as_the_rich_table_did() -> None:
    # The pane replaced a Rich table (box=None, padding (0, 1), expand=True); its lines
    # must read the same at every width the pane gets (72 cells and up: narrower,
    # Rich squeezed the fixed columns and the pane cuts at the right edge instead).
    event = record(3, "maintenance", "ONLINE", "UNHEALTHY", maintenance="kernel", actor="ops")
    for width in range(72, 260):
        table = Table(box=None, padding=(0, 1), expand=True, show_edge=False)
        for column in EVENT_COLUMNS:
            table.add_column(
                column.label, no_wrap=True, width=column.width, ratio=column.ratio or None
            )
        table.add_row(*event_cells(event))
        console = Console(width=width, color_system=None, file=io.StringIO())
        with console.capture() as captured:
            console.print(table)
        rich_lines = [line.rstrip() for line in captured.get().splitlines()]
        widths = column_widths(width)
        ours = [header_text(widths).plain.rstrip(), event_text(event, widths).plain.rstrip()]
        assert ours == rich_lines, f"at {width} cells"
