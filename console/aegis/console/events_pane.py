"""The recent-events pane: who changed and how, newest first.

Drawn with Textual's Line API (``ScrollView`` + ``render_line``): each event is
rendered to one line once, when first shown, and kept; a new event costs one
line, not a table of ``KEPT`` rows laid out again.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from math import ceil
from typing import Final

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .change_events import ChangeRecord
from .formatting import plain, status_text

KEPT: Final = 100
"""Events kept on screen; older ones drop off the end."""

REDRAW_SECONDS: Final = 0.5
"""At most this often the pane is drawn again: a burst of events is drawn once."""

EMPTY: Final = "No changes seen yet."

KIND_STYLES: Final = {
    "registered": "green",
    "status_changed": "yellow",
    "deregistered": "red",
    "removed": "dim red",
    "maintenance": "magenta",
}


@dataclass(frozen=True, slots=True)
class EventColumn:
    """A column of the pane: a fixed ``width``, or a ``ratio`` of the width left over."""

    label: str
    width: int | None = None
    ratio: int = 0


EVENT_COLUMNS: Final = (
    EventColumn("UTC", width=8),
    EventColumn("Event", width=14),
    EventColumn("Service", ratio=1),
    EventColumn("Instance", ratio=1),
    EventColumn("Status", width=21),
    EventColumn("By", width=12),
    EventColumn("Note", ratio=2),
)
PADDING: Final = 1
"""Spaces on each side of every cell."""


def column_widths(total: int) -> tuple[int, ...]:
    """The text width of each column when the pane is ``total`` cells wide.

    As Rich's expanding table shares it (the look the pane had as one): fixed columns
    first, the rest by ratio, rounded up in column order, at least one cell each.
    """
    outer = 2 * PADDING
    fixed = sum(c.width + outer for c in EVENT_COLUMNS if c.width is not None)
    left = max(0, total - fixed)
    ratio_left = sum(c.ratio for c in EVENT_COLUMNS if c.width is None)
    widths: list[int] = []
    for column in EVENT_COLUMNS:
        if column.width is not None:
            widths.append(column.width)
            continue
        share = max(1 + outer, ceil(column.ratio * left / ratio_left))
        ratio_left -= column.ratio
        left -= share
        widths.append(share - outer)
    return tuple(widths)


def _status_change(record: ChangeRecord) -> Text:
    """``UNHEALTHY → ONLINE``, or the status alone when it did not change."""
    now = status_text(record.instance.status)
    previous = record.previous_status
    if previous is None or previous == record.instance.status:
        return now
    return Text.assemble(status_text(previous), " → ", now)


def _note(record: ChangeRecord) -> Text:
    mark = record.instance.maintenance
    if record.kind != "maintenance":
        return Text("")
    if mark is None:
        return Text("out of maintenance", style="magenta")
    return Text.assemble(("in maintenance: ", "magenta"), mark.reason)


def event_cells(record: ChangeRecord) -> tuple[Text, ...]:
    """One event's cells: time, event, service, instance, status change, the operator who
    made it (an admin token's name; blank for the registry's own changes), note."""
    return (
        Text(record.at.strftime("%H:%M:%S"), style="dim"),
        Text(record.kind, style=KIND_STYLES.get(record.kind, "")),
        plain(record.instance.service_name),
        plain(record.instance.instance_id, "bold"),
        _status_change(record),
        Text(record.actor or "", style="bold"),
        _note(record),
    )


def header_text(widths: tuple[int, ...]) -> Text:
    """The column labels, laid out at ``widths``, in bold."""
    return _row(tuple(Text(c.label) for c in EVENT_COLUMNS), widths, style="bold")


def event_text(record: ChangeRecord, widths: tuple[int, ...]) -> Text:
    """One event as its line of the pane, laid out at ``widths``."""
    return _row(event_cells(record), widths)


def _row(cells: tuple[Text, ...], widths: tuple[int, ...], style: str = "") -> Text:
    line = Text(no_wrap=True)
    pad = " " * PADDING
    for cell, width in zip(cells, widths, strict=True):
        cell = cell.copy()
        cell.truncate(width, overflow="ellipsis", pad=True)
        line.append(pad)
        line.append_text(cell)
        line.append(pad)
    if style:
        line.stylize(style)  # a span, not the base style: Text.render draws only spans
    return line


class EventsPane(ScrollView):
    """The last ``KEPT`` change events, newest on top, and where they come from.

    Line 0 is the column header and line ``n`` the ``n``-th newest event; they scroll
    together. Each event's line is rendered once for a given width and style.
    """

    can_focus = False  # tab moves between the two tables only

    DEFAULT_CSS = """
    EventsPane { overflow-x: hidden; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="box")
        self.records: deque[ChangeRecord] = deque(maxlen=KEPT)
        # Beside ``records``, the line each has been drawn as (None: not yet).
        self._lines: deque[Strip | None] = deque(maxlen=KEPT)
        self._drawn_for: tuple[int, Style] | None = None  # the width and style of _lines
        self._widths: tuple[int, ...] = ()
        self._header: Strip | None = None
        self._pending = False
        self._drawn_at = -REDRAW_SECONDS  # monotonic time of the last drawing

    def on_mount(self) -> None:
        """The title says the order; the subtitle says the source."""
        self.border_title = "Recent events, newest first"
        self.virtual_size = Size(0, 1)

    @property
    def line_count(self) -> int:
        """Lines the pane has to show: the header and the events, or the empty note."""
        return len(self.records) + 1 if self.records else 1

    def add(self, record: ChangeRecord) -> None:
        """Put ``record`` on top; a burst of events is drawn once, and drawings are
        at least ``REDRAW_SECONDS`` apart (the first after a quiet spell at once)."""
        self.records.appendleft(record)
        self._lines.appendleft(None)
        if not self._pending:
            self._pending = True
            wait = self._drawn_at + REDRAW_SECONDS - time.monotonic()
            if wait > 0:
                self.set_timer(wait, self._redraw)
            else:
                self.call_later(self._redraw)

    def set_source(self, text: str, *, trouble: bool = False) -> None:
        """Say where the events come from, or why they do not."""
        if self.border_subtitle != text:
            self.border_subtitle = text
        self.set_class(trouble, "-trouble")

    def _redraw(self) -> None:
        self._pending = False
        self._drawn_at = time.monotonic()
        self.virtual_size = Size(0, self.line_count)
        self.refresh()

    def render_line(self, y: int) -> Strip:
        """Line ``y`` of the pane: the header, an event, or blank."""
        width = self.scrollable_content_region.width
        base = self.rich_style
        if self._drawn_for != (width, base):
            # A resize or a theme change: every line is laid out again, when next shown.
            self._drawn_for = (width, base)
            self._widths = column_widths(width)
            self._header = None
            self._lines = deque([None] * len(self._lines), maxlen=KEPT)
        index = round(self.scroll_y) + y
        if not self.records:
            if index == 0:
                return self._strip(Text.styled(EMPTY, "dim"), width, base)
            return Strip.blank(width, base)
        if index == 0:
            if self._header is None:
                self._header = self._strip(header_text(self._widths), width, base)
            return self._header
        if index > len(self.records):
            return Strip.blank(width, base)
        line = self._lines[index - 1]
        if line is None:
            text = event_text(self.records[index - 1], self._widths)
            line = self._lines[index - 1] = self._strip(text, width, base)
        return line

    def _strip(self, text: Text, width: int, base: Style) -> Strip:
        segments = Segment.apply_style(text.render(self.app.console), base)
        return Strip(segments, text.cell_len).crop_extend(0, width, base)
