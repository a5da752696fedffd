"""Every change event of every router, kept for a while and handed to HTTP streams.

The feed subscribes to ``ipc.events.service.*`` for the changes other routers
make, and takes this router's own from its event sink (``add_own``: the
router's connection does not hear its own publishes). It numbers each event
with a sequence local to this router, keeps the last ``capacity`` of them
(and at most ``max_bytes`` of their MessagePack bodies), and fans each out
to the open streams. On the memory store, a stream resumes from an event id
``<router-id>:<sequence>``; when what it asks for is not retained (another
router's id, too old, or lost while NATS was away) it is told to reload
instead of silently missing changes.

On the JetStream store the feed is built from the bucket's watch instead
(``bucket`` given): the store numbers each event with the revision of the
write that made it (``add_at``) and moves the head on every revision
(``advance``), so ids are ``<bucket>:<revision>``, one order on every router:
a stream may resume on any router that retains the id, and an id ahead of
this router's head (listed on a router further along) waits for the later
changes instead of being refused.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog
from aegis.router.rest.errors import quoted
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
    after: int = 0  # live entries up to this sequence are not the stream's (resumed ahead)
    _queue: deque[Entry] = field(default_factory=deque)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _ended: StreamEndedError | None = None

    def offer(self, entry: Entry) -> None:
        """Queue ``entry`` if it is this stream's service; end the stream if it is full."""
        if (
            self._ended is not None
            or (self.service is not None and entry.service != self.service)
            or entry.sequence <= self.after
        ):
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
            self.after = 0  # the client reloads at the reset's point: everything later is news
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
        bucket: str | None = None,
    ) -> None:
        self.router_id = router_id
        self.bucket = bucket  # set: ids are the bucket's revisions (the store feeds them)
        self.max_streams = max_streams
        self.queue_size = queue_size
        self._entries: deque[Entry] = deque()
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._bytes = 0
        if bucket is not None:
            start = 1 if first is None else first  # until ``begin`` says where the watch is
        else:
            start = first_sequence() if first is None else first
        self.head = start - 1  # the last sequence given out (the last revision seen)
        self._resumable_from = start - 1  # ids before this may have missed events
        self._dropped = start - 1  # the last entry no longer retained
        self._changed = start - 1  # the last event (or gap): the head may be past it
        self._streams: set[Stream] = set()
        self._subscription: NatsSubscription | None = None
        self._closed = False
        # From a bucket: waits until the watch has seen this router's own writes.
        self.settle: Callable[[], Awaitable[None]] | None = None

    async def caught_up(self) -> None:
        """Return once ``version`` covers every change this router made (from a bucket its
        own writes reach the feed through the watch, a moment after they are made)."""
        if self.settle is not None:
            await self.settle()

    @property
    def open_streams(self) -> int:
        """How many streams follow the feed now."""
        return len(self._streams)

    @property
    def version(self) -> str:
        """The id of the last change this feed holds: a stream resumed after it gets
        every later change, and only those (what a listing read now reflects)."""
        return self.event_id(self.head)

    @property
    def changed(self) -> str:
        """The id of the last event (or gap): unlike ``version`` it stays while the
        bucket only takes writes that are no event (lease refreshes), so an entity
        tag made from it stays too."""
        return self.event_id(self._changed)

    def event_id(self, sequence: int) -> str:
        """The SSE id of ``sequence``: ``<router-id>:<sequence>``, or ``<bucket>:<revision>``."""
        return f"{self.bucket or self.router_id}:{sequence}"

    async def start(self, nc: NatsClient) -> None:
        """Follow every service's change events on ``nc`` (not from a bucket: the store
        feeds those)."""
        if self.bucket is not None:
            return
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

    def add_own(self, service: str, kind: str, data: bytes) -> Entry | None:
        """An event this router published (its connection does not hear its own); from a
        bucket, None: the store hands it over when the watch sees the write."""
        if self.bucket is not None:
            return None
        return self._add(service, kind, data)

    def begin(self, revision: int) -> None:
        """From a bucket: the watch's snapshot is complete at ``revision``; ids from
        there on resume."""
        self.head = max(self.head, revision)
        self._resumable_from = self._dropped = self._changed = self.head

    def advance(self, revision: int) -> None:
        """From a bucket: the watch has seen every revision up to ``revision``."""
        self.head = max(self.head, revision)

    def add_at(self, revision: int, service: str, kind: str, data: bytes) -> Entry | None:
        """From a bucket: the event the write at ``revision`` made (None if the feed is
        past it already)."""
        if revision <= self.head:
            return None
        self.head = revision - 1
        return self._add(service, kind, data)

    def append(self, event: ChangeEvent) -> Entry:
        """Number ``event``, retain it, and hand it to every open stream."""
        return self._add(event.instance.service_name, event.event.value, pack(event))

    def _add(self, service: str, kind: str, data: bytes) -> Entry:
        self.head += 1
        self._changed = self.head
        entry = Entry(self.head, service, kind, data, self.event_id(self.head))
        self._entries.append(entry)
        self._bytes += entry.size
        while self._entries and (
            len(self._entries) > self._capacity or self._bytes > self._max_bytes
        ):
            dropped = self._entries.popleft()
            self._bytes -= dropped.size
            self._dropped = dropped.sequence
        for stream in list(self._streams):
            stream.offer(entry)
        return entry

    def gap(self, cause: str) -> None:
        """Events may have been lost (NATS was away): older ids stop resuming, streams reset."""
        # A number no event gets: ids up to the old head refuse to resume, the reset's resumes.
        # (From a bucket the head is a revision the watch has seen: kept as it is.)
        if self.bucket is None:
            self.head += 1
        self._resumable_from = self._changed = self.head
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
        after = 0
        if last_event_id:
            resume, reset = self._resume_point(last_event_id)
            if resume is not None and resume > self.head:
                after = resume  # ahead of this router: only what comes after it, live
            elif resume is not None:
                backlog = [
                    e
                    for e in self._entries
                    if e.sequence > resume and (service is None or e.service == service)
                ]
        stream = Stream(self, service, self.queue_size, backlog, reset, after)
        self._streams.add(stream)
        return stream

    def leave(self, stream: Stream) -> None:
        """Forget ``stream``."""
        self._streams.discard(stream)

    def _resume_point(self, last_event_id: str) -> tuple[int | None, Reset | None]:
        """The sequence to replay after, or a reset saying why that is impossible."""
        source, _, number = last_event_id.rpartition(":")
        if source != (self.bucket or self.router_id) or not (
            number.isascii() and number.isdecimal()
        ):
            where = f"bucket {self.bucket}" if self.bucket else f"this router ({self.router_id})"
            return None, Reset(
                "unknown_id",
                f"event id {quoted(last_event_id)} is not from {where}; reload the snapshot",
                self.head,
            )
        sequence = int(number)
        if self.bucket is not None and sequence > self.head:
            return sequence, None  # the bucket has it, this router's watch not yet
        if sequence > self.head or sequence < max(self._dropped, self._resumable_from):
            return None, Reset(
                "expired",
                f"event {quoted(last_event_id)} is older than what this router retains, or "
                "from before it restarted or lost NATS; reload the snapshot",
                self.head,
            )
        return sequence, None
