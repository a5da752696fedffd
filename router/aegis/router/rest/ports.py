"""What the REST side needs of the NATS side, and no more: REST never imports it."""

from __future__ import annotations

from typing import Protocol

from aegis.router.rest.event_feed import EventFeed


class NatsSide(Protocol):
    """The router's NATS side as the REST routes see it (``runtime.RouterRuntime``)."""

    @property
    def ready(self) -> bool:
        """Connected to NATS, with the registry and its responder running."""
        ...

    @property
    def feed(self) -> EventFeed | None:
        """Change events for the HTTP stream, once connected."""
        ...

    def not_ready_reason(self) -> str:
        """Why ``ready`` is false, for an operator."""
        ...

    async def start(self) -> None:
        """Connect and serve (in the serving process, before HTTP serves)."""
        ...

    async def stop(self) -> None:
        """Stop serving and drain (before HTTP stops)."""
        ...
