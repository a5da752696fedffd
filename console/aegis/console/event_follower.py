"""Following the router's change events into the events pane, through outages."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from .api_client import EVENTS_PATH, ApiClient, ApiError
from .change_events import ChangeRecord, record_from_event, records_from_polls
from .events_pane import EventsPane
from .formatting import Clock
from .models import RegistrySnapshot
from .sse import ServerSentEvent

RESET: Final = "reset"


class EventFollower:
    """Reads ``GET /api/v1/admin/events`` into ``pane``, for as long as the console runs.

    When the stream ends or breaks it reconnects after ``delay(failures)`` seconds
    with ``Last-Event-ID``, so nothing retained is missed. A ``reset`` event calls
    ``reload``. A router without the stream (404) makes it fall back to ``polled``:
    the events are then read off the difference between two polls.

    Each change also goes to ``on_change`` (with its id), and ``on_stream`` hears when
    the stream opens (``resumed``: again, after it broke or ended) and when it breaks.
    """

    def __init__(
        self,
        client: ApiClient,
        pane: EventsPane,
        clock: Clock,
        *,
        reload: Callable[[], None],
        delay: Callable[[int], float],
        on_change: Callable[[ChangeRecord, str | None], None] | None = None,
        on_stream: Callable[[bool, bool], None] | None = None,
    ) -> None:
        self.client = client
        self.pane = pane
        self.clock = clock
        self.reload = reload
        self.delay = delay
        self.last_event_id: str | None = None
        self.failures = 0
        self.by_polling = False
        self.on_change = on_change
        self.on_stream = on_stream
        self._opens = 0

    async def run(self) -> None:
        """Follow until cancelled (or until the router turns out to have no stream)."""
        while True:
            try:
                async for event in self.client.events(self.last_event_id, self._opened):
                    self._handle(event)
                reason = "the router closed the stream"
            except ApiError as exc:
                if exc.status == 404:
                    self.by_polling = True
                    self.pane.set_source("from polls: this router has no event stream")
                    return
                self.failures += 1
                reason = exc.reason
            if self.on_stream is not None:
                self.on_stream(False, False)
            wait = self.delay(self.failures)
            self.pane.set_source(f"reconnecting in {wait:g}s: {reason}", trouble=True)
            await asyncio.sleep(wait)

    def polled(self, previous: RegistrySnapshot | None, current: RegistrySnapshot) -> None:
        """After each poll: when falling back, list what changed since the previous one."""
        if not self.by_polling or previous is None:
            return
        records = records_from_polls(previous.by_key(), current.by_key(), current.fetched_at)
        for record in records:
            self.pane.add(record)

    def _opened(self) -> None:
        self.failures = 0
        self._opens += 1
        self.pane.set_source(f"live from {EVENTS_PATH}")
        if self.on_stream is not None:
            self.on_stream(True, self._opens > 1)

    def _handle(self, event: ServerSentEvent) -> None:
        if event.id:
            self.last_event_id = event.id
        if event.event == RESET:
            # Changes may have been missed: the tables reload, the pane carries on.
            self.reload()
            return
        try:
            record = record_from_event(event, self.clock())
        except (KeyError, TypeError, ValueError):
            return  # not a change event this console understands; the next poll shows it
        self.pane.add(record)
        if self.on_change is not None:
            self.on_change(record, event.id)
