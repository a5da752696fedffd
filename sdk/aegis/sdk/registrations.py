"""What the SDK knows about each instance it registered, for the service to inspect."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from aegis.wire.messages import Instance

DEFAULT_HEARTBEAT_INTERVAL = 5.0


class RegistrationState(StrEnum):
    """Where one of this client's instances stands, as far as the client knows."""

    REGISTERED = "registered"  # the last register or heartbeat succeeded
    RETRYING = "retrying"  # the last heartbeat failed; still trying
    REREGISTERING = "reregistering"  # the router forgot it (404) or NATS reconnected
    SUPERSEDED = "superseded"  # another session owns it now (403/409); heartbeats stopped
    DEREGISTERED = "deregistered"


@dataclass
class RegisteredInstance:
    """One instance this client registered and keeps alive with heartbeats.

    Read it through ``ServiceClient.instances``; the SDK updates it.
    """

    service_name: str
    instance_id: str
    metadata: dict[str, Any]
    instance: Instance
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    # The subject of the router holding the instance's lease, as the router
    # last named it; None: the shared subject.
    heartbeat_subject: str | None = None
    state: RegistrationState = RegistrationState.REGISTERED
    last_contact_at: datetime | None = None
    last_error: str | None = None
    failures: int = field(default=0)

    @property
    def key(self) -> tuple[str, str]:
        """``(service_name, instance_id)``."""
        return (self.service_name, self.instance_id)

    @property
    def is_ours(self) -> bool:
        """True while this client may heartbeat it (not superseded, not deregistered)."""
        return self.state not in (RegistrationState.SUPERSEDED, RegistrationState.DEREGISTERED)

    def contact(self, instance: Instance, at: datetime) -> None:
        """The router accepted a registration or heartbeat at ``at``."""
        self.instance = instance
        self.state = RegistrationState.REGISTERED
        self.last_contact_at = at
        self.last_error, self.failures = None, 0

    def fail(self, error: str) -> None:
        """A heartbeat or re-registration failed; the next one will try again."""
        self.failures += 1
        self.last_error = error
        if self.state is RegistrationState.REGISTERED:
            self.state = RegistrationState.RETRYING

    def supersede(self, error: str) -> None:
        """Another session owns the instance now; this client lets it go."""
        self.state = RegistrationState.SUPERSEDED
        self.last_error = error
