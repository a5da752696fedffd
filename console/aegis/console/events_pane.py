"""The recent-events pane: who changed and how, newest first."""

from __future__ import annotations

import time
from collections import deque
from typing import Final

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from .change_events import ChangeRecord
from .formatting import plain, status_text

KEPT: Final = 100
"""Events kept on screen; older ones drop off the end."""

REDRAW_SECONDS: Final = 0.5
"""At most this often the pane is drawn again: each drawing renders the whole table,
so at 100 changes a second drawing per event took most of the console's CPU."""

KIND_STYLES: Final = {
    "registered": "green",
    "status_changed": "yellow",
    "deregistered": "red",
    "removed": "dim red",
    "maintenance": "magenta",
}


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


def events_table(records: list[ChangeRecord]) -> Table:
    """The records as a table: time, event, service, instance, status change, the operator
    who made it (an admin token's name; blank for the registry's own changes), note."""
    table = Table(box=None, padding=(0, 1), expand=True, show_edge=False)
    table.add_column("UTC", no_wrap=True, width=8)
    table.add_column("Event", no_wrap=True, width=14)
    table.add_column("Service", no_wrap=True, ratio=1)
    table.add_column("Instance", no_wrap=True, ratio=1)
    table.add_column("Status", no_wrap=True, width=21)
    table.add_column("By", no_wrap=True, width=12)
    table.add_column("Note", no_wrap=True, ratio=2)
    for record in records:
        table.add_row(
            Text(record.at.strftime("%H:%M:%S"), style="dim"),
            Text(record.kind, style=KIND_STYLES.get(record.kind, "")),
            plain(record.instance.service_name),
            plain(record.instance.instance_id, "bold"),
            _status_change(record),
            Text(record.actor or "", style="bold"),
            _note(record),
        )
    return table


class EventsPane(VerticalScroll):
    """The last ``KEPT`` change events, newest on top, and where they come from."""

    can_focus = False  # tab moves between the two tables only

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="box")
        self.records: deque[ChangeRecord] = deque(maxlen=KEPT)
        self._body = Static(Text("No changes seen yet.", style="dim"), id="events-body")
        self._pending = False
        self._drawn_at = -REDRAW_SECONDS  # monotonic time of the last drawing

    def compose(self) -> ComposeResult:
        """One static body, redrawn as events come."""
        yield self._body

    def on_mount(self) -> None:
        """The title says the order; the subtitle says the source."""
        self.border_title = "Recent events, newest first"

    def add(self, record: ChangeRecord) -> None:
        """Put ``record`` on top; a burst of events is drawn once, and drawings are
        at least ``REDRAW_SECONDS`` apart (the first after a quiet spell at once)."""
        self.records.appendleft(record)
        if not self._pending:
            self._pending = True
            wait = self._drawn_at + REDRAW_SECONDS - time.monotonic()
            if wait > 0:
                self.set_timer(wait, self._redraw)
            else:
                self.call_later(self._redraw)

    def set_source(self, text: str, *, trouble: bool = False) -> None:
        """Say where the events come from, or why they do not."""
        self.border_subtitle = text
        self.set_class(trouble, "-trouble")

    def _redraw(self) -> None:
        self._pending = False
        self._drawn_at = time.monotonic()
        records = list(self.records)
        # One line per event and one for the header (no column wraps): told, not
        # measured, the height spares a second rendering of the table for the layout.
        self._body.styles.height = len(records) + 1
        self._body.update(events_table(records))
