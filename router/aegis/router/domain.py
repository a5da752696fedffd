"""Registry rules as plain Python: instance records and the registration decision.

Nothing here does I/O, so every rule is testable without NATS or a store.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from aegis.sdk.models import Instance, InstanceStatus

LIVE_STATUSES = frozenset({InstanceStatus.ONLINE, InstanceStatus.UNHEALTHY})


def iso(moment: datetime) -> str:
    """Render a UTC moment as ISO-8601 with a ``Z`` suffix."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class InstanceKey:
    """Identity of an instance: unique per service."""

    service_name: str
    instance_id: str


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """What the router stores about one instance, session included."""

    service_name: str
    instance_id: str
    status: InstanceStatus
    metadata: dict[str, Any]
    registered_at: datetime
    last_heartbeat_at: datetime
    session_id: str | None

    @property
    def key(self) -> InstanceKey:
        """The record's identity."""
        return InstanceKey(self.service_name, self.instance_id)

    @property
    def is_live(self) -> bool:
        """ONLINE or UNHEALTHY: someone claims this instance."""
        return self.status in LIVE_STATUSES

    def to_public(self) -> Instance:
        """The wire view: the session never leaves the router."""
        return Instance(
            service_name=self.service_name,
            instance_id=self.instance_id,
            status=self.status,
            metadata=self.metadata,
            registered_at=iso(self.registered_at),
            last_heartbeat_at=iso(self.last_heartbeat_at),
        )


class Outcome(Enum):
    """What a registration does to the registry."""

    CREATED = "created"  # new instance, or an OFFLINE one taken over: 201
    RENEWED = "renewed"  # same live session again: 200, counts as contact
    DUPLICATE = "duplicate"  # live under another (or no) session: 409


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of a registration and the record to store, if any."""

    outcome: Outcome
    record: InstanceRecord


def decide_registration(
    existing: InstanceRecord | None,
    *,
    service_name: str,
    instance_id: str,
    metadata: dict[str, Any],
    session_id: str | None,
    now: datetime,
) -> Decision:
    """Apply the duplicate rules of wire contract v1.

    For DUPLICATE the decision's record is the existing one, unchanged.
    """
    if existing is None or not existing.is_live:
        return Decision(
            Outcome.CREATED,
            InstanceRecord(
                service_name=service_name,
                instance_id=instance_id,
                status=InstanceStatus.ONLINE,
                metadata=metadata,
                registered_at=now,
                last_heartbeat_at=now,
                session_id=session_id,
            ),
        )
    if session_id is not None and existing.session_id == session_id:
        # A retried request: metadata stays as first registered.
        renewed = replace(existing, status=InstanceStatus.ONLINE, last_heartbeat_at=now)
        return Decision(Outcome.RENEWED, renewed)
    return Decision(Outcome.DUPLICATE, existing)
