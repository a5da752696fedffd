"""An open-loop load generator that behaves like SDK clients: register, then heartbeat.

Each instance keeps its own timetable: it registers when its turn comes,
heartbeats every ``interval`` seconds from its registration reply, and never
waits for a reply before the next send is due (a closed loop, which waits,
hides overload: the router's slowness would slow the load down with it).
Like the SDK, an instance heartbeats on the subject its last reply named (the
lease holder's own, ``heartbeat_subject``; the shared subject before any reply
named one, after "no responders", or always with ``Plan.shared_heartbeats``, as
a wire v1 client does), and registers again after a registration timed out
(~1 s later, jittered) or was refused with ``503 retry_after`` (after
``retry_after`` x uniform(1, 1.1)), and after a heartbeat answered 404.

The generator measures its own lag (when a send went out minus when it was
due): a generator that falls behind makes instances look silent, so its
figures only count while the lag stays small. An instance is *on time* if
every heartbeat of it went out within ``ON_TIME`` of its due time.

``generate`` runs in a process of its own (``multiprocessing``, spawn); the
parent gets a ``Snapshot`` every ``Plan.report_every`` seconds and a last
one with ``final`` set. The bookkeeping classes are plain Python, with no I/O.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import random
import time
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import IntEnum
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

import msgpack
import nats

REGISTER_SUBJECT = "ipc.service.register"
HEARTBEAT_SUBJECT = "ipc.service.heartbeat"
ON_TIME = 1.0  # seconds: a heartbeat sent later than this past its due time is late
TIMEOUT_RETRY = 1.0  # seconds before a timed-out registration is sent again (then jittered)
TICK = 0.005  # seconds: the longest sleep between looks at the timetable
METADATA = {"version": "1.4.2", "zone": "eu-west-1a", "port": 8080}


def instance_id(prefix: str, index: int) -> str:
    """The id of instance ``index`` (its service is ``service_name``)."""
    return f"{prefix}-{index}"


def service_name(prefix: str, index: int, services: int) -> str:
    """The service instance ``index`` belongs to: the instances spread over ``services``."""
    return f"{prefix}-svc-{index % services}"


def index_of(prefix: str, instance: str) -> int | None:
    """The index in ``instance_id(prefix, index)``; None for another prefix's instance."""
    head, _, tail = instance.rpartition("-")
    return int(tail) if head == prefix and tail.isdigit() else None


class Histogram:
    """Counts of positive values in buckets 2.5 % wide (log scale): percentiles of millions
    of samples in a few hundred integers, mergeable across processes.

    ``max`` is exact; a percentile is its bucket's upper edge (so within 2.5 % above).
    """

    GROWTH = 1.025
    FLOOR = 1e-6  # values below count as this

    def __init__(self, counts: dict[int, int] | None = None, top: float = 0.0) -> None:
        self.counts: dict[int, int] = dict(counts or {})
        self.max = top
        self._scale = 1 / math.log(self.GROWTH)

    def add(self, value: float) -> None:
        """Count one value."""
        bucket = math.ceil(math.log(max(value, self.FLOOR) / self.FLOOR) * self._scale)
        self.counts[bucket] = self.counts.get(bucket, 0) + 1
        if value > self.max:
            self.max = value

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s counts to these."""
        for bucket, n in other.counts.items():
            self.counts[bucket] = self.counts.get(bucket, 0) + n
        self.max = max(self.max, other.max)

    @property
    def count(self) -> int:
        """How many values were added."""
        return sum(self.counts.values())

    def percentile(self, p: float) -> float:
        """The value at or below which ``p`` % of the values fall (NaN if none)."""
        total = self.count
        if not total:
            return math.nan
        rank = max(1, math.ceil(total * p / 100))
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return min(self.FLOOR * self.GROWTH**bucket, self.max)
        return self.max  # not reached: the counts add up to total

    def to_wire(self) -> dict[str, Any]:
        """A JSON- and pickle-friendly form (``from_wire`` reads it)."""
        return {"counts": [[b, n] for b, n in self.counts.items()], "max": self.max}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Histogram:
        """The histogram ``to_wire`` described."""
        return cls({int(b): int(n) for b, n in data["counts"]}, float(data["max"]))


class Kind(IntEnum):
    """What a timetable entry sends."""

    REGISTER = 0
    HEARTBEAT = 1


class State(IntEnum):
    """Where one instance stands, as its client sees it."""

    REGISTERING = 0  # a registration is due or in flight
    REGISTERED = 1  # heartbeating


@dataclass
class Counters:
    """What the generator sent and what came back, cumulative."""

    reg_sent: int = 0
    reg_ok: int = 0
    reg_refused: int = 0  # 503 with retry_after: the router asked to come back later
    reg_timeouts: int = 0
    reg_retried: int = 0  # registrations sent again after a refusal, timeout or failure
    reg_failed: int = 0  # any other error reply
    reregistered: int = 0  # registrations started again after a heartbeat's 404
    hb_sent: int = 0
    hb_ok: int = 0
    hb_not_found: int = 0
    hb_timeouts: int = 0
    hb_failed: int = 0
    hb_late: int = 0  # heartbeats sent more than ON_TIME after their due time
    late_replies: int = 0  # replies that came after their request had timed out

    def add(self, other: Counters) -> None:
        """Add ``other``'s counts to these."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Book:
    """Per-instance bookkeeping of one generator: ``count`` instances, local indexes
    ``0 .. count - 1``, in compact arrays (100,000 instances cost a few MB)."""

    count: int
    state: bytearray = field(init=False)
    epoch: array[int] = field(init=False)  # a heartbeat entry of an older epoch is stale
    seq: array[int] = field(init=False)  # the last ``seq`` sent per session
    # The ``seq`` of the registration being retried (0: none): as the SDK's transport,
    # a retry after a timeout or a refusal resends the same request.
    reg_seq: array[int] = field(init=False)
    late: bytearray = field(init=False)  # 1: some heartbeat went out late
    left: bytearray = field(init=False)  # 1: a reply showed it not ONLINE (404, status)
    reg_timed_out: bytearray = field(init=False)  # 1: some registration timed out
    first_ok: array[float] = field(init=False)  # when first registered (NaN: never)

    def __post_init__(self) -> None:
        n = self.count
        self.state = bytearray(n)
        self.epoch = array("I", bytes(4 * n))
        self.seq = array("Q", bytes(8 * n))
        self.reg_seq = array("Q", bytes(8 * n))
        self.late = bytearray(n)
        self.left = bytearray(n)
        self.reg_timed_out = bytearray(n)
        self.first_ok = array("d", [math.nan]) * n

    def next_seq(self, j: int) -> int:
        """The next ``seq`` of instance ``j``'s session (1, 2, ...)."""
        self.seq[j] += 1
        return self.seq[j]

    def registration_seq(self, j: int) -> int:
        """The ``seq`` of ``j``'s registration: the retried one's, or the next."""
        if not self.reg_seq[j]:
            self.reg_seq[j] = self.next_seq(j)
        return self.reg_seq[j]

    def heartbeat_sent(self, j: int, lag: float) -> bool:
        """Note a heartbeat of ``j`` sent ``lag`` seconds after its due time; True if late."""
        if lag > ON_TIME:
            self.late[j] = 1
            return True
        return False

    def registered(self, j: int, now: float) -> None:
        """``j``'s registration succeeded at ``now``: it heartbeats from here."""
        self.state[j] = State.REGISTERED
        self.reg_seq[j] = 0  # the next registration is a new request
        if math.isnan(self.first_ok[j]):
            self.first_ok[j] = now

    def lost(self, j: int) -> bool:
        """A heartbeat of ``j`` got 404: it must register again. False if it already is
        (several heartbeats in flight may each get a 404)."""
        self.left[j] = 1
        if self.state[j] != State.REGISTERED:
            return False
        self.state[j] = State.REGISTERING
        self.epoch[j] += 1  # its pending heartbeats are stale now
        return True

    def all_registered_at(self) -> float:
        """When the last instance first registered (NaN if some never did)."""
        if not self.count or self.never_registered():
            return math.nan
        return max(self.first_ok)

    def never_registered(self) -> int:
        """Instances that never registered."""
        return sum(1 for t in self.first_ok if math.isnan(t))

    def marked(self, flags: bytearray) -> list[int]:
        """Local indexes whose flag in ``flags`` is set."""
        return [j for j, flag in enumerate(flags) if flag]


def retry_delay(reply: dict[str, Any] | None, rand: random.Random) -> float:
    """Seconds until a failed registration is sent again, as the SDK waits: after a
    ``503`` naming ``retry_after``, that x uniform(1, 1.1) (the router's advice is an
    appointment: little jitter keeps it); else (timeout, other error)
    ``TIMEOUT_RETRY`` x uniform(1, 1.5)."""
    after = reply.get("retry_after") if reply is not None else None
    if isinstance(after, int | float) and after > 0:
        return float(after) * rand.uniform(1.0, 1.1)
    return TIMEOUT_RETRY * rand.uniform(1.0, 1.5)


def is_refusal(reply: dict[str, Any]) -> bool:
    """A ``503`` that asks to come back later (``retry_after``), as an overloaded router
    answers a registration it will not take now."""
    return reply.get("status") == 503 and isinstance(reply.get("retry_after"), int | float)


@dataclass(frozen=True)
class Plan:
    """What one generator process does: the instances with global index ``first``,
    ``first + step``, ... below ``instances``.

    Instance ``i`` registers first at ``t0 + i / rate`` (``t0``: the storm's start,
    a ``time.monotonic()`` value, the same clock in every process on Linux). Sending
    stops at ``t0 + stop_after``.
    """

    url: str
    prefix: str
    instances: int
    services: int
    rate: float
    interval: float
    stop_after: float
    timeout: float
    report_every: float = 1.0  # seconds between snapshots sent to the parent
    shared_heartbeats: bool = False  # a v1 client: ignore the replies' heartbeat_subject
    first: int = 0
    step: int = 1
    seed: int = 0

    @property
    def indexes(self) -> range:
        """The global indexes of this generator's instances."""
        return range(self.first, self.instances, self.step)


@dataclass
class Snapshot:
    """What a generator tells its parent: cumulative counters, histograms of the window
    since the previous snapshot, and at the end the per-instance findings."""

    worker: int
    counters: Counters
    latency: dict[str, Any]  # heartbeat round trip (Histogram.to_wire), this window
    lag: dict[str, Any]  # send time minus due time, every send, this window
    cpu_s: float  # this process's CPU time since the storm began
    final: bool = False
    all_registered_at: float = math.nan
    never_registered: int = 0
    late: list[int] = field(default_factory=list)  # global indexes
    left: list[int] = field(default_factory=list)  # global indexes
    reg_timed_out: list[int] = field(default_factory=list)  # global indexes


@dataclass
class _Pending:
    index: int  # local
    kind: Kind
    sent_at: float


class Generator:
    """One process's instances on one NATS connection: the timetable, the sends and
    the replies. ``run`` drives it; replies come in on one wildcard inbox, matched to
    their request by the last subject token, so no task or future is made per request."""

    def __init__(
        self, plan: Plan, nc: Any, inbox: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.plan = plan
        self.clock = clock
        self.nc = nc
        self.inbox = inbox
        self.indexes = plan.indexes
        self.book = Book(len(self.indexes))
        self.counters = Counters()
        self.latency = Histogram()
        self.lag = Histogram()
        self.rand = random.Random(plan.seed)
        self.timetable: list[tuple[float, int, int, int]] = []  # (due, local, kind, epoch)
        self.pending: dict[int, _Pending] = {}
        self.in_order: deque[tuple[float, int]] = deque()  # (sent_at, token), by send time
        self.token = 0
        self.cpu_base = time.process_time()
        names = [
            (service_name(plan.prefix, i, plan.services), instance_id(plan.prefix, i))
            for i in self.indexes
        ]
        self.names = names
        self.session = [f"{plan.prefix}-session-{i}" for i in self.indexes]
        # Each instance's heartbeat subject, as an index into the few distinct ones.
        self.subjects: list[str] = [HEARTBEAT_SUBJECT]
        self.subject_index: dict[str, int] = {HEARTBEAT_SUBJECT: 0}
        self.subject_of = array("H", bytes(2 * len(self.indexes)))

    def start(self, t0: float) -> None:
        """Put every first registration in the timetable, counted from ``t0``."""
        self.cpu_base = time.process_time()  # not the start-up's imports and connect
        rate = self.plan.rate
        # Already in due order, so already a heap.
        self.timetable = [(t0 + i / rate, j, Kind.REGISTER, 0) for j, i in enumerate(self.indexes)]

    def due(self, at: float, j: int, kind: Kind) -> None:
        """Send ``kind`` for ``j`` at ``at``."""
        heapq.heappush(self.timetable, (at, j, kind, self.book.epoch[j]))

    def body(self, j: int, kind: Kind) -> bytes:
        """The request of instance ``j``, with its session's next ``seq`` (a retried
        registration's own)."""
        service, instance = self.names[j]
        fields: dict[str, Any] = {
            "service_name": service,
            "instance_id": instance,
            "session_id": self.session[j],
        }
        if kind is Kind.REGISTER:
            fields["seq"] = self.book.registration_seq(j)
            fields["metadata"] = METADATA
        else:
            fields["seq"] = self.book.next_seq(j)
        packed: bytes = msgpack.packb(fields)
        return packed

    async def send_due(self, now: float) -> None:
        """Send everything due by ``now``; each send's lag against a fresh clock."""
        table, book, counters, clock = self.timetable, self.book, self.counters, self.clock
        while table and table[0][0] <= now:
            due, j, kind, epoch = heapq.heappop(table)
            if epoch != book.epoch[j]:
                continue  # a heartbeat of a registration that was lost since
            sent_at = clock()
            lag = sent_at - due
            self.lag.add(lag)
            self.token += 1
            token = self.token
            if kind == Kind.HEARTBEAT:
                counters.hb_sent += 1
                if book.heartbeat_sent(j, lag):
                    counters.hb_late += 1
                self.due(due + self.plan.interval, j, Kind.HEARTBEAT)
                subject = self.subjects[self.subject_of[j]]
            else:
                counters.reg_sent += 1
                subject = REGISTER_SUBJECT
            self.pending[token] = _Pending(j, Kind(kind), sent_at)
            self.in_order.append((sent_at, token))
            await self.nc.publish(subject, self.body(j, Kind(kind)), reply=f"{self.inbox}.{token}")

    def expire(self, now: float) -> None:
        """Time out the requests unanswered for ``timeout`` seconds."""
        limit = now - self.plan.timeout
        while self.in_order and self.in_order[0][0] <= limit:
            _, token = self.in_order.popleft()
            request = self.pending.pop(token, None)
            if request is None:
                continue  # answered
            if request.kind == Kind.HEARTBEAT:
                self.counters.hb_timeouts += 1  # the next one is due on its own schedule
            else:
                self.counters.reg_timeouts += 1
                self.book.reg_timed_out[request.index] = 1
                self.retry(request.index, None, now)

    def retry(self, j: int, reply: dict[str, Any] | None, now: float) -> None:
        """Register ``j`` again later, as the SDK would."""
        self.counters.reg_retried += 1
        self.due(now + retry_delay(reply, self.rand), j, Kind.REGISTER)

    async def on_reply(self, msg: Any) -> None:
        """A reply: match it to its request and act as the SDK would."""
        now = self.clock()
        token = int(msg.subject.rpartition(".")[2])
        request = self.pending.pop(token, None)
        if request is None:
            self.counters.late_replies += 1
            return
        j = request.index
        try:
            reply = msgpack.unpackb(msg.data)
            status = reply["status"]
        except Exception:
            reply, status = {}, 0  # nats-py's no-responders status message, or garbage
        counters, book = self.counters, self.book
        if status in (200, 201):
            self.follow(j, reply.get("heartbeat_subject"))
        elif status == 0:
            self.subject_of[j] = 0  # no responders on the holder's subject: the shared one
        if request.kind == Kind.HEARTBEAT:
            if status == 200:
                counters.hb_ok += 1
                self.latency.add(now - request.sent_at)
                instance = reply.get("instance") or {}
                if instance.get("status", "ONLINE") != "ONLINE":
                    book.left[j] = 1
            elif status == 404:
                counters.hb_not_found += 1
                if book.lost(j):
                    counters.reregistered += 1
                    self.due(now, j, Kind.REGISTER)
            else:
                counters.hb_failed += 1
            return
        if status in (200, 201):
            counters.reg_ok += 1
            book.registered(j, now)
            self.due(now + self.plan.interval, j, Kind.HEARTBEAT)
            return
        if is_refusal(reply):
            counters.reg_refused += 1
        else:
            counters.reg_failed += 1
        self.retry(j, reply, now)

    def follow(self, j: int, subject: Any) -> None:
        """Heartbeat ``j`` on ``subject`` from now on, as the SDK does with a reply's
        ``heartbeat_subject``."""
        if self.plan.shared_heartbeats or not isinstance(subject, str):
            return
        index = self.subject_index.get(subject)
        if index is None:
            index = self.subject_index[subject] = len(self.subjects)
            self.subjects.append(subject)
        self.subject_of[j] = index

    def snapshot(self, worker: int, final: bool = False) -> Snapshot:
        """The counters so far and this window's histograms (which start afresh)."""
        snap = Snapshot(
            worker,
            Counters(**vars(self.counters)),
            self.latency.to_wire(),
            self.lag.to_wire(),
            time.process_time() - self.cpu_base,
            final=final,
        )
        self.latency, self.lag = Histogram(), Histogram()
        if final:
            book, indexes = self.book, self.indexes
            snap.all_registered_at = book.all_registered_at()
            snap.never_registered = book.never_registered()
            snap.late = [indexes[j] for j in book.marked(book.late)]
            snap.left = [indexes[j] for j in book.marked(book.left)]
            snap.reg_timed_out = [indexes[j] for j in book.marked(book.reg_timed_out)]
        return snap


async def _generate(worker: int, plan: Plan, go: Event, t0: Any, out: Queue[Snapshot]) -> None:
    # A big pending buffer: at a burst's peak the sends must not wait for the socket.
    nc = await nats.connect(
        plan.url, pending_size=64 * 1024 * 1024, max_reconnect_attempts=3, connect_timeout=5
    )
    inbox = nc.new_inbox()
    generator = Generator(plan, nc, inbox)
    # No limits (0): dropping replies as a slow consumer would count as router timeouts.
    await nc.subscribe(
        f"{inbox}.*", cb=generator.on_reply, pending_msgs_limit=0, pending_bytes_limit=0
    )
    await nc.flush()
    out.put(generator.snapshot(worker))  # ready
    await asyncio.to_thread(go.wait)
    start = float(t0.value)
    generator.start(start)
    stop_at = start + plan.stop_after
    next_report = time.monotonic() + plan.report_every
    while (now := time.monotonic()) < stop_at:
        await generator.send_due(now)
        generator.expire(now)
        if now >= next_report:
            next_report += plan.report_every
            out.put(generator.snapshot(worker))
        wake = generator.timetable[0][0] if generator.timetable else now + TICK
        await asyncio.sleep(min(max(0.0, wake - time.monotonic()), TICK))
    # The last replies: wait out the requests still in flight.
    end = time.monotonic() + plan.timeout
    while generator.pending and time.monotonic() < end:
        await asyncio.sleep(0.05)
        generator.expire(time.monotonic())
    generator.expire(end + 1)
    out.put(generator.snapshot(worker, final=True))
    await nc.close()


def generate(worker: int, plan: Plan, go: Event, t0: Any, out: Queue[Snapshot]) -> None:
    """A generator process's body: connect, report ready, wait for ``go``, then keep the
    timetable from ``t0.value`` (a shared double) until ``plan.stop_after``."""
    asyncio.run(_generate(worker, plan, go, t0, out))


def deal(plan: Plan, processes: int) -> list[Plan]:
    """``plan``'s instances dealt out to ``processes`` generators, every ``processes``-th
    to each, so each takes an even share of every moment's registrations."""
    return [replace(plan, first=k, step=processes, seed=k) for k in range(processes)]
