"""The instances table: only the rows on screen are drawn (Textual's Line API).

It holds no rows itself: ``listing`` answers "which instance is at row n", and
may not have it yet. The table asks for what it shows with ``WindowWanted`` and
draws a placeholder until it comes, so its cost follows the rows on screen, not
the rows in the registry.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar, Final

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .formatting import METADATA_CHARS, Clock
from .listing import Listing
from .models import InstanceInfo
from .tables import INSTANCE_COLUMNS, Column, instance_cells

HEADER_LINES: Final = 1
MARGIN: Final = 100
"""Rows asked for beyond the screen, above and below, so a scroll step finds them loaded."""
FIT_CAP: Final = METADATA_CHARS
"""A column fitted to its content grows at most this wide (the metadata summary's bound)."""
CACHED_LINES: Final = 400
PLACEHOLDER: Final = "…"


class InstancesTable(ScrollView, can_focus=True):
    """Instances of the selected service (or all); enter opens the detail panel."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Detail"),
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "instances--header",
        "instances--cursor",
        "instances--even-row",
        "instances--placeholder",
    }

    DEFAULT_CSS = """
    InstancesTable {
        background: $surface;
        color: $foreground;
        height: auto;
        max-height: 100%;
        & > .instances--header { text-style: bold; background: $panel; color: $foreground; }
        & > .instances--even-row { background: $surface-lighten-1 50%; }
        & > .instances--placeholder { color: $text-muted; }
        & > .instances--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus { background-tint: $foreground 5%; }
        &:focus > .instances--header { background-tint: $foreground 5%; }
        &:focus > .instances--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
        &:dark > .instances--even-row { background: $surface-darken-1 40%; }
    }
    """

    cursor_row: reactive[int] = reactive(0, always_update=True, repaint=False)

    class Selected(Message):
        """Enter on an instance."""

        def __init__(self, instance: InstanceInfo) -> None:
            super().__init__()
            self.instance = instance

    class WindowWanted(Message):
        """Rows ``low``..``high`` (exclusive) are on screen or near it: have them loaded."""

        def __init__(self, low: int, high: int) -> None:
            super().__init__()
            self.low = low
            self.high = high

    def __init__(self, clock: Clock, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.listing = Listing()
        self.columns: tuple[Column, ...] = INSTANCE_COLUMNS
        self.widths = {c.key: c.width or len(c.label) for c in self.columns}
        self._cursor_key: str | None = None
        self._lines: OrderedDict[tuple[object, ...], Strip] = OrderedDict()
        self._second = 0
        self._shown: tuple[object, ...] = ()  # _on_screen() when last drawn whole

    def on_mount(self) -> None:
        """The header shows before any row has come."""
        self.virtual_size = Size(self._width(), HEADER_LINES)

    # What other code reads ---------------------------------------------------

    @property
    def row_count(self) -> int:
        """Rows in the listing, loaded or not."""
        return self.listing.total

    @property
    def cursor_model(self) -> InstanceInfo | None:
        """The instance under the cursor, if loaded."""
        return self.listing.row(self.cursor_row) if self.row_count else None

    @property
    def cursor_key(self) -> str | None:
        """Row key under the cursor."""
        model = self.cursor_model
        return None if model is None else model.key

    @property
    def visible_rows(self) -> int:
        """How many rows fit under the header."""
        return max(1, self.scrollable_content_region.height - HEADER_LINES)

    @property
    def top_row(self) -> int:
        """The listing row on the first line under the header."""
        return max(0, round(self.scroll_y))

    def loaded_keys(self, low: int = 0, high: int | None = None) -> list[str]:
        """Row keys of the loaded rows ``low``..``high``, in order."""
        end = self.row_count if high is None else min(high, self.row_count)
        return [row.key for n in range(low, end) if (row := self.listing.row(n)) is not None]

    def cells(self, key: str) -> dict[str, Text]:
        """The cells of the loaded instance ``key`` by column key, as drawn now."""
        index = self.listing.index_of(key)
        row = None if index is None else self.listing.row(index)
        if row is None:
            raise KeyError(key)
        return dict(
            zip((c.key for c in self.columns), instance_cells(row, self.clock()), strict=True)
        )

    # Showing -----------------------------------------------------------------

    def show(self, listing: Listing, *, keep_cursor: bool = True) -> None:
        """Show ``listing`` (a new one, or the same one changed); the cursor keeps its instance."""
        key = self._cursor_key if keep_cursor else None
        old_row, old_top = self.cursor_row, self.top_row
        self.listing = listing
        self._lines.clear()
        self.virtual_size = Size(self._width(), self.row_count + HEADER_LINES)
        new_row = listing.index_of(key) if key is not None else None
        if new_row is None:
            new_row = min(old_row if keep_cursor else 0, max(0, self.row_count - 1))
        if new_row != old_row:
            # Keep the cursor's row on the same line of the screen.
            self.scroll_to(y=max(0, old_top + new_row - old_row), animate=False, immediate=True)
        self.cursor_row = new_row
        if not keep_cursor:
            self.scroll_to(y=0, animate=False, immediate=True)
        self._shown = self._on_screen()
        self.refresh()
        self._ask()

    def changed(self) -> None:
        """Rows of the same listing changed (events): keep the cursor's instance, redraw.

        Most changes at fleet scale are to rows off screen: when the rows on screen are
        the very ones drawn, in the same places, there is nothing to draw again.
        """
        if self._on_screen() == self._shown:
            self._ask()
            return
        self.show(self.listing)

    def _on_screen(self) -> tuple[object, ...]:
        """What decides the lines on screen: the listing, where it is, and its rows there
        (held, not their ids: a freed row's id may be reused by the next)."""
        top = self.top_row
        rows = (self.listing.row(n) for n in range(top, self._bottom()))
        return (self.listing, self.row_count, top, self.cursor_row, *rows)

    def refresh_live(self) -> None:
        """Ages move with the clock: redraw the visible lines (the only ones there are)."""
        self._second += 1
        self.refresh()

    def move_cursor(self, *, row: int) -> None:
        """Put the cursor on ``row`` and bring it into view."""
        self.cursor_row = row

    # Drawing -----------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        """Line ``y`` of the widget: the header, or the listing row under it."""
        scroll_x = round(self.scroll_x)
        width = self.scrollable_content_region.width
        if y < HEADER_LINES:
            strip = self._header()
        else:
            strip = self._row_line(self.top_row + y - HEADER_LINES)
        return strip.crop_extend(scroll_x, scroll_x + width, None)

    def _header(self) -> Strip:
        style = self.get_component_rich_style("instances--header")
        text = Text(no_wrap=True)
        for column in self.columns:
            text.append(" ")
            text.append(_fit(column.label, self.widths[column.key]))
            text.append(" ")
        return self._strip(text, style)

    def _row_line(self, index: int) -> Strip:
        if index >= self.row_count:
            return Strip.blank(self._width(), self.rich_style)
        row = self.listing.row(index)
        cursor = index == self.cursor_row
        key = (index, id(row), cursor, self.has_focus, self._second, tuple(self.widths.values()))
        if (line := self._lines.get(key)) is not None:
            self._lines.move_to_end(key)
            return line
        style = self.rich_style
        if cursor:
            style += self.get_component_rich_style("instances--cursor")
        elif index % 2 == 0:  # as DataTable counts: the first row is even
            style += self.get_component_rich_style("instances--even-row")
        if row is None:
            placeholder = self.get_component_rich_style("instances--placeholder")
            line = self._strip(Text(PLACEHOLDER, style=placeholder), style)
        else:
            line = self._strip(self._row_text(row), style)
        self._lines[key] = line
        if len(self._lines) > CACHED_LINES:
            self._lines.popitem(last=False)
        return line

    def _row_text(self, row: InstanceInfo) -> Text:
        text = Text(no_wrap=True)
        widened = False
        for column, cell in zip(self.columns, instance_cells(row, self.clock()), strict=True):
            width = self.widths[column.key]
            if column.width is None and cell.cell_len > width and width < FIT_CAP:
                # Fitted columns grow to what they have shown, never shrink (no jitter).
                width = self.widths[column.key] = min(FIT_CAP, cell.cell_len)
                widened = True
            cell = cell.copy()
            cell.truncate(width, overflow="ellipsis", pad=True)
            text.append(" ")
            text.append_text(cell)
            text.append(" ")
        if widened:
            self.call_later(self._widened)
        return text

    def _widened(self) -> None:
        self.virtual_size = Size(self._width(), self.row_count + HEADER_LINES)
        self._lines.clear()
        self.refresh()

    def _strip(self, text: Text, style: Style) -> Strip:
        width = max(self._width(), self.scrollable_content_region.width)
        segments = list(text.render(self.app.console))
        return Strip(Segment.apply_style(segments, style), text.cell_len).extend_cell_length(
            width, style
        )

    def _width(self) -> int:
        return sum(self.widths.values()) + 2 * len(self.columns)  # a space each side

    # Cursor and scrolling ----------------------------------------------------

    def validate_cursor_row(self, row: int) -> int:
        """The cursor stays on a row."""
        return max(0, min(row, self.row_count - 1))

    def watch_cursor_row(self, old: int, new: int) -> None:
        """Bring the cursor into view; remember its instance."""
        top, height = self.top_row, self.visible_rows
        if new < top:
            self.scroll_to(y=new, animate=False, immediate=True)
        elif new >= top + height:
            self.scroll_to(y=new - height + 1, animate=False, immediate=True)
        model = self.cursor_model
        if model is not None:
            self._cursor_key = model.key
        self._shown = self._on_screen()
        self.refresh()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        """A scroll step: redraw, and ask for rows coming into view."""
        super().watch_scroll_y(old_value, new_value)
        self._shown = self._on_screen()
        self._ask()

    def on_resize(self) -> None:
        """More lines may be on screen (all drawn again)."""
        self._shown = self._on_screen()
        self._ask()

    def _ask(self) -> None:
        """Ask for the rows on screen and a margin around them, unless they are loaded."""
        if not self.is_mounted:
            return
        top, bottom = self.top_row, self._bottom()
        probes = [*range(top, bottom), top - MARGIN // 2, bottom + MARGIN // 2]
        if any(0 <= n < self.row_count and self.listing.row(n) is None for n in probes):
            self.post_message(self.WindowWanted(max(0, top - MARGIN), bottom + MARGIN))

    def _bottom(self) -> int:
        return min(self.row_count, self.top_row + self.visible_rows)

    def on_click(self, event: events.Click) -> None:
        """A click puts the cursor on the row clicked."""
        if event.y >= HEADER_LINES:
            self.cursor_row = self.top_row + event.y - HEADER_LINES

    def action_cursor_up(self) -> None:
        """One row up."""
        self.cursor_row -= 1

    def action_cursor_down(self) -> None:
        """One row down."""
        self.cursor_row += 1

    def action_page_up(self) -> None:
        """A screenful up."""
        self.cursor_row -= self.visible_rows

    def action_page_down(self) -> None:
        """A screenful down."""
        self.cursor_row += self.visible_rows

    def action_first(self) -> None:
        """The first row."""
        self.cursor_row = 0

    def action_last(self) -> None:
        """The last row."""
        self.cursor_row = self.row_count - 1

    def action_select_cursor(self) -> None:
        """Enter: the instance under the cursor, if loaded."""
        model = self.cursor_model
        if model is not None:
            self.post_message(self.Selected(model))


def _fit(label: str, width: int) -> Text:
    text = Text(label, no_wrap=True)
    text.truncate(width, overflow="ellipsis", pad=True)
    return text
