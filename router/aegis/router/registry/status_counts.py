"""Instance counts per service and status, kept up to date change by change.

Listing services then costs one step per service, not one per instance, and
``version`` lets a caller reuse what it built from an unchanged view.
"""

from __future__ import annotations

from aegis.router.domain import InstanceKey, InstanceRecord
from aegis.wire.messages import InstanceStatus


class StatusCounts:
    """How many instances of each service are in each status."""

    def __init__(self) -> None:
        self._status: dict[InstanceKey, InstanceStatus] = {}
        # Plain dicts, not Counters: a Counter's arithmetic showed in a
        # registration's profile.
        self._counts: dict[str, dict[InstanceStatus, int]] = {}
        self.version = 0

    @property
    def total(self) -> int:
        """Instances in the registry."""
        return len(self._status)

    def of_service(self, service_name: str) -> int:
        """Instances of one service."""
        counts = self._counts.get(service_name)
        return sum(counts.values()) if counts else 0

    def apply(self, key: InstanceKey, record: InstanceRecord | None) -> None:
        """Account for ``key`` now holding ``record`` (None: gone)."""
        new = record.status if record is not None else None
        old = self._status.get(key)
        if old is new:
            return
        if old is not None:
            counts = self._counts[key.service_name]
            left = counts[old] - 1
            if left:
                counts[old] = left
            else:
                del counts[old]
                if not counts:
                    del self._counts[key.service_name]
        if new is None:
            del self._status[key]
        else:
            self._status[key] = new
            service = self._counts.get(key.service_name)
            if service is None:
                self._counts[key.service_name] = {new: 1}
            else:
                service[new] = service.get(new, 0) + 1
        self.version += 1

    def names(self) -> list[str]:
        """Every service's name, sorted."""
        return sorted(self._counts)

    def by_service(self) -> list[tuple[str, dict[InstanceStatus, int]]]:
        """Every service with its counts by status (zeros included), sorted by name."""
        return [
            (name, {status: counts.get(status, 0) for status in InstanceStatus})
            for name, counts in sorted(self._counts.items())
        ]
