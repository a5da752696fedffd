"""The registry service: applies the domain rules over a storage port."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aegis.sdk.models import InstanceStatus, RegisterRequest

from .domain import Decision, InstanceKey, InstanceRecord, Outcome, decide_registration
from .store import AlreadyExists, InstanceStore, RevisionMismatch, StoreError

# Each retry means another writer changed the key between our read and write;
# after this many in a row something is wrong with the store, not contention.
MAX_CAS_ATTEMPTS = 16


def utc_now() -> datetime:
    """The router's clock."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ServiceSummary:
    """One line of the services list."""

    name: str
    instance_count: int
    statuses: dict[InstanceStatus, int]


class Registry:
    """Registers instances and answers queries about them."""

    def __init__(self, store: InstanceStore, clock: Callable[[], datetime] = utc_now) -> None:
        self._store = store
        self._clock = clock

    async def register(self, request: RegisterRequest) -> Decision:
        """Register one instance; the decision says created, renewed or duplicate.

        Safe under concurrency: of many registrations of one instance id with
        different sessions, exactly one is CREATED.
        """
        key = InstanceKey(request.service_name, request.instance_id)
        for _ in range(MAX_CAS_ATTEMPTS):
            current = await self._store.get(key)
            decision = decide_registration(
                current.record if current else None,
                service_name=request.service_name,
                instance_id=request.instance_id,
                metadata=request.metadata,
                session_id=request.session_id,
                now=self._clock(),
            )
            if decision.outcome is Outcome.DUPLICATE:
                return decision
            try:
                if current is None:
                    await self._store.create(decision.record)
                else:
                    await self._store.update(decision.record, current.revision)
            except (AlreadyExists, RevisionMismatch):
                continue  # someone else wrote first: decide again on what they wrote
            return decision
        raise StoreError(f"gave up after {MAX_CAS_ATTEMPTS} conflicting writes on {key}")

    async def services(self) -> list[ServiceSummary]:
        """Every service with its instance counts by status, sorted by name."""
        counts: dict[str, Counter[InstanceStatus]] = {}
        for record in await self._store.list_all():
            counts.setdefault(record.service_name, Counter())[record.status] += 1
        return [
            ServiceSummary(
                name=name,
                instance_count=sum(counter.values()),
                statuses={status: counter[status] for status in InstanceStatus},
            )
            for name, counter in sorted(counts.items())
        ]

    async def instances(
        self, service_name: str | None = None, status: InstanceStatus | None = None
    ) -> list[InstanceRecord]:
        """Instances of one service (or all), optionally of one status.

        Sorted by service name, then instance id; empty if nothing matches.
        """
        if service_name is None:
            records = await self._store.list_all()
        else:
            records = await self._store.list_service(service_name)
        if status is not None:
            records = [r for r in records if r.status is status]
        return sorted(records, key=lambda r: (r.service_name, r.instance_id))
