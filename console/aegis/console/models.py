"""What one poll of the router yields: plain, immutable records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ServiceSummary:
    """One service with its instance counts by status."""

    name: str
    instance_count: int
    online: int
    unhealthy: int
    offline: int


@dataclass(frozen=True, slots=True)
class MaintenanceMark:
    """An operator's drain mark: the instance stays alive but is left out of discovery."""

    reason: str
    since: datetime


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    """One registered instance as the admin API shows it."""

    service_name: str
    instance_id: str
    status: str
    registered_at: datetime
    last_heartbeat_at: datetime
    # Compared on every poll to spot changes; never hashed.
    metadata: dict[str, Any] = field(default_factory=dict)
    maintenance: MaintenanceMark | None = None

    @property
    def key(self) -> str:
        """The row key: service and instance id (neither may contain ``/``)."""
        return instance_key(self.service_name, self.instance_id)

    @property
    def micro(self) -> bool:
        """Found by the router on the bus as a NATS micro service, not registered."""
        return self.metadata.get("source") == "micro"


def instance_key(service_name: str, instance_id: str) -> str:
    """The row key of an instance, unique across services."""
    return f"{service_name}/{instance_id}"


@dataclass(frozen=True, slots=True)
class Identity:
    """The console's token as the router knows it: its name and role."""

    name: str
    role: str  # "read" or "operator"

    @property
    def may_act(self) -> bool:
        """Deregister and maintenance need the operator role."""
        return self.role == "operator"


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    """Services and instances as fetched together, and when."""

    services: tuple[ServiceSummary, ...]
    instances: tuple[InstanceInfo, ...]
    fetched_at: datetime

    def by_key(self) -> dict[str, InstanceInfo]:
        """The instances by row key."""
        return {instance.key: instance for instance in self.instances}
