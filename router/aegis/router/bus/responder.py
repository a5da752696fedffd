"""Serves NATS request-reply subjects with bounded concurrency.

nats-py runs one subscription's callbacks one at a time; the callback here
only takes a slot and starts a task, so slow requests do not queue up behind
each other. When every slot is busy the callback waits, and further messages
wait in nats-py's bounded pending queue.

On Python 3.12+ the task starts eagerly: the handler runs inside the callback
until it first has to wait (a store write), and a request that never waits
(a steady heartbeat) is answered there and then, with no event-loop turn of
its own. Its reply joins the others in nats-py's write buffer, so a burst of
heartbeats goes out in few socket writes, as the bare responder's do. Only a
request still running after that holds one of the ``max_in_flight`` slots (a
count of tasks, not a semaphore: acquiring and releasing one per request cost
more than a steady heartbeat's validation).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any

import structlog
from aegis.router.bus.admission import AnswerNow, Handler, Lane, serve
from aegis.router.bus.endpoint_stats import EndpointStats
from aegis.router.domain import LaneLimits
from aegis.router.metrics import REQUEST_BACKLOG
from aegis.wire.messages import REQUEST_ID_HEADER
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = structlog.get_logger("aegis.router.nats")

QUEUE_GROUP = "aegis-router"
PENDING_BYTES = 64 * 1024 * 1024
# The slowest pace a waiting queue is judged at: one whose callback served nothing
# since the last look (waiting for a slot) holds requests that long at least.
MIN_PACE = 100.0  # requests per second


def _start_task(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """A task for ``coro``, run at once until it first waits where Python allows it.

    A real task even for the part run at once: code under the handler (nats-py's
    ``wait_for``, ``asyncio.timeout``) finds it with ``current_task()``.
    """
    if sys.version_info >= (3, 12):
        return asyncio.eager_task_factory(asyncio.get_running_loop(), coro)
    return asyncio.create_task(coro)  # pragma: no cover - Python 3.11


@dataclass
class _Queue:
    """A subscription's queue, as ``backlog`` last looked at it."""

    sub: Subscription
    stats: EndpointStats
    looked_at: float
    served: int  # ``stats.num_requests`` then


class Slots:
    """Requests still running after their callback, at most ``limit`` at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.tasks: set[asyncio.Task[None]] = set()
        self._room: asyncio.Future[None] | None = None  # set when a task ends

    @property
    def full(self) -> bool:
        """Every slot is taken."""
        return len(self.tasks) >= self.limit

    async def room(self) -> None:
        """Wait until a task ends (one future for every waiting callback, woken together)."""
        if self._room is None or self._room.done():
            self._room = asyncio.get_running_loop().create_future()
        await self._room

    def hold(self, task: asyncio.Task[None]) -> None:
        """``task`` holds a slot until it ends."""
        self.tasks.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        room = self._room
        if room is not None and not room.done():
            room.set_result(None)


class NatsResponder:
    """Answers every request on each subject with its handler; slots shared by all,
    but for the subjects given ``own_slots``."""

    def __init__(
        self,
        handlers: Mapping[str, Handler],
        *,
        max_in_flight: int,
        max_pending: int = 10_000,
        lanes: Mapping[str, tuple[str, LaneLimits]] | None = None,
        own_slots: Collection[str] = (),
    ) -> None:
        self._handlers = dict(handlers)
        self._max_pending = max_pending
        self._slots = Slots(max_in_flight)
        # Subjects whose requests must never wait behind the shared slots: heartbeats
        # forwarded by other routers. Those routers' requests holding our shared slots
        # may be forwards to them: two routers each full of forwards to the other, each
        # unable to answer the other's, would only be freed by the forwards' timeout.
        self._own_slots = {subject: Slots(max_in_flight) for subject in own_slots}
        self._queues: list[_Queue] = []  # one per subscription
        # Per subject, for $SRV.STATS (micro_control); updated in _serve.
        self.stats: dict[str, EndpointStats] = {
            subject: EndpointStats() for subject in self._handlers
        }
        # Subjects served through a bounded lane (registrations), by subject: the
        # subjects of one kind share one lane; the rest share the max_in_flight slots.
        self.lanes: dict[str, Lane] = {}
        self._lane_callbacks: dict[str, Callable[[Msg], Awaitable[None]]] = {}
        by_kind: dict[str, Lane] = {}
        for subject, (kind, limits) in (lanes or {}).items():
            handler = self._handlers.get(subject)
            if handler is None:  # not served (the shared subjects, turned off)
                continue
            lane = by_kind.get(kind)
            if lane is None:
                lane = by_kind[kind] = Lane(kind, handler, limits, self.stats[subject])
                self._lane_callbacks[subject] = lane.offer
            else:
                self._lane_callbacks[subject] = lane.route(handler, self.stats[subject])
            self.lanes[subject] = lane
        self._distinct_lanes = list(by_kind.values())

    async def start(self, nc: NatsClient) -> None:
        """Subscribe in the routers' queue group, so several routers share the load."""
        for each in self._distinct_lanes:
            each.start()
        for subject, handler in self._handlers.items():
            laned = self._lane_callbacks.get(subject)
            # Bounded: past max_pending waiting requests NATS drops (clients time out
            # and retry) rather than the router's memory growing without end.
            sub = await nc.subscribe(
                subject,
                queue=QUEUE_GROUP,
                cb=laned
                or self._callback(
                    handler, self.stats[subject], self._own_slots.get(subject, self._slots)
                ),
                pending_msgs_limit=self._max_pending,
                pending_bytes_limit=PENDING_BYTES,
            )
            stats = self.stats[subject]
            self._queues.append(_Queue(sub, stats, time.monotonic(), stats.num_requests))
            log.debug("nats_subscribed", subject=subject, queue=QUEUE_GROUP)
        # A round trip to the server: once it returns the subscriptions are live,
        # so nobody who saw us "ready" gets "no responders".
        await nc.flush()

    def backlog(self) -> float:
        """Seconds of requests read from NATS and not yet served: the longest any
        subscription's queue would take at the pace it was served since the last call
        (at least ``MIN_PACE``). Heartbeats waiting there are contacts not yet heard:
        the event loop's lag does not show them, since the loop turns on while one
        callback at a time takes from each queue."""
        now, worst = time.monotonic(), 0.0
        for queue in self._queues:
            served, elapsed = queue.stats.num_requests, now - queue.looked_at
            waiting = queue.sub.pending_msgs
            if waiting:
                pace = (served - queue.served) / elapsed if elapsed > 0 else 0.0
                worst = max(worst, waiting / max(pace, MIN_PACE))
            queue.looked_at, queue.served = now, served
        REQUEST_BACKLOG.set(worst)
        return worst

    async def stop(self) -> None:
        """Stop taking requests, then let those in flight finish."""
        queues, self._queues = self._queues, []
        for queue in queues:
            await queue.sub.unsubscribe()
        for lane in self._distinct_lanes:
            await lane.stop()
        pools = (self._slots, *self._own_slots.values())
        running = [task for slots in pools for task in slots.tasks]
        if running:
            await asyncio.gather(*running, return_exceptions=True)

    def _callback(
        self, handler: Handler, stats: EndpointStats, slots: Slots
    ) -> Callable[[Msg], Awaitable[None]]:
        at_once: AnswerNow | None = getattr(handler, "answer_now", None)
        # A per-service subject's handler is given the subject, to check the body's
        # service against it; the shared subjects' are called as before.
        scoped = bool(getattr(handler, "scoped", False))

        async def on_message(msg: Msg) -> None:
            rest = handler
            if at_once is not None:
                # Inline, not a coroutine of its own: this runs for every heartbeat.
                started = perf_counter_ns()
                headers = msg.headers
                request_id = headers.get(REQUEST_ID_HEADER) if headers else None
                if scoped:
                    reply = at_once(msg.data, request_id, msg.subject)
                else:
                    reply = at_once(msg.data, request_id)
                if isinstance(reply, bytes):
                    if msg.reply:
                        try:
                            # A publish, buffered by nats-py: it does not wait for the socket.
                            await msg.respond(reply)
                        except Exception as exc:
                            stats.failed(exc)
                            log.exception("nats_reply_failed", subject=msg.subject)
                    stats.num_requests += 1
                    stats.processing_time += perf_counter_ns() - started
                    return
                rest = reply  # goes on from what at_once did
            # Every slot taken: wait here, so the next message waits in nats-py's
            # bounded queue rather than starting.
            while slots.full:
                # What was found out before the wait may not hold after it: the
                # request starts over.
                rest = handler
                await slots.room()
            task = _start_task(serve(rest, msg, stats, scoped=scoped))
            if not task.done():  # answered already: it never held a slot
                slots.hold(task)

        return on_message
