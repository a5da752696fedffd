"""The registry's write engine: one compare-and-set loop over the storage port.

Every change goes through ``apply``, which decides on the record as time and
the leases leave it, writes by compare-and-set, keeps the liveness deadlines
of the leases this router holds, and announces the change. Both ``Registry``
(operations.py) and ``Liveness`` (liveness.py) hold one and change records
only through it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Generic, Protocol, TypeVar

import structlog
from aegis.router.domain import (
    Decision,
    InstanceKey,
    InstanceRecord,
    OwnerCheck,
    Timings,
    change_kind,
    expire,
    next_deadline,
    offline_at,
    packed_event,
)
from aegis.router.leases.contacts import Leases
from aegis.router.leases.deadlines import DeadlineIndex
from aegis.router.leases.membership import Handover, Membership, partition_of
from aegis.router.metrics import store_writes_counter
from aegis.router.registry.key_order import KeyOrder
from aegis.router.registry.status_counts import StatusCounts
from aegis.router.store.port import AlreadyExists, InstanceStore, RevisionMismatch, StoreError
from aegis.wire.messages import EventKind, InstanceStatus

log = structlog.get_logger("aegis.router.registry.engine")

# Each retry means another writer changed the key between our read and write;
# after this many in a row something is wrong with the store, not contention.
MAX_CAS_ATTEMPTS = 16
# Keys re-scheduled per turn of the event loop when leases move.
REBALANCE_BATCH = 2000

T = TypeVar("T")


def utc_now() -> datetime:
    """The router's clock."""
    return datetime.now(UTC)


class EventSink(Protocol):
    """Where change events go (NATS in the router; a list in tests)."""

    async def publish(self, service_name: str, event: dict[str, Any], data: bytes) -> None:
        """Send one event of ``service_name``, a map in ``ChangeEvent``'s wire form
        (``domain.event_map``) and ``data``, the same as MessagePack (``pack_map``); may
        raise, the registry logs and carries on."""
        ...


class Keep:
    """Marker: the change function decided not to write."""


KEEP: Final = Keep()


@dataclass(frozen=True, slots=True)
class Change(Generic[T]):
    """What a change function decided: the operation's result and the record to write."""

    result: T
    after: InstanceRecord | Keep | None  # None: delete
    registered: bool = False  # the writer created the instance (or took it over)
    deregistered: bool = False
    cause: str | None = None  # for the store-writes metric, if not the operation's


@dataclass(frozen=True, slots=True)
class OwnerResult:
    """Outcome of a heartbeat or deregistration, with the record as stored after it."""

    check: OwnerCheck
    record: InstanceRecord | None


def _as_written(result: T, decided: object, written: InstanceRecord | None) -> T:
    """``result`` naming the record as written (with its new version), not as decided."""
    if written is None or decided is written:
        return result
    if result is decided:
        return written  # type: ignore[return-value]  # T is the record type here
    # Built directly: dataclasses.replace is slow for a per-write copy.
    if isinstance(result, Decision) and result.record is decided:
        return Decision(result.outcome, written)  # type: ignore[return-value]
    if isinstance(result, OwnerResult) and result.record is decided:
        return OwnerResult(result.check, written)  # type: ignore[return-value]
    return result


class RegistryEngine:
    """The registry's state and the compare-and-set loop every change goes through.

    ``store``, ``timings``, ``leases``, ``deadlines`` (the liveness deadlines of
    the leases held), ``counts`` and ``order`` (the keys, sorted) are shared with
    the operations and the liveness that hold the engine; only the engine writes
    records.
    """

    def __init__(
        self,
        store: InstanceStore,
        timings: Timings | None = None,
        events: EventSink | None = None,
        clock: Callable[[], datetime] = utc_now,
        leases: Leases | None = None,
    ) -> None:
        self.timings = timings or Timings()
        self.store = store
        self._events = events
        self._clock = clock
        # Alone, a router holds every lease.
        self.leases = leases or Leases(Membership("solo", ttl=1.0, now=0.0))
        self.leases.membership.set_listener(self._handover)
        self._rebalancing: set[asyncio.Task[None]] = set()
        # Fine enough that rounding adds at most 1 % to the shortest deadline.
        resolution = min(0.05, self.timings.unhealthy_after / 100)
        self.deadlines: DeadlineIndex[InstanceKey] = DeadlineIndex(resolution)
        self.counts = StatusCounts()
        self.order = KeyOrder()  # every key in listing order, for the REST pages
        # The last (key, record) tracked: our own writes reach _track through the
        # store's listener, and apply need not track them a second time.
        self._tracked: tuple[InstanceKey, InstanceRecord | None] | None = None
        store.set_listener(self._track)

    async def load(self) -> int:
        """Track every record already stored; call once before serving.

        The store may have outlived a restart. Later changes, other routers'
        included, reach the registry through the store's listener.
        """
        records = await self.store.list_all()
        for record in records:
            self._track(record.key, record)
        return len(records)

    def now(self) -> datetime:
        """The registry's clock."""
        return self._clock()

    def set_event_sink(self, events: EventSink | None) -> None:
        """Start (or stop) announcing changes, e.g. once NATS is connected."""
        self._events = events

    async def apply(
        self,
        key: InstanceKey,
        change: Callable[[InstanceRecord | None], Change[T]],
        cause: str,
        now: datetime,
        actor: str | None = None,
    ) -> tuple[T, bool]:
        """Read, decide, write by compare-and-set; decide again if someone wrote first.

        ``change`` sees the record as time has left it by ``now``, so a
        deadline that passed counts even before the sweeper writes it (a
        heartbeat cannot revive an instance that is OFFLINE by age). Returns
        the decision and whether anything was written. ``actor`` (an operator's
        token name) goes into the change event.
        """
        # The common case is one store round trip: decide on the record as this
        # router last saw it and write by compare-and-set on its revision. The
        # store is read only when that write loses (someone wrote first), or
        # before deciding to write nothing: no compare-and-set checks that.
        current, confirmed = self.store.peek(key), False
        for _ in range(MAX_CAS_ATTEMPTS):
            stored = current.record if current else None
            seen = None
            if stored is not None:
                seen = expire(self.as_heard(stored), now, self.timings, self._alive_at(stored))
            decided = change(seen)
            after = decided.after
            if (
                after is seen
                and seen is not None
                and stored is not None
                and (seen.status is stored.status)
            ):
                # Age changed nothing others must see (the contact may have moved
                # on in memory): no write, a fresh deadline.
                self._track(key, stored)
                return decided.result, False
            if isinstance(after, Keep) or after is stored:
                if not confirmed:
                    current, confirmed = await self.store.get(key), True
                    continue
                if stored is not None:
                    self._track(key, stored)
                return decided.result, False
            kind = change_kind(
                stored, after, registered=decided.registered, deregistered=decided.deregistered
            )
            if kind is not None and after is not None:
                after = after.with_version((stored.version if stored else 0) + 1).noted(
                    kind.value, actor
                )
            try:
                if current is None:
                    assert after is not None  # None with nothing stored is "after is stored"
                    await self.store.create(after)
                elif after is None:
                    await self.store.delete(key, current.revision)
                else:
                    await self.store.update(after, current.revision)
            except (AlreadyExists, RevisionMismatch):
                current, confirmed = await self.store.get(key), True
                continue
            store_writes_counter(decided.cause or cause).inc()
            tracked = self._tracked
            if tracked is None or tracked[1] is not after or tracked[0] != key:
                self._track(key, after)
            if kind is not None:
                await self._announce(kind, stored, after, cause, actor)
            return _as_written(decided.result, decided.after, after), True
        raise StoreError(f"gave up after {MAX_CAS_ATTEMPTS} conflicting writes on {key}")

    def as_heard(self, record: InstanceRecord) -> InstanceRecord:
        """``record`` with its last contact, heard here if not yet written."""
        if record.status is InstanceStatus.OFFLINE:
            return record  # contacts held in memory count only for live ones
        heard = self.leases.contact(record.key)
        if heard is None or heard <= record.last_heartbeat_at.timestamp():
            return record
        return record.with_contact(datetime.fromtimestamp(heard, UTC))

    def _alive_at(self, record: InstanceRecord) -> datetime:
        return datetime.fromtimestamp(self.leases.alive_at(record), UTC)

    def offline_at(self, record: InstanceRecord) -> datetime:
        """When a live ``record`` goes OFFLINE (and may be taken over) if nothing more is
        heard: counted from its lease's liveness, not the stored contact, which may be
        up to ``refresh_after`` old."""
        return offline_at(replace(record, last_heartbeat_at=self._alive_at(record)), self.timings)

    def _track(self, key: InstanceKey, record: InstanceRecord | None) -> None:
        self._tracked = (key, record)
        self.counts.apply(key, record)
        self.order.apply(key, record)
        if record is None or not record.is_live:
            self.leases.forget(key)
        self._schedule(key, record)

    def _schedule(self, key: InstanceKey, record: InstanceRecord | None) -> None:
        """Keep a deadline for ``key`` if this router holds its lease, and only then."""
        if record is None or _kept_for_operator(record):
            self.deadlines.discard(key)
            return
        partition = partition_of(key)  # hashed once on every write
        if not self.leases.membership.holds_partition(partition):
            self.deadlines.discard(key)
            return
        alive_at = self.leases.alive_at(record, partition, key)
        self.deadlines.set(key, next_deadline(record, self.timings, alive_at))

    def _handover(self, handover: Handover) -> None:
        """Leases moved: sweep what this router now holds, and nothing else."""
        self.leases.take(handover)
        moved = set(handover.gained) | handover.lost
        task = asyncio.get_running_loop().create_task(self._rebalance(moved))
        self._rebalancing.add(task)
        task.add_done_callback(self._rebalancing.discard)

    async def _rebalance(self, partitions: set[int]) -> None:
        """Re-schedule every key of ``partitions``, a batch per turn of the loop."""
        keys = [r.key for r in await self.store.list_all()]
        for start in range(0, len(keys), REBALANCE_BATCH):
            for key in keys[start : start + REBALANCE_BATCH]:
                if partition_of(key) in partitions:
                    current = self.store.peek(key)
                    self._schedule(key, current.record if current else None)
            await asyncio.sleep(0)

    @property
    def held(self) -> int:
        """How many instances this router sweeps (the leases it holds)."""
        return len(self.deadlines)

    async def _announce(
        self,
        kind: EventKind,
        before: InstanceRecord | None,
        after: InstanceRecord | None,
        cause: str,
        actor: str | None = None,
    ) -> None:
        if after is not None:
            shown = after
        else:
            assert before is not None
            shown = replace(before, version=before.version + 1)  # the removal's own
        previous = before.status if before is not None else None
        log.info(
            f"instance_{kind.value}",
            service=shown.service_name,
            instance=shown.instance_id,
            status=after.status.value if after else None,
            previous_status=previous.value if previous else None,
            cause=cause,
            actor=actor,
        )
        if self._events is None:
            return
        event, data = packed_event(kind, shown, previous, actor)
        try:
            await self._events.publish(shown.service_name, event, data)
        except Exception as exc:
            log.warning("event_publish_failed", service=shown.service_name, error=repr(exc))

    @property
    def version(self) -> int:
        """Changes with every change of an instance's status or existence."""
        return self.counts.version


def _kept_for_operator(record: InstanceRecord) -> bool:
    """OFFLINE with a maintenance mark: nothing is due until an operator clears it."""
    return record.status is InstanceStatus.OFFLINE and record.maintenance is not None
