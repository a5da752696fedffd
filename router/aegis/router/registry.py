"""The registry service: applies the domain rules over a storage port.

Every change goes through one compare-and-set loop (``_apply``), which also
keeps the liveness deadlines current and announces the change.

(About 380 lines, over the ~300 we aim for: each operation is a small
``change`` function beside the loop that applies it, and splitting them
from it would hide which rule runs under which compare-and-set.)
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Generic, Protocol, TypeVar

import structlog
from aegis.wire.messages import (
    ChangeEvent,
    EventKind,
    FilterValue,
    InstanceStatus,
    RegisterRequest,
    matches,
)

from .deadlines import DeadlineIndex
from .domain import (
    Decision,
    InstanceKey,
    InstanceRecord,
    MaintenanceMark,
    Outcome,
    OwnerCheck,
    Timings,
    change_kind,
    check_owner,
    decide_registration,
    expire,
    next_deadline,
    take_offline,
    touch,
)
from .leases import Leases
from .membership import Handover, Membership, partition_of
from .metrics import SWEEP_CHANGES, store_writes_counter
from .status_counts import StatusCounts
from .store import AlreadyExists, InstanceStore, RevisionMismatch, StoreError

log = structlog.get_logger("aegis.router.registry")

# Each retry means another writer changed the key between our read and write;
# after this many in a row something is wrong with the store, not contention.
MAX_CAS_ATTEMPTS = 16
# Expiry writes in flight at once during a sweep: a mass expiry on the
# JetStream store goes out concurrently, and the loop gets a turn between batches.
SWEEP_BATCH = 64
# Expiry writes in flight at once: a sliding window, not batches in lockstep,
# so a mass expiry runs at the store's throughput rather than its latency.
SWEEP_IN_FLIGHT = 512
# Keys re-scheduled per turn of the event loop when leases move.
REBALANCE_BATCH = 2000

T = TypeVar("T")


def utc_now() -> datetime:
    """The router's clock."""
    return datetime.now(UTC)


class EventSink(Protocol):
    """Where change events go (NATS in the router; a list in tests)."""

    async def publish(self, event: ChangeEvent) -> None:
        """Send one event; may raise, the registry logs and carries on."""
        ...


class _Keep:
    """Marker: the change function decided not to write."""


KEEP: Final = _Keep()


@dataclass(frozen=True, slots=True)
class _Change(Generic[T]):
    result: T
    after: InstanceRecord | _Keep | None  # None: delete
    registered: bool = False  # the writer created the instance (or took it over)
    deregistered: bool = False
    cause: str | None = None  # for the store-writes metric, if not the operation's


@dataclass(frozen=True, slots=True)
class InstanceLimits:
    """How many instances one service, and the registry, may hold."""

    per_service: int = 100_000
    total: int = 1_000_000


class LimitExceededError(Exception):
    """A new instance would pass a limit; nothing was stored."""


@dataclass(frozen=True, slots=True)
class OwnerResult:
    """Outcome of a heartbeat or deregistration, with the record as stored after it."""

    check: OwnerCheck
    record: InstanceRecord | None


@dataclass(frozen=True, slots=True)
class ServiceSummary:
    """One line of the services list."""

    name: str
    instance_count: int
    statuses: dict[InstanceStatus, int]


def _as_written(result: T, decided: object, written: InstanceRecord | None) -> T:
    """``result`` naming the record as written (with its new version), not as decided."""
    if written is None or decided is written:
        return result
    if result is decided:
        return written  # type: ignore[return-value]  # T is the record type here
    if isinstance(result, Decision | OwnerResult) and result.record is decided:
        return replace(result, record=written)
    return result


class Registry:
    """Registers instances, tracks their liveness, answers queries about them."""

    def __init__(
        self,
        store: InstanceStore,
        timings: Timings | None = None,
        events: EventSink | None = None,
        clock: Callable[[], datetime] = utc_now,
        limits: InstanceLimits | None = None,
        leases: Leases | None = None,
    ) -> None:
        self.timings = timings or Timings()
        self.limits = limits or InstanceLimits()
        self._store = store
        self._events = events
        self._clock = clock
        # Alone, a router holds every lease.
        self.leases = leases or Leases(Membership("solo", ttl=1.0, now=0.0))
        self.leases.membership.set_listener(self._handover)
        self._rebalancing: set[asyncio.Task[None]] = set()
        # Fine enough that rounding adds at most 1 % to the shortest deadline.
        resolution = min(0.05, self.timings.unhealthy_after / 100)
        self._deadlines: DeadlineIndex[InstanceKey] = DeadlineIndex(resolution)
        self._counts = StatusCounts()
        store.set_listener(self._track)

    async def load(self) -> int:
        """Track every record already stored; call once before serving.

        The store may have outlived a restart. Later changes, other routers'
        included, reach the registry through the store's listener.
        """
        records = await self._store.list_all()
        for record in records:
            self._track(record.key, record)
        return len(records)

    def now(self) -> datetime:
        """The registry's clock."""
        return self._clock()

    def set_event_sink(self, events: EventSink | None) -> None:
        """Start (or stop) announcing changes, e.g. once NATS is connected."""
        self._events = events

    async def register(self, request: RegisterRequest) -> Decision:
        """Register one instance; the decision says created, renewed or duplicate.

        Safe under concurrency: of many registrations of one instance id with
        different sessions, exactly one is CREATED.
        """
        now = self._clock()

        def change(before: InstanceRecord | None) -> _Change[Decision]:
            decision = decide_registration(
                before,
                service_name=request.service_name,
                instance_id=request.instance_id,
                metadata=request.metadata,
                session_id=request.session_id,
                now=now,
            )
            if decision.outcome is Outcome.DUPLICATE:
                return _Change(decision, KEEP)
            if before is None:
                self._check_room(request.service_name)
            created = decision.outcome is Outcome.CREATED
            return _Change(decision, decision.record, registered=created)

        key = InstanceKey(request.service_name, request.instance_id)
        decision, _ = await self._apply(key, change, "register", now)
        return decision

    async def micro_seen(self, key: InstanceKey, metadata: dict[str, Any]) -> Decision:
        """A NATS micro service answered a poll: list it, or count the answer as contact.

        Absent or not live, it is registered without a session, so no registry
        client can heartbeat or deregister it (and registering its key is a
        409). Live, its contact (and metadata, if it changed) is written: the
        poller need not hold its lease, and the holder sweeps from the store.
        Live under a registry client's session, it is left alone (DUPLICATE).
        """
        now = self._clock()

        def change(before: InstanceRecord | None) -> _Change[Decision]:
            if before is None or not before.is_live:
                if before is None:
                    self._check_room(key.service_name)
                decision = decide_registration(
                    before,
                    service_name=key.service_name,
                    instance_id=key.instance_id,
                    metadata=metadata,
                    session_id=None,
                    now=now,
                )
                return _Change(decision, decision.record, registered=True)
            if before.session_id is not None:
                return _Change(Decision(Outcome.DUPLICATE, before), KEEP)
            after = replace(touch(before, now), metadata=metadata)
            return _Change(Decision(Outcome.RENEWED, after), after)

        decision, _ = await self._apply(key, change, "micro", now)
        return decision

    def _check_room(self, service_name: str) -> None:
        """Refuse a new key past a limit (concurrent creates may pass it by a few)."""
        if self._counts.total >= self.limits.total:
            raise LimitExceededError(
                f"the registry holds {self._counts.total} instances, its limit "
                "(AEGIS_MAX_INSTANCES)"
            )
        if self._counts.of_service(service_name) >= self.limits.per_service:
            raise LimitExceededError(
                f"service {service_name!r} has {self.limits.per_service} instances, its "
                "limit (AEGIS_MAX_INSTANCES_PER_SERVICE)"
            )

    async def heartbeat(self, key: InstanceKey, session_id: str) -> OwnerResult:
        """Contact from the owner: ONLINE again and deadlines restart.

        A steady heartbeat (ONLINE, stored contact fresher than
        ``timings.refresh_after``) is only remembered here; the store is written
        when the status changes or the stored contact needs its refresh.
        """
        now = self._clock()
        steady = self._heard(key, session_id, now)
        if steady is not None:
            return steady

        def act(record: InstanceRecord) -> InstanceRecord:
            return touch(record, now)

        change = self._owned(session_id, act, recovering_cause=True)
        result, _ = await self._apply(key, change, "heartbeat", now)
        return result

    def _heard(self, key: InstanceKey, session_id: str, now: datetime) -> OwnerResult | None:
        """Answer a steady heartbeat from memory; None when it must go to the store."""
        current = self._store.peek(key)
        if current is None:
            return None
        stored = current.record
        if stored.status is not InstanceStatus.ONLINE or stored.session_id != session_id:
            return None
        at = now.timestamp()
        timings = self.timings
        if at - stored.last_heartbeat_at.timestamp() >= timings.refresh_after:
            return None  # the refresh is due: written below
        if at - self.leases.alive_at(stored) >= timings.unhealthy_after:
            return None  # UNHEALTHY by age already: the recovery is news
        self.leases.heard(key, at)
        if self.leases.holds(key):
            self._deadlines.set(key, at + timings.unhealthy_after)
        return OwnerResult(OwnerCheck.OK, replace(stored, last_heartbeat_at=now))

    async def deregister(self, key: InstanceKey, session_id: str) -> OwnerResult:
        """The owner leaves: OFFLINE at once."""
        now = self._clock()
        change = self._owned(session_id, lambda r: take_offline(r, now), deregistering=True)
        result, _ = await self._apply(key, change, "deregister", now)
        return result

    async def force_deregister(self, key: InstanceKey) -> InstanceRecord | None:
        """An operator takes a live instance OFFLINE whatever its session; None if unknown."""
        now = self._clock()

        def change(before: InstanceRecord | None) -> _Change[InstanceRecord | None]:
            if before is None or not before.is_live:
                return _Change(before, KEEP)
            after = take_offline(before, now)
            return _Change(after, after, deregistered=True)

        record, _ = await self._apply(key, change, "operator", now)
        return record

    async def set_maintenance(self, key: InstanceKey, reason: str | None) -> InstanceRecord | None:
        """An operator puts a live instance in maintenance (``reason``), or takes it out
        (None); the record as it is then, or None if no live instance has ``key``."""
        now = self._clock()

        def change(before: InstanceRecord | None) -> _Change[InstanceRecord | None]:
            if before is None or not before.is_live:
                return _Change(None, KEEP)
            current = before.maintenance
            if (reason is None and current is None) or (
                current is not None and reason == current.reason
            ):
                return _Change(before, KEEP)  # already so: no write, no event
            mark = None if reason is None else MaintenanceMark(reason, now)
            after = replace(before, maintenance=mark)
            return _Change(after, after)

        record, _ = await self._apply(key, change, "operator", now)
        return record

    async def set_service_maintenance(
        self, service_name: str, reason: str | None
    ) -> list[InstanceRecord] | None:
        """``set_maintenance`` on every live instance of a service; None if it has none."""
        keys = [r.key for r in await self._store.list_service(service_name) if r.is_live]
        if not keys:
            return None
        done: list[InstanceRecord] = []
        for start in range(0, len(keys), SWEEP_BATCH):
            batch = keys[start : start + SWEEP_BATCH]
            results = await asyncio.gather(*(self.set_maintenance(k, reason) for k in batch))
            done += [r for r in results if r is not None]
        return sorted(done, key=lambda r: r.instance_id)

    @staticmethod
    def _owned(
        session_id: str,
        act: Callable[[InstanceRecord], InstanceRecord],
        *,
        deregistering: bool = False,
        recovering_cause: bool = False,
    ) -> Callable[[InstanceRecord | None], _Change[OwnerResult]]:
        def change(before: InstanceRecord | None) -> _Change[OwnerResult]:
            check = check_owner(before, session_id)
            if check is not OwnerCheck.OK or before is None:
                return _Change(OwnerResult(check, before), KEEP)
            after = act(before)
            # A heartbeat that changes no status only refreshes the stored contact.
            cause = "refresh" if recovering_cause and before.status is after.status else None
            return _Change(
                OwnerResult(check, after), after, deregistered=deregistering, cause=cause
            )

        return change

    async def sweep(self) -> int:
        """Apply the liveness deadlines that have passed; returns how many changed.

        Costs time in proportion to the instances due, not to the registry. A
        mass expiry keeps up to ``SWEEP_IN_FLIGHT`` writes going at once, and
        yields to the event loop every ``SWEEP_BATCH`` keys, so requests keep
        being served.
        """
        now = self._clock()
        slots = asyncio.Semaphore(SWEEP_IN_FLIGHT)
        running: set[asyncio.Task[bool]] = set()
        changed = 0

        async def expire(key: InstanceKey) -> bool:
            try:
                return await self._expire(key, now)
            finally:
                slots.release()

        def done(task: asyncio.Task[bool]) -> None:
            nonlocal changed
            running.discard(task)
            changed += not task.cancelled() and task.exception() is None and task.result()

        # Never more keys than the index holds: a key made due again in this
        # sweep waits for the next one.
        left = len(self._deadlines)
        batches = 0
        while left > 0 and (batch := self._deadlines.pop_due(now.timestamp(), SWEEP_BATCH)):
            left -= len(batch)
            batches += 1
            if batches > 1:
                # A mass expiry replaces many records at once, and CPython's full
                # collection would then scan them all in one go (~150 ms at
                # 100,000). Records hold no reference cycles: exempt what lives
                # now from cyclic-GC scans (O(1)) instead of pausing the loop.
                gc.freeze()
            for key in batch:
                await slots.acquire()
                task = asyncio.create_task(expire(key))
                running.add(task)
                task.add_done_callback(done)
            await asyncio.sleep(0)
        if running:
            await asyncio.wait(running)
        return changed

    async def _expire(self, key: InstanceKey, now: datetime) -> bool:
        """Write what age did to one instance (nothing, if it did nothing)."""

        def change(seen: InstanceRecord | None) -> _Change[None]:
            return _Change(None, seen)

        try:
            _, wrote = await self._apply(key, change, "expired", now)
        except Exception:
            # Not lost: try this key again on a later tick.
            log.exception("sweep_failed", service=key.service_name, instance=key.instance_id)
            self._deadlines.set(key, now.timestamp() + 1.0)
            return False
        SWEEP_CHANGES.inc(wrote)
        return wrote

    async def _apply(
        self,
        key: InstanceKey,
        change: Callable[[InstanceRecord | None], _Change[T]],
        cause: str,
        now: datetime,
    ) -> tuple[T, bool]:
        """Read, decide, write by compare-and-set; decide again if someone wrote first.

        ``change`` sees the record as time has left it by ``now``, so a
        deadline that passed counts even before the sweeper writes it (a
        heartbeat cannot revive an instance that is OFFLINE by age). Returns
        the decision and whether anything was written.
        """
        # The common case is one store round trip: decide on the record as this
        # router last saw it and write by compare-and-set on its revision. The
        # store is read only when that write loses (someone wrote first), or
        # before deciding to write nothing: no compare-and-set checks that.
        current, confirmed = self._store.peek(key), False
        for _ in range(MAX_CAS_ATTEMPTS):
            stored = current.record if current else None
            seen = None
            if stored is not None:
                seen = expire(self._as_heard(stored), now, self.timings, self._alive_at(stored))
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
            if isinstance(after, _Keep) or after is stored:
                if not confirmed:
                    current, confirmed = await self._store.get(key), True
                    continue
                if stored is not None:
                    self._track(key, stored)
                return decided.result, False
            kind = change_kind(
                stored, after, registered=decided.registered, deregistered=decided.deregistered
            )
            if kind is not None and after is not None:
                after = replace(after, version=(stored.version if stored else 0) + 1)
            try:
                if current is None:
                    assert after is not None  # None with nothing stored is "after is stored"
                    await self._store.create(after)
                elif after is None:
                    await self._store.delete(key, current.revision)
                else:
                    await self._store.update(after, current.revision)
            except (AlreadyExists, RevisionMismatch):
                current, confirmed = await self._store.get(key), True
                continue
            store_writes_counter(decided.cause or cause).inc()
            self._track(key, after)
            if kind is not None:
                await self._announce(kind, stored, after, cause)
            return _as_written(decided.result, decided.after, after), True
        raise StoreError(f"gave up after {MAX_CAS_ATTEMPTS} conflicting writes on {key}")

    def _as_heard(self, record: InstanceRecord) -> InstanceRecord:
        """``record`` with its last contact, heard here if not yet written."""
        at = self.leases.heard_at(record)
        if at <= record.last_heartbeat_at.timestamp():
            return record
        return replace(record, last_heartbeat_at=datetime.fromtimestamp(at, UTC))

    def _alive_at(self, record: InstanceRecord) -> datetime:
        return datetime.fromtimestamp(self.leases.alive_at(record), UTC)

    def _track(self, key: InstanceKey, record: InstanceRecord | None) -> None:
        self._counts.apply(key, record)
        if record is None or not record.is_live:
            self.leases.forget(key)
        self._schedule(key, record)

    def _schedule(self, key: InstanceKey, record: InstanceRecord | None) -> None:
        """Keep a deadline for ``key`` if this router holds its lease, and only then."""
        if record is None or not self.leases.holds(key):
            self._deadlines.discard(key)
        else:
            self._deadlines.set(
                key, next_deadline(record, self.timings, self._alive_at(record)).timestamp()
            )

    def _handover(self, handover: Handover) -> None:
        """Leases moved: sweep what this router now holds, and nothing else."""
        self.leases.take(handover)
        moved = set(handover.gained) | handover.lost
        task = asyncio.get_running_loop().create_task(self._rebalance(moved))
        self._rebalancing.add(task)
        task.add_done_callback(self._rebalancing.discard)

    async def _rebalance(self, partitions: set[int]) -> None:
        """Re-schedule every key of ``partitions``, a batch per turn of the loop."""
        keys = [r.key for r in await self._store.list_all()]
        for start in range(0, len(keys), REBALANCE_BATCH):
            for key in keys[start : start + REBALANCE_BATCH]:
                if partition_of(key) in partitions:
                    current = self._store.peek(key)
                    self._schedule(key, current.record if current else None)
            await asyncio.sleep(0)

    @property
    def held(self) -> int:
        """How many instances this router sweeps (the leases it holds)."""
        return len(self._deadlines)

    async def _announce(
        self,
        kind: EventKind,
        before: InstanceRecord | None,
        after: InstanceRecord | None,
        cause: str,
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
        )
        if self._events is None:
            return
        event = ChangeEvent(event=kind, instance=shown.to_public(), previous_status=previous)
        try:
            await self._events.publish(event)
        except Exception as exc:
            log.warning("event_publish_failed", service=shown.service_name, error=repr(exc))

    @property
    def version(self) -> int:
        """Changes with every change of an instance's status or existence."""
        return self._counts.version

    async def services(self) -> list[ServiceSummary]:
        """Every service with its instance counts by status, sorted by name."""
        return [
            ServiceSummary(name=name, instance_count=sum(counts.values()), statuses=counts)
            for name, counts in self._counts.by_service()
        ]

    async def instances(
        self,
        service_name: str | None = None,
        status: InstanceStatus | None = None,
        where: dict[str, FilterValue] | None = None,
    ) -> list[InstanceRecord]:
        """Instances of one service (or all), optionally of one status, and with ``where``'s
        top-level metadata values.

        Sorted by service name, then instance id; empty if nothing matches.
        """
        if service_name is None:
            records = await self._store.list_all()
        else:
            records = await self._store.list_service(service_name)
        if status is not None:
            records = [r for r in records if r.status is status]
        if where:
            records = [r for r in records if matches(r.metadata, where)]
        # Contacts this router heard but has not written yet show, too.
        records = [self._as_heard(r) for r in records]
        return sorted(records, key=lambda r: (r.service_name, r.instance_id))
