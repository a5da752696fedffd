"""Registrations wait in a lane of their own, bounded by time, so heartbeats go first.

A registration costs the router many times what a steady heartbeat does
(validation and a store write against a reply from memory). When a fleet
registers all at once, an unbounded queue of registrations would hold the
event loop, heartbeats would wait behind them, instances would miss their
deadlines, and every miss would add a store write: a loop that keeps a router
down once it starts. So, after the Amazon Builders' Library's "Using load
shedding to avoid overload":

- registrations are served by a fixed number of workers, never more at once,
  so each turn of the event loop stays short and the heartbeat subscriptions
  (answered inline, from memory) get their turn;
- one that would wait longer than ``max_wait`` is refused at once, cheaply
  (no decoding, no validation), with 503 ``OVERLOADED`` and a ``retry_after``
  from the lane's measured pace; the SDK honours it with jitter;
- one whose caller will have given up (``deadline``, the SDK's timeout)
  before it could be answered is dropped unanswered instead of served, so no
  work is spent on callers that are gone.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import structlog
from aegis.connect.tasks import cancel_all
from aegis.router.bus.endpoint_stats import EndpointStats
from aegis.router.domain import LaneLimits
from aegis.router.metrics import SHED
from aegis.wire.codec import pack_map
from aegis.wire.messages import REQUEST_ID_HEADER, ErrorCode
from nats.aio.msg import Msg

log = structlog.get_logger("aegis.router.bus.admission")


class Handler(Protocol):
    """The reply to a request's body, when it is ready. A handler of a per-service
    subject (its ``scoped`` attribute true) is also given the subject the request came on
    (``subject=``), so it can check that the body names the subject's service."""

    def __call__(self, data: bytes, /, *, subject: str = ...) -> Awaitable[bytes]:
        """Answer ``data``."""


class AnswerNow(Protocol):
    """A handler's ``answer_now``: the reply to a body and request id (and, for a scoped
    handler, subject), if it needs no wait; else the handler to await for it (one that
    goes on from what was done already)."""

    def __call__(
        self, data: bytes, request_id: str | None, subject: str = ..., /
    ) -> bytes | Handler:
        """The reply, or what to await for it."""


@dataclass(frozen=True, slots=True)
class Route:
    """One subject served through a lane: its handler, its counters, and whether the
    handler wants the subject (``scoped``)."""

    handler: Handler
    stats: EndpointStats
    answer_now: AnswerNow | None
    scoped: bool

    @classmethod
    def of(cls, handler: Handler, stats: EndpointStats) -> Route:
        """The route of ``handler``, as it says it wants to be called."""
        scoped = bool(getattr(handler, "scoped", False))
        return cls(handler, stats, getattr(handler, "answer_now", None), scoped)


# retry_after bounds: soon enough that capacity freed is used, late enough that
# a refused fleet does not come straight back as the same storm.
MIN_RETRY_AFTER = 0.5
MAX_RETRY_AFTER = 30.0
# Appointments are given at this multiple of the rate measured, so the lane stays
# full (and its measured rate can rise); a caller back too early is refused again,
# cheaply, and given a new one.
OVERBOOK = 1.25
# How often the rate served is measured (Lane._measure).
RATE_PERIOD = 1.0
# The pace (seconds per request) is an average over about this many: short, so a
# store that slows down under load shows within a fraction of a second.
PACE_WINDOW = 32


def overloaded_reply(retry_after: float, waiting: int) -> bytes:
    """503 ``OVERLOADED``: come back in ``retry_after`` seconds; nothing was read."""
    return pack_map(
        {
            "ok": False,
            "status": 503,
            "error": {
                "code": ErrorCode.OVERLOADED.value,
                "message": f"the router is at its registration capacity ({waiting} waiting); "
                f"nothing was stored: retry in {retry_after:.1f}s",
            },
            "retry_after": retry_after,
        }
    )


class Lane:
    """A bounded, time-limited queue in front of one subject's handler, or of several
    subjects' (``route``): the shared and the per-service registrations wait in one."""

    def __init__(
        self,
        kind: str,
        handler: Handler,
        limits: LaneLimits,
        stats: EndpointStats,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kind = kind
        self._route = Route.of(handler, stats)
        self._limits = limits
        self._clock = clock
        self._queue: deque[tuple[Msg, float, Route]] = deque()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()  # set when nothing is queued or served
        self._workers: list[asyncio.Task[None]] = []
        self._busy = 0
        # Seconds per request served, averaged (the lane's pace, for retry_after).
        self._cost = 0.01
        # The first moment of service not yet promised to a refused caller, and the
        # rate served (see retry_after).
        self._next_free = 0.0
        self._rate: float | None = None
        self._window_start = clock()
        self._served_n = 0
        self._refused = SHED.labels(kind, "refused")
        self._dropped = SHED.labels(kind, "dropped")
        self.shedding = False

    def start(self) -> None:
        """Start the workers in the running loop."""
        self._workers = [
            asyncio.create_task(self._work(), name=f"aegis-{self.kind}-{n}")
            for n in range(self._limits.workers)
        ]

    async def stop(self) -> None:
        """Serve what is queued and in flight, then stop the workers."""
        if self._queue or self._busy:
            self._idle.clear()
            await self._idle.wait()
        workers, self._workers = self._workers, []
        await cancel_all(workers)

    @property
    def waiting(self) -> int:
        """Requests queued, not yet started."""
        return len(self._queue)

    def oldest_wait(self) -> float:
        """Seconds the oldest queued request has waited (0 with none)."""
        return self._clock() - self._queue[0][1] if self._queue else 0.0

    def route(self, handler: Handler, stats: EndpointStats) -> Callable[[Msg], Awaitable[None]]:
        """What another subject's subscription calls to queue its requests in this lane,
        served by ``handler`` and counted in ``stats``."""
        return functools.partial(self._offer, route=Route.of(handler, stats))

    def retry_after(self, now: float | None = None) -> float:
        """The refusal's advice: an appointment, the first moment of the lane's service
        not promised to a caller refused before, bounded.

        Each refused caller is given the next free slot at the pace the lane
        serves (``rate``), so the callers it turned away come back one after
        another as it can take them, not all at once (the same storm again)
        nor all too late (an idle router). A caller that comes back on time
        finds room; the slots promised lapse as time passes them.
        """
        now = self._clock() if now is None else now
        start = max(self._next_free, now + self.expected_wait())
        wait = min(MAX_RETRY_AFTER, max(MIN_RETRY_AFTER, start - now))
        self._next_free = min(now + MAX_RETRY_AFTER, start + 1.0 / (OVERBOOK * self.rate()))
        return round(wait, 3)

    def rate(self) -> float:
        """Requests per second the lane can serve: what it served while full, or what its
        workers do at the measured pace per request, whichever is more (a rate measured
        low must not keep the appointments, and so the load, low)."""
        return max(self._rate or 0.0, self._limits.workers / self._cost)

    def _measure(self, now: float) -> None:
        """Once a period, the rate served in it (kept only while the lane is full, when
        it shows capacity rather than demand)."""
        elapsed = now - self._window_start
        if elapsed < RATE_PERIOD:
            return
        if self._busy >= self._limits.workers or self._queue:
            served = self._served_n / elapsed
            self._rate = served if self._rate is None else (self._rate + served) / 2
        self._window_start, self._served_n = now, 0

    def expected_wait(self) -> float:
        """How long a request queued now would wait, at the lane's measured pace."""
        return (len(self._queue) + self._busy) * self._cost / self._limits.workers

    async def offer(self, msg: Msg) -> None:
        """Queue ``msg``, or refuse it at once if it would wait past ``max_wait``: the
        oldest queued one has waited that long, or the queue ahead would take it. One
        the handler can answer at once (``answer_now``) takes no turn at all."""
        await self._offer(msg, self._route)

    async def _offer(self, msg: Msg, route: Route) -> None:
        answer_now = route.answer_now
        if answer_now is not None:
            # A registration already applied (its client's retry after a timeout) costs
            # no write: answered before the queue, so its instance need not fall silent
            # until an appointment while the lane is refusing.
            # Anything else is served from the start when its turn comes: what was
            # found out here may not hold after the wait.
            headers = msg.headers
            request_id = headers.get(REQUEST_ID_HEADER) if headers else None
            if route.scoped:
                reply = answer_now(msg.data, request_id, msg.subject)
            else:
                reply = answer_now(msg.data, request_id)
            if isinstance(reply, bytes):
                if msg.reply:
                    await msg.respond(reply)
                route.stats.num_requests += 1
                return
        now = self._clock()
        queue = self._queue
        max_wait = self._limits.max_wait
        self._measure(now)
        if queue and (now - queue[0][1] >= max_wait or self.expected_wait() >= max_wait):
            self._say_shedding(True)
            self._refused.inc()
            if msg.reply:
                await msg.respond(overloaded_reply(self.retry_after(now), len(queue)))
            return
        if not queue:
            self._say_shedding(False)
        queue.append((msg, now, route))
        self._ready.set()

    def _say_shedding(self, shedding: bool) -> None:
        # One event when shedding starts and one when it stops, not one per request.
        if shedding is not self.shedding:
            self.shedding = shedding
            if shedding:
                log.warning(
                    "overload_shedding_started",
                    kind=self.kind,
                    waiting=len(self._queue),
                    oldest_wait=round(self.oldest_wait(), 3),
                    expected_wait=round(self.expected_wait(), 3),
                )
            else:
                log.info("overload_shedding_stopped", kind=self.kind)

    async def _work(self) -> None:
        queue, limits = self._queue, self._limits
        while True:
            if not queue:
                if not self._busy:
                    self._idle.set()
                self._ready.clear()
                await self._ready.wait()
                continue
            msg, queued_at, route = queue.popleft()
            started = self._clock()
            if started - queued_at + self._cost > limits.deadline:
                # Its caller gives up before the answer could reach it: serving it
                # would only take a turn from one that can still be answered.
                self._dropped.inc()
                continue
            self._busy += 1
            try:
                await self._serve(msg, route)
            finally:
                self._busy -= 1
                self._served_n += 1
            spent = self._clock() - started
            self._cost += (spent - self._cost) / PACE_WINDOW
            # A handler that never waited (the memory store) must still let the
            # loop turn, or one worker would serve the whole queue in one go.
            await asyncio.sleep(0)

    async def _serve(self, msg: Msg, route: Route) -> None:
        # In the worker's own task (a task per request cost a context copy and two
        # turns of the loop): the request id is unbound again when it is answered.
        await serve(route.handler, msg, route.stats, scoped=route.scoped, in_place=True)


async def serve(
    handler: Handler,
    msg: Msg,
    stats: EndpointStats,
    *,
    scoped: bool = False,
    in_place: bool = False,
) -> None:
    """Answer one request with ``handler``, counted in ``stats``; never raises.
    ``scoped``: the handler is given the subject too.

    The client's request id is bound into the running task's context, so it
    joins every log event of this request. Run it as a task of its own, whose
    context (a copy) goes with it, or with ``in_place`` in a task that serves
    one request after another: the binding is undone when it is answered.
    """
    started = time.perf_counter_ns()
    headers = msg.headers
    request_id = headers.get(REQUEST_ID_HEADER) if headers else None
    bound = None
    try:
        if request_id is not None:
            bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        reply = await (handler(msg.data, subject=msg.subject) if scoped else handler(msg.data))
        if msg.reply:
            await msg.respond(reply)
    except Exception as exc:
        # Handlers never raise; this is the connection failing under us.
        stats.failed(exc)
        log.exception("nats_reply_failed", subject=msg.subject)
    finally:
        if in_place and bound is not None:
            structlog.contextvars.reset_contextvars(**bound)
        stats.num_requests += 1
        stats.processing_time += time.perf_counter_ns() - started
