"""Heartbeats that reach a router not holding the lease go on to the one that does.

Only the holder keeps an instance's contacts, so a heartbeat answered
elsewhere would be lost. A forwarded heartbeat goes to the holder's forward
subject, where it is always answered locally: no request is forwarded twice,
whatever two routers' views of the membership say. If the holder does not
answer in time (it died, and the others have not noticed yet) the heartbeat is
answered here, and the contact kept here counts if this router takes the lease.
"""

from __future__ import annotations

import structlog
from aegis.router.metrics import FORWARDS
from aegis.wire.codec import pack, unpack
from aegis.wire.messages import REQUEST_ID_HEADER, InstanceRequest, Reply, router_forward_subject
from nats.aio.client import Client as NatsClient

log = structlog.get_logger("aegis.router.leases.forwarding")

# Well under the SDK's request timeout, so a failed forward still leaves time
# to answer here.
FORWARD_TIMEOUT = 1.0


class Forwarder:
    """Passes heartbeats to another router over NATS request-reply, once started."""

    def __init__(self, timeout: float = FORWARD_TIMEOUT) -> None:
        self._nc: NatsClient | None = None
        self._timeout = timeout

    def start(self, nc: NatsClient) -> None:
        """Forward over ``nc`` (the router's connection, made in the serving process)."""
        self._nc = nc

    async def heartbeat(self, router_id: str, request: InstanceRequest) -> Reply | None:
        """The holder's reply, or None if it did not give one (answer locally then)."""
        assert self._nc is not None, "started before the responder that calls it"
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        headers = {REQUEST_ID_HEADER: request_id} if request_id else None
        try:
            msg = await self._nc.request(
                router_forward_subject(router_id),
                pack(request),
                timeout=self._timeout,
                headers=headers,
            )
            reply = Reply.model_validate(unpack(msg.data))
        except Exception as exc:  # no responders, timeout, a closed connection
            FORWARDS.labels("failed").inc()
            log.warning("heartbeat_forward_failed", router=router_id, error=repr(exc))
            return None
        FORWARDS.labels("ok").inc()
        return reply
