"""Change events published on NATS, one subject per service."""

from __future__ import annotations

from aegis.wire.codec import pack
from aegis.wire.messages import ChangeEvent, events_subject
from nats.aio.client import Client as NatsClient


class NatsEventSink:
    """Publishes each change on ``ipc.events.service.<service_name>`` (MessagePack)."""

    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc

    async def publish(self, event: ChangeEvent) -> None:
        """Publish one event (buffered by nats-py; no round trip)."""
        await self._nc.publish(events_subject(event.instance.service_name), pack(event))
