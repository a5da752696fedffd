"""Change events published on NATS, one subject per service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aegis.wire.messages import events_subject
from nats.aio.client import Client as NatsClient

OwnEvents = Callable[[str, str, bytes], object]
"""Takes each event this router publishes: its service, kind and MessagePack body."""


class NatsEventSink:
    """Publishes each change on ``ipc.events.service.<service_name>`` (MessagePack), and
    hands it to ``own`` too: the router's connection does not hear its own publishes."""

    def __init__(self, nc: NatsClient, own: OwnEvents | None = None) -> None:
        self._nc = nc
        self._own = own

    async def publish(self, service_name: str, event: dict[str, Any], data: bytes) -> None:
        """Publish one event, a map in ``ChangeEvent``'s wire form packed as ``data``
        (buffered by nats-py; no round trip)."""
        if self._own is not None:  # first: the change happened, whatever NATS does
            self._own(service_name, event["event"], data)
        await self._nc.publish(events_subject(service_name), data)
