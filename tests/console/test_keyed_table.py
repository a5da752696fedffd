"""KeyedTable against Textual's own DataTable operations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from aegis.console.keyed_table import KeyedTable
from aegis.console.tables import Column
from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import DataTable

COLUMNS = (Column("name", "Name"), Column("value", "Value"), Column("age", "Age", width=6))


@dataclass(frozen=True)
class Item:
    name: str
    value: int


def render(item: Item) -> tuple[Text, ...]:
    return (Text(item.name), Text(str(item.value)), Text("-"))


def by_name(item: Item) -> Any:
    return item.name


def by_value(item: Item) -> Any:
    return (-item.value, item.name)


def items(count: int) -> dict[str, Item]:
    return {f"k{n:03d}": Item(f"k{n:03d}", n) for n in range(count)}


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield KeyedTable[Item](COLUMNS, id="keyed")
        yield DataTable(id="plain")


def keys(table: DataTable[Any]) -> list[str | None]:
    return [row.key.value for row in table.ordered_rows]


def contents(table: DataTable[Any]) -> list[list[str]]:
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


ONE_BY_ONE, REFILL = 1000, -1


@pytest.mark.parametrize("max_removals", [ONE_BY_ONE, REFILL], ids=["one_by_one", "refill"])
async def test_removal_ends_like_remove_row_on_a_plain_table(max_removals: int) -> None:
    app = TableApp()
    async with app.run_test(size=(60, 20)) as pilot:
        keyed = app.query_one("#keyed", KeyedTable)
        keyed.max_removals = max_removals
        plain = app.query_one("#plain", DataTable)
        for column in COLUMNS:
            plain.add_column(column.label, key=column.key, width=column.width)
        data = items(40)
        keyed.sync(data, render, by_name)
        for key, item in data.items():
            plain.add_row(*render(item), key=key)
        keyed.move_cursor(row=39)
        plain.move_cursor(row=39)
        await pilot.pause()

        doomed = ["k000", "k007", "k013", "k020", "k038", "k039"]
        survivors = {k: v for k, v in data.items() if k not in doomed}
        keyed.sync(survivors, render, by_name)
        for key in doomed:
            plain.remove_row(key)
        await pilot.pause()

        assert keys(keyed) == keys(plain)
        assert contents(keyed) == contents(plain)
        assert keyed.row_count == plain.row_count == 34
        assert [keyed.get_row_index(k) for k in survivors] == list(range(34))
        assert set(keyed.rows) == set(plain.rows)
        # The cursor was on a removed last row: both clamp it the same way.
        assert keyed.cursor_coordinate == plain.cursor_coordinate
        assert keyed.virtual_size == plain.virtual_size


@pytest.mark.parametrize("max_removals", [ONE_BY_ONE, REFILL], ids=["one_by_one", "refill"])
async def test_removals_keep_the_cursor_row_on_its_screen_line(max_removals: int) -> None:
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        keyed = app.query_one("#keyed", KeyedTable)
        keyed.max_removals = max_removals
        data = items(300)
        keyed.sync(data, render, by_name)
        await pilot.pause()
        keyed.move_cursor(row=150)
        await pilot.pause()
        line = keyed.cursor_row - keyed.scroll_y
        assert keyed.scroll_y > 0

        # 100 rows above the cursor and 20 below go; one is updated, one added.
        gone = {f"k{n:03d}" for n in (*range(10, 110), *range(200, 220))}
        after = {k: v for k, v in data.items() if k not in gone}
        after["k005"] = Item("k005", -5)
        after["k999"] = Item("k999", 999)
        keyed.sync(after, render, by_name)
        await pilot.pause()

        assert keyed.cursor_key == "k150"
        assert keyed.cursor_row == 50
        assert keyed.cursor_row - keyed.scroll_y == line
        assert keys(keyed) == sorted(after)
        assert str(keyed.get_cell("k005", "value")) == "-5"

        # Only rows below go: the cursor keeps its row number and its line.
        below = {k: v for k, v in after.items() if k < "k250"}
        keyed.sync(below, render, by_name)
        await pilot.pause()

        assert (keyed.cursor_key, keyed.cursor_row) == ("k150", 50)
        assert keyed.cursor_row - keyed.scroll_y == line


async def test_sync_reports_and_applies_only_the_difference() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 20)) as pilot:
        keyed = app.query_one("#keyed", KeyedTable)
        first = items(5)
        diff = keyed.sync(first, render, by_name)
        assert list(diff.added) == list(first)
        await pilot.pause()
        kept_cell = keyed.get_cell("k001", "name")

        second = dict(first)
        second["k002"] = Item("k002", 99)
        del second["k004"]
        second["k010"] = Item("k010", 10)
        diff = keyed.sync(second, render, by_name)

        assert list(diff.added) == ["k010"]
        assert list(diff.updated) == ["k002"]
        assert diff.removed == ["k004"]
        assert keys(keyed) == ["k000", "k001", "k002", "k003", "k010"]
        assert str(keyed.get_cell("k002", "value")) == "99"
        assert keyed.get_cell("k001", "name") is kept_cell
        assert not keyed.sync(second, render, by_name)


async def test_sort_order_change_reorders_and_keeps_cursor_key() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 20)) as pilot:
        keyed = app.query_one("#keyed", KeyedTable)
        data = items(6)
        keyed.sync(data, render, by_name)
        keyed.move_cursor(row=1)
        await pilot.pause()

        keyed.sync(data, render, by_value)

        assert keys(keyed) == ["k005", "k004", "k003", "k002", "k001", "k000"]
        assert keyed.cursor_key == "k001"
        assert keyed.cursor_row == 4


async def test_live_column_refreshes_rows_in_view_only() -> None:
    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        keyed = app.query_one("#keyed", KeyedTable)
        data = items(100)
        keyed.sync(data, render, by_name)
        await pilot.pause()
        keyed.set_live_column("age", lambda item: Text(f"{item.value}s"))

        keyed.refresh_live()

        assert str(keyed.get_cell("k000", "age")) == "0s"
        assert str(keyed.get_cell("k099", "age")) == "-"
        keyed.scroll_end(animate=False, immediate=True)
        await pilot.pause()
        assert str(keyed.get_cell("k099", "age")) == "99s"
