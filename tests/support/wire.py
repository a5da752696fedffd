"""Wire-contract facts the tests share, written out so a model change cannot move them,
and one raw request-reply as a client in another language would make it."""

from __future__ import annotations

from typing import Any

import msgpack
from nats.aio.client import Client as NatsClient

INSTANCE_KEYS = {
    "service_name",
    "instance_id",
    "status",
    "metadata",
    "registered_at",
    "last_heartbeat_at",
    "version",
}


def instance_body(service_name: str, instance_id: str, status: str = "ONLINE") -> dict[str, Any]:
    """An ``instance`` as a router would put it in a reply."""
    return {
        "service_name": service_name,
        "instance_id": instance_id,
        "status": status,
        "metadata": {},
        "registered_at": "2026-01-01T00:00:00.000Z",
        "last_heartbeat_at": "2026-01-01T00:00:00.000Z",
    }


async def raw_request(
    nc: NatsClient, body: object, subject: str = "ipc.service.register"
) -> dict[str, object]:
    """Send ``body`` (MessagePack-encoded unless already bytes) and decode the reply."""
    data = body if isinstance(body, bytes) else msgpack.packb(body)
    msg = await nc.request(subject, data, timeout=5)
    reply: dict[str, object] = msgpack.unpackb(msg.data)
    return reply
