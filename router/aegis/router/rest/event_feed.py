"""Every change event of every router, kept for a while and handed to HTTP streams.

The feed subscribes to ``ipc.events.service.*`` for the changes other routers
make, and takes this router's own from its event sink (``add_own``: the
router's connection does not hear its own publishes). It numbers each event
with a sequence local to this router, keeps the last ``capacity`` of them
(and at most ``max_bytes`` of their MessagePack bodies), and fans each out
to the open streams.
A stream resumes from an event id ``<router-id>:<sequence>``; when what it
asks for is not retained (another router's id, too old, or lost while NATS
was away) it is told to reload instead of silently missing changes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field

import structlog
from aegis.wire.codec import pack, unpack
from aegis.wire.messages import ChangeEvent, events_subject
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

log = structlog.get_logger("aegis.router.rest.event_feed")

DEFAULT_CAPACITY = 10_000
# Events carry metadata (up to 16 KiB each by default): bound the memory too.
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_QUEUE_SIZE = 1_000


def first_sequence() -> int:
    """Where a feed starting now numbers from: the wall clock in microseconds.

    A router restarted under the same ``--router-id`` must not hand out ids a
    client kept from its previous life; starting past every earlier number
    makes such ids look too old, so the client is told to reload.
    """
    return time.time_ns() // 1_000


class Entry:
    """One retained event: its sequence, service, and its SSE frame.

    The frame is encoded on first use, once: a mass expiry puts 100,000 events
    through the feed, most of which no stream ever sends, and the router's
    event loop must not pay to encode them.
    """

    __slots__ = ("_data", "_frame", "_id", "_kind", "sequence", "service")

    def __init__(self, sequence: int, service: str, kind: str, data: bytes, event_id: str) -> None:
        self.sequence = sequence
        self.service = service
        self._kind = kind
        self._data = data  # the event as NATS carried it (MessagePack): compact
        self._id = event_id
        self._frame: bytes | None = None

    @property
    def size(self) -> int:
        """Bytes of the retained event (its frame, once a stream sent it, about as many)."""
        return len(self._data)

    @property
    def frame(self) -> bytes:
        """``id:``, ``event:`` and ``data:`` (the event as JSON) lines, and a blank one."""
        if self._frame is None:
            body = json.dumps(unpack(self._data), separators=(",", ":"), ensure_ascii=False)
            self._frame = f"id: {self._id}\nevent: {self._kind}\ndata: {body}\n\n".encode()
        return self._frame


@dataclass(frozen=True, slots=True)
class Reset:
    """Why a stream must reload its snapshot: a stable ``reason`` and a sentence.

    ``sequence`` is the feed's head when it was made: the resume point it carries.
    """

    reason: str
    message: str
    sequence: int


class TooManyStreamsError(Exception):
    """``max_streams`` streams are open already."""


class StreamEndedError(Exception):
    """The stream must end: ``reset`` set if the client missed events (overflow)."""

    def __init__(self, reason: str, reset: Reset | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reset = reset


@dataclass(eq=False, slots=True)
class Stream:
    """One open stream's view of the feed: what to replay, then live entries.

    ``reset`` (if set) is to be sent first; then ``backlog``; then ``next()``.
    The live queue holds at most ``limit`` entries; past that the stream is
    ended with a reset rather than the router's memory growing.
    """

    feed: EventFeed
    service: str | None
    limit: int
    backlog: list[Entry]
    reset: Reset | None
    _queue: deque[Entry] = field(default_factory=deque)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _ended: StreamEndedError | None = None

    def offer(self, entry: Entry) -> None:
        """Queue ``entry`` if it is this stream's service; end the stream if it is full."""
        if self._ended is not None or (self.service is not None and entry.service != self.service):
            return
        if len(self._queue) >= self.limit:
            self._queue.clear()  # dropped now: a reset follows, the client reloads anyway
            message = f"the client fell more than {self.limit} events behind; reconnect"
            self.end(StreamEndedError("overflow", Reset("overflow", message, entry.sequence)))
            return
        self._queue.append(entry)
        self._wake.set()

    def notify(self, reset: Reset) -> None:
        """Tell this stream it may have missed events; it carries on live afterwards."""
        if self._ended is None:
            self._queue.clear()
            self.reset = reset
            self._wake.set()

    def end(self, why: StreamEndedError) -> None:
        """Make ``next()`` raise ``why`` from now on."""
        if self._ended is None:
            self._ended = why
            self._wake.set()

    async def next(self, quiet: float) -> Entry | Reset | None:
        """The next live entry or reset, None after ``quiet`` seconds without one.

        Raises ``StreamEndedError`` when the stream must close.
        """
        if not self._queue and self.reset is None and self._ended is None:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), quiet)
            except TimeoutError:
                return None
        if self._ended is not None:
            raise self._ended
        if self.reset is not None:
            reset, self.reset = self.reset, None
            return reset
        return self._queue.popleft() if self._queue else None

    def close(self) -> None:
        """Leave the feed (idempotent)."""
        self.feed.leave(self)


class EventFeed:
    """Recent change events of every router, and the streams that follow them."""

    def __init__(
        self,
        router_id: str,
        *,
        max_streams: int,
        capacity: int = DEFAULT_CAPACITY,
        max_bytes: int = DEFAULT_MAX_BYTES,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        first: int | None = None,
    ) -> None:
        self.router_id = router_id
        self.max_streams = max_streams
        self.queue_size = queue_size
        self._entries: deque[Entry] = deque()
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._bytes = 0
        start = first_sequence() if first is None else first
        self.head = start - 1  # the last sequence given out
        self._resumable_from = start - 1  # ids before this may have missed events
        self._streams: set[Stream] = set()
        self._subscription: NatsSubscription | None = None
        self._closed = False

    @property
    def open_streams(self) -> int:
        """How many streams follow the feed now."""
        return len(self._streams)

    @property
    def version(self) -> str:
        """The id of the last change this feed holds: a stream resumed after it gets
        every later change, and only those (what a listing read now reflects)."""
        return self.event_id(self.head)

    def event_id(self, sequence: int) -> str:
        """The SSE id of ``sequence``: ``<router-id>:<sequence>``."""
        return f"{self.router_id}:{sequence}"

    async def start(self, nc: NatsClient) -> None:
        """Follow every service's change events on ``nc``."""
        self._subscription = await nc.subscribe(events_subject(), cb=self._on_message)

    async def stop(self) -> None:
        """Stop following NATS and end every open stream."""
        self._closed = True
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None
        for stream in list(self._streams):
            stream.end(StreamEndedError("shutdown"))

    async def _on_message(self, msg: Msg) -> None:
        # Checked only as far as a stream needs (the routers made these events
        # from the model): a full validation costs more than the sweep that
        # published them.
        try:
            body = unpack(msg.data)
            kind, service = body["event"], body["instance"]["service_name"]
            if not (isinstance(kind, str) and isinstance(service, str)):
                raise TypeError(kind, service)
        except Exception:
            log.warning("event_feed_malformed", subject=msg.subject, size=len(msg.data))
            return
        self._add(service, kind, msg.data)

    def add_own(self, service: str, kind: str, data: bytes) -> Entry:
        """An event this router published (its connection does not hear its own)."""
        return self._add(service, kind, data)

    def append(self, event: ChangeEvent) -> Entry:
        """Number ``event``, retain it, and hand it to every open stream."""
        return self._add(event.instance.service_name, event.event.value, pack(event))

    def _add(self, service: str, kind: str, data: bytes) -> Entry:
        self.head += 1
        entry = Entry(self.head, service, kind, data, self.event_id(self.head))
        self._entries.append(entry)
        self._bytes += entry.size
        while self._entries and (
            len(self._entries) > self._capacity or self._bytes > self._max_bytes
        ):
            self._bytes -= self._entries.popleft().size
        for stream in list(self._streams):
            stream.offer(entry)
        return entry

    def gap(self, cause: str) -> None:
        """Events may have been lost (NATS was away): older ids stop resuming, streams reset."""
        # A number no event gets: ids up to the old head refuse to resume, the reset's resumes.
        self.head += 1
        self._resumable_from = self.head
        message = f"this router may have missed changes ({cause}); reload the snapshot"
        reset = Reset(cause, message, self.head)
        for stream in self._streams:
            stream.notify(reset)
        log.info("event_feed_gap", cause=cause, streams=len(self._streams))

    def open(self, service: str | None, last_event_id: str | None) -> Stream:
        """A new stream of ``service`` (None: all), resuming after ``last_event_id`` if given.

        Raises ``TooManyStreamsError`` past ``max_streams``, and ``StreamEndedError`` once stopped.
        """
        if self._closed:
            raise StreamEndedError("shutdown")
        if len(self._streams) >= self.max_streams:
            raise TooManyStreamsError(f"{self.max_streams} event streams are open on this router")
        backlog: list[Entry] = []
        reset = None
        if last_event_id:
            after, reset = self._resume_point(last_event_id)
            if after is not None:
                backlog = [
                    e
                    for e in self._entries
                    if e.sequence > after and (service is None or e.service == service)
                ]
        stream = Stream(self, service, self.queue_size, backlog, reset)
        self._streams.add(stream)
        return stream

    def leave(self, stream: Stream) -> None:
        """Forget ``stream``."""
        self._streams.discard(stream)

    def _resume_point(self, last_event_id: str) -> tuple[int | None, Reset | None]:
        """The sequence to replay after, or a reset saying why that is impossible."""
        router, _, number = last_event_id.rpartition(":")
        if router != self.router_id or not number.isdecimal():
            return None, Reset(
                "unknown_id",
                f"event id {last_event_id!r} is not from this router ({self.router_id}); "
                "reload the snapshot",
                self.head,
            )
        sequence = int(number)
        oldest = self._entries[0].sequence if self._entries else self.head + 1
        if sequence > self.head or sequence < max(oldest - 1, self._resumable_from):
            return None, Reset(
                "expired",
                f"event {last_event_id!r} is older than what this router retains, or "
                "from before it restarted or lost NATS; reload the snapshot",
                self.head,
            )
        return sequence, None
