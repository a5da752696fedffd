"""Serves a NATS request-reply subject with bounded concurrency.

nats-py runs one subscription's callbacks one at a time; the callback here
only takes a slot and starts a task, so slow requests do not queue up behind
each other. When every slot is busy the callback waits, and further messages
wait in nats-py's bounded pending queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = structlog.get_logger("aegis.router.nats")

Handler = Callable[[bytes], Awaitable[bytes]]

QUEUE_GROUP = "aegis-router"


class NatsResponder:
    """Answers every request on ``subject`` with ``handler(body)``."""

    def __init__(self, subject: str, handler: Handler, *, max_in_flight: int) -> None:
        self.subject = subject
        self._handler = handler
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._sub: Subscription | None = None

    async def start(self, nc: NatsClient) -> None:
        """Subscribe in the routers' queue group, so several routers share the load."""
        self._sub = await nc.subscribe(self.subject, queue=QUEUE_GROUP, cb=self._on_message)
        log.info("nats_subscribed", subject=self.subject, queue=QUEUE_GROUP)

    async def stop(self) -> None:
        """Stop taking requests, then let those in flight finish."""
        sub, self._sub = self._sub, None
        if sub is not None:
            await sub.unsubscribe()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_message(self, msg: Msg) -> None:
        await self._slots.acquire()
        task = asyncio.create_task(self._serve(msg))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, msg: Msg) -> None:
        try:
            reply = await self._handler(msg.data)
            if msg.reply:
                await msg.respond(reply)
        except Exception:
            # The handler never raises; this is the connection failing under us.
            log.exception("nats_reply_failed", subject=self.subject)
        finally:
            self._slots.release()
