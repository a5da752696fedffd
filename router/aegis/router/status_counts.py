"""Instance counts per service and status, kept up to date change by change.

Listing services then costs one step per service, not one per instance, and
``version`` lets a caller reuse what it built from an unchanged view.
"""

from __future__ import annotations

from collections import Counter

from aegis.wire.messages import InstanceStatus

from .domain import InstanceKey, InstanceRecord


class StatusCounts:
    """How many instances of each service are in each status."""

    def __init__(self) -> None:
        self._status: dict[InstanceKey, InstanceStatus] = {}
        self._counts: dict[str, Counter[InstanceStatus]] = {}
        self.version = 0

    @property
    def total(self) -> int:
        """Instances in the registry."""
        return len(self._status)

    def of_service(self, service_name: str) -> int:
        """Instances of one service."""
        counter = self._counts.get(service_name)
        return counter.total() if counter else 0

    def apply(self, key: InstanceKey, record: InstanceRecord | None) -> None:
        """Account for ``key`` now holding ``record`` (None: gone)."""
        new = record.status if record is not None else None
        old = self._status.get(key)
        if old is new:
            return
        if old is not None:
            counter = self._counts[key.service_name]
            counter[old] -= 1
            if counter.total() == 0:
                del self._counts[key.service_name]
        if new is None:
            del self._status[key]
        else:
            self._status[key] = new
            self._counts.setdefault(key.service_name, Counter())[new] += 1
        self.version += 1

    def by_service(self) -> list[tuple[str, dict[InstanceStatus, int]]]:
        """Every service with its counts by status (zeros included), sorted by name."""
        return [
            (name, {status: counter[status] for status in InstanceStatus})
            for name, counter in sorted(self._counts.items())
        ]
