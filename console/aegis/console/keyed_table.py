"""A DataTable kept in step with a mapping of row key → model, through public API only."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from rich.text import Text
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from .tables import Column, RowDiff, diff_rows

M = TypeVar("M")


class KeyedText(Text):
    """A first cell that knows its row key.

    ``DataTable.sort`` hands the key function cell values, never row keys; this
    lets the table order its rows by the models behind them.
    """

    __slots__ = ("row_key",)

    def __init__(self, cell: Text, row_key: str) -> None:
        super().__init__(
            cell.plain,
            style=cell.style,
            justify=cell.justify,
            overflow=cell.overflow,
            no_wrap=cell.no_wrap,
            end="",
            spans=list(cell.spans),
        )
        self.row_key = row_key


class KeyedTable(DataTable[Text], Generic[M]):
    """A DataTable that mirrors a mapping of row key → model.

    ``sync`` adds, updates (cell by cell) and removes only what changed, re-sorts
    only when the order may have changed, and keeps the cursor on the same row key
    at the same line of the screen. Only public DataTable API: when many rows go at
    once it clears and refills instead (see ``max_removals``), then puts cursor and
    scroll back, so the user sees the same either way.
    """

    max_removals: int = 80
    """Up to this many rows gone in one sync are removed one by one; more, and the table
    is cleared and refilled. Both cost about the same at 80 (bench/console_refresh.py,
    10,000 rows), and both grow with the row count. Set per table to force one path."""

    def __init__(self, columns: Iterable[Column], *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, id=id)
        self._column_specs = tuple(columns)
        self._models: dict[str, M] = {}
        self._cells: dict[str, tuple[Text, ...]] = {}
        self._order: Callable[[M], Any] | None = None
        self._live: tuple[str, Callable[[M], Text]] | None = None

    def on_mount(self) -> None:
        """Add the columns (a DataTable needs the app's console to measure them)."""
        for column in self._column_specs:
            self.add_column(column.label, key=column.key, width=column.width)

    @property
    def cursor_key(self) -> str | None:
        """Row key under the cursor, ``None`` when the table is empty."""
        if not self.row_count:
            return None
        row_key = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key
        return row_key.value

    @property
    def cursor_model(self) -> M | None:
        """The model under the cursor, if any."""
        key = self.cursor_key
        return None if key is None else self._models.get(key)

    def sync(
        self,
        models: Mapping[str, M],
        render: Callable[[M], tuple[Text, ...]],
        order: Callable[[M], Any],
    ) -> RowDiff[str, M]:
        """Make the table show ``models`` in ``order``, touching only what changed."""
        cursor_key, cursor_row = self.cursor_key, self.cursor_row
        scroll = (self.scroll_x, self.scroll_y)
        diff = diff_rows(self._models, models)
        refill = len(diff.removed) > self.max_removals
        if refill:
            for key in diff.removed:
                del self._cells[key]
            for key, model in (*diff.updated.items(), *diff.added.items()):
                self._cells[key] = self._keyed(key, render(model))
            self._refill(sorted(models, key=lambda key: order(models[key])))
        else:
            self._apply(models, diff, render, order)
        self._models = dict(models)
        self._order = order
        self._keep_cursor(cursor_key, cursor_row, scroll, moved=refill)
        self.refresh_live()
        return diff

    def set_live_column(self, column: str, render: Callable[[M], Text]) -> None:
        """A column whose text depends on the time (e.g. an age), kept fresh by ``refresh_live``."""
        self._live = (column, render)

    def refresh_live(self) -> None:
        """Re-render the live column on the rows in view only.

        Updating an age on every one of 10,000 rows takes longer than a poll should;
        rows out of view catch up when they scroll in (``watch_scroll_y``).
        """
        if self._live is None or not self.row_count or not self.is_mounted:
            return
        column, render = self._live
        index = self.get_column_index(column)
        top = max(0, int(self.scroll_y))
        bottom = min(self.row_count, top + self.scrollable_content_region.height)
        for row_index in range(top, bottom):
            key = self.coordinate_to_cell_key(Coordinate(row_index, index)).row_key.value
            if key is None:
                continue
            cells = self._cells[key]
            cell = render(self._models[key])
            if cells[index] != cell:
                self.update_cell(key, column, cell)
                self._cells[key] = (*cells[:index], cell, *cells[index + 1 :])

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        """Scrolling brings rows into view whose live column may be out of date."""
        super().watch_scroll_y(old_value, new_value)
        if int(old_value) != int(new_value):
            self.refresh_live()

    def _widens(self, column: Column, cell: Text) -> bool:
        # update_width=True re-measures the whole column whenever a cell gets narrower
        # (10,000 cells); columns here only ever grow, so ask only when this one is wider.
        if column.width is not None:
            return False
        return cell.cell_len > self.columns[ColumnKey(column.key)].content_width

    @staticmethod
    def _keyed(key: str, cells: tuple[Text, ...]) -> tuple[Text, ...]:
        first, *rest = cells
        return (KeyedText(first, key), *rest)

    def _sort_by_models(self, models: Mapping[str, M], order: Callable[[M], Any]) -> None:
        ranked = sorted(models, key=lambda key: order(models[key]))
        rank = {key: index for index, key in enumerate(ranked)}
        first_column = self._column_specs[0].key

        def by_rank(cell: Any) -> int:
            return rank[cell.row_key]

        self.sort(first_column, key=by_rank)

    def _apply(
        self,
        models: Mapping[str, M],
        diff: RowDiff[str, M],
        render: Callable[[M], tuple[Text, ...]],
        order: Callable[[M], Any],
    ) -> None:
        """Remove, update cell by cell, add, and re-sort only if the order may have changed."""
        reorder = order is not self._order or bool(diff.added)
        for key in diff.removed:
            self.remove_row(key)
            del self._cells[key]
        for key, model in diff.updated.items():
            old_cells, new_cells = self._cells[key], self._keyed(key, render(model))
            for column, old, new in zip(self._column_specs, old_cells, new_cells, strict=True):
                if old != new:
                    self.update_cell(key, column.key, new, update_width=self._widens(column, new))
            self._cells[key] = new_cells
            reorder = reorder or order(self._models[key]) != order(model)
        for key, model in diff.added.items():
            cells = self._keyed(key, render(model))
            self.add_row(*cells, key=key)
            self._cells[key] = cells
        if reorder and models:
            self._sort_by_models(models, order)

    def _refill(self, ordered_keys: Iterable[str]) -> None:
        """Clear the table and add every row again in order, from the cached cells.

        ``DataTable.remove_row`` renumbers every remaining row on each call, so k
        removals from n rows cost k x n; past ``max_removals`` this is cheaper.
        """
        self.clear()
        for key in ordered_keys:
            self.add_row(*self._cells[key], key=key)

    def _keep_cursor(
        self, key: str | None, row: int, scroll: tuple[float, float], *, moved: bool
    ) -> None:
        """Put the cursor back on ``key`` at the same line of the screen, if it still exists.

        If it is gone the cursor stays at the same row number. ``moved``: the table
        was cleared, which put the cursor and the scroll back at the top.
        """
        if not self.row_count:
            return
        if key is not None and key in self._models:
            new_row = self.get_row_index(key)
        else:
            new_row = min(row, self.row_count - 1)
        if new_row == row and not moved:
            return
        scroll_x, scroll_y = scroll
        self.move_cursor(row=new_row, scroll=False)
        # Rows were added or removed above the cursor: scroll by as many, once the
        # table has measured its new height.
        target_y = scroll_y + (new_row - row)
        self.call_after_refresh(self.scroll_to, x=scroll_x, y=target_y, animate=False)
