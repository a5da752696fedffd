"""A stream of change events from ``ipc.events.service.<name>``."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

from aegis.connect.log import get_logger
from aegis.wire.codec import unpack
from aegis.wire.messages import ChangeEvent, events_subject
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from .transport import NatsConnection

log = get_logger("aegis.sdk.watch")

MAX_BUFFERED_EVENTS = 10_000


def parse_event(msg: Msg) -> ChangeEvent | None:
    """The change event in ``msg``; None (and a warning) if it is not one."""
    try:
        return ChangeEvent.model_validate(unpack(msg.data))
    except Exception as exc:
        log.warning("watch_bad_event", subject=msg.subject, error=repr(exc)[:200])
        return None


class EventStream:
    """Change events of one service (or all), in the order NATS delivers them.

    ``async for event in client.watch("billing")`` subscribes on the first
    iteration. To miss nothing that happens right after, subscribe first:
    ``async with client.watch("billing") as events: ...; async for e in events``.
    """

    def __init__(self, nc: NatsConnection, service_name: str | None = None) -> None:
        self.subject = events_subject(service_name)
        self._nc = nc
        self._queue: asyncio.Queue[ChangeEvent] = asyncio.Queue(MAX_BUFFERED_EVENTS)
        self._sub: Subscription | None = None

    async def start(self) -> None:
        """Subscribe, and wait until the server has the subscription."""
        if self._sub is None:
            self._sub = await self._nc.subscribe(self.subject, cb=self._on_message)
            await self._nc.flush()

    async def close(self) -> None:
        """Unsubscribe; iteration then waits forever, so stop iterating first."""
        sub, self._sub = self._sub, None
        if sub is not None and not self._nc.is_closed:
            await sub.unsubscribe()

    async def _on_message(self, msg: Msg) -> None:
        event = parse_event(msg)
        if event is None:
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("watch_overflow", subject=self.subject, dropped=event.event.value)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ChangeEvent:
        await self.start()
        return await self._queue.get()
