"""The registry service: registration, liveness and queries, over the write engine.

Each operation is a small ``change`` function beside the compare-and-set loop
that applies it (``RegistryEngine._apply``, registry_engine.py), so which rule
runs under which compare-and-set stays in view.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from aegis.router.domain import (
    Decision,
    InstanceKey,
    InstanceRecord,
    MaintenanceMark,
    Outcome,
    OwnerCheck,
    Timings,
    check_owner,
    decide_registration,
    is_stale,
    take_offline,
    touch,
)
from aegis.router.leases.contacts import Leases
from aegis.router.metrics import EXPIRY_SLOWED, SWEEP_CHANGES
from aegis.router.registry.engine import (
    KEEP,
    MAX_CAS_ATTEMPTS,
    Change,
    EventSink,
    OwnerResult,
    RegistryEngine,
    log,
    utc_now,
)
from aegis.router.registry.expiry_budget import ExpiryBudget
from aegis.router.registry.recoveries import Recoveries
from aegis.router.store.port import InstanceStore
from aegis.wire.messages import FilterValue, InstanceStatus, RegisterRequest, matches

__all__ = [
    "MAX_CAS_ATTEMPTS",
    "SWEEP_BATCH",
    "EventSink",
    "InstanceLimits",
    "LimitExceededError",
    "OwnerResult",
    "Registry",
    "ServiceSummary",
    "utc_now",
]

# Expiry writes in flight at once during a sweep: a mass expiry on the
# JetStream store goes out concurrently, and the loop gets a turn between batches.
SWEEP_BATCH = 64
# A key past the expiry budget is looked at again this much later (next sweep).
DEFERRED_FOR = 0.1
# Expiry writes in flight at once: a sliding window, not batches in lockstep,
# so a mass expiry runs at the store's throughput rather than its latency.
SWEEP_IN_FLIGHT = 512


@dataclass(frozen=True, slots=True)
class InstanceLimits:
    """How many instances one service, and the registry, may hold."""

    per_service: int = 100_000
    total: int = 1_000_000


class LimitExceededError(Exception):
    """A new instance would pass a limit; nothing was stored."""


@dataclass(frozen=True, slots=True)
class ServiceSummary:
    """One line of the services list."""

    name: str
    instance_count: int
    statuses: dict[InstanceStatus, int]


class Registry(RegistryEngine):
    """Registers instances, tracks their liveness, answers queries about them."""

    def __init__(
        self,
        store: InstanceStore,
        timings: Timings | None = None,
        events: EventSink | None = None,
        clock: Callable[[], datetime] = utc_now,
        limits: InstanceLimits | None = None,
        leases: Leases | None = None,
        expiry_budget: ExpiryBudget | None = None,
    ) -> None:
        super().__init__(store, timings, events, clock, leases)
        self.limits = limits or InstanceLimits()
        self._budget = expiry_budget or ExpiryBudget()
        self.expiry_slowed = False  # a mass transition is being slowed (expiry_budget)
        self.recoveries = Recoveries(self._recover)

    async def register(self, request: RegisterRequest) -> Decision:
        """Register one instance; the decision says created, renewed or duplicate.

        Safe under concurrency: of many registrations of one instance id with
        different sessions, exactly one is CREATED.
        """
        now = self._clock()

        def change(before: InstanceRecord | None) -> Change[Decision]:
            decision = decide_registration(
                before,
                service_name=request.service_name,
                instance_id=request.instance_id,
                metadata=request.metadata,
                session_id=request.session_id,
                now=now,
                seq=request.seq,
            )
            if decision.outcome in (Outcome.DUPLICATE, Outcome.STALE):
                return Change(decision, KEEP)
            if before is None:
                self._check_room(request.service_name)
            created = decision.outcome is Outcome.CREATED
            return Change(decision, decision.record, registered=created)

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

        def change(before: InstanceRecord | None) -> Change[Decision]:
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
                return Change(decision, decision.record, registered=True)
            if before.session_id is not None:
                return Change(Decision(Outcome.DUPLICATE, before), KEEP)
            after = replace(touch(before, now), metadata=metadata)
            return Change(Decision(Outcome.RENEWED, after), after)

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

    async def heartbeat(
        self, key: InstanceKey, session_id: str, *, store: bool = False, seq: int | None = None
    ) -> OwnerResult:
        """Contact from the owner: ONLINE again and deadlines restart.

        A steady heartbeat (ONLINE, not UNHEALTHY by age) is only remembered
        here, and a stored contact older than ``timings.refresh_after`` is
        rewritten in the background (``recoveries``); the store is written on the
        request path when the status changes, or with ``store``: when the router
        holding the lease may not hear of it.
        """
        now = self._clock()
        if not store:
            steady = self.heard(key, session_id, now.timestamp(), seq=seq)
            if steady is not None:
                return OwnerResult(OwnerCheck.OK, replace(steady, last_heartbeat_at=now))
            if self.recoveries.crowded:
                deferred = self._defer_write(key, session_id, seq, now)
                if deferred is not None:
                    return deferred

        def act(record: InstanceRecord) -> InstanceRecord:
            return touch(record, now)

        change = self._owned(session_id, seq, act, recovering_cause=True)
        self.recoveries.inline += 1
        try:
            result, _ = await self._apply(key, change, "heartbeat", now)
        finally:
            self.recoveries.inline -= 1
        return result

    def _defer_write(
        self, key: InstanceKey, session_id: str, seq: int | None, now: datetime
    ) -> OwnerResult | None:
        """A live instance of this session heard while many heartbeat writes are in
        flight, whose contact needs a write (a recovery from UNHEALTHY, or the periodic
        refresh of an ONLINE one): ONLINE in the reply now, the contact in memory, in
        the store when ``recoveries`` writes it; None when it is anything else (the
        full path answers).

        The refresh matters as much as the recovery: a registration storm makes the
        refreshes of its instances fall due together every ``refresh_after``, and with
        each write on the request path a slow store held their replies past the
        clients' timeouts while the sweep, not seeing the contacts, declared them
        dead (bench/capacity.py, 250 s into the run).
        """
        current = self._store.peek(key)
        if current is None:
            return None
        stored = current.record
        if (
            stored.status is InstanceStatus.OFFLINE
            or stored.session_id != session_id
            or is_stale(stored, session_id, seq)
        ):
            return None
        at = now.timestamp()
        if at - self.leases.alive_at(stored) >= self.timings.offline_after:
            return None  # OFFLINE by age already: the full path says 404
        self.leases.heard(key, at)  # where the sweep looks: it cannot expire meanwhile
        self.recoveries.defer(key, session_id)
        return OwnerResult(OwnerCheck.OK, touch(stored, now))

    async def _recover(self, key: InstanceKey, session_id: str) -> None:
        """Write a deferred recovery: ONLINE again, if still this session's and live."""
        now = self._clock()
        change = self._owned(session_id, None, lambda r: touch(r, now), recovering_cause=True)
        await self._apply(key, change, "heartbeat", now)

    def heard(
        self,
        key: InstanceKey,
        session_id: str,
        at: float,
        partition: int | None = None,
        *,
        seq: int | None = None,
    ) -> InstanceRecord | None:
        """Take a steady heartbeat at ``at`` (epoch seconds) in memory only: the stored
        record (whose contact is now ``at``), or None, having changed nothing, when
        it must go to the store.

        ``partition`` is ``key``'s, if the caller has it already (the hot path
        hashes it once a request). A ``seq`` the record's own overtook is answered
        by ``heartbeat()`` (409).
        """
        current = self._store.peek(key)
        if current is None:
            return None
        stored = current.record
        if stored.status is not InstanceStatus.ONLINE or stored.session_id != session_id:
            return None
        if seq is not None and stored.seq is not None and seq < stored.seq:
            return None
        timings = self.timings
        stored_at = stored.last_heartbeat_at.timestamp()
        leases = self.leases
        # alive_at is never before the last contact: a contact within
        # unhealthy_after settles it without the partition's floors (the common case).
        if (
            at - leases.last_contact(key, stored_at) >= timings.unhealthy_after
            and at - leases.alive_at(stored, partition) >= timings.unhealthy_after
        ):
            return None  # UNHEALTHY by age already: the recovery is news
        # No deadline moves: the sweep finds the contact when the old one comes
        # due (_heard_since), once per unhealthy_after instead of on every beat.
        leases.heard(key, at)
        if at - stored_at >= self._refresh_after:
            # The stored contact's refresh is news to no one waiting: written in the
            # background at the store's pace, so a wave of them (every instance of a
            # storm falls due together) never holds replies or takes the slow path.
            self.recoveries.defer(key, session_id)
        return stored

    async def deregister(
        self, key: InstanceKey, session_id: str, seq: int | None = None
    ) -> OwnerResult:
        """The owner leaves: OFFLINE at once (unless its own later request overtook it)."""
        now = self._clock()
        change = self._owned(
            session_id, seq, lambda r: take_offline(r, now, seq), deregistering=True
        )
        result, _ = await self._apply(key, change, "deregister", now)
        return result

    async def force_deregister(self, key: InstanceKey) -> InstanceRecord | None:
        """An operator takes a live instance OFFLINE whatever its session; None if unknown."""
        now = self._clock()

        def change(before: InstanceRecord | None) -> Change[InstanceRecord | None]:
            if before is None or not before.is_live:
                return Change(before, KEEP)
            after = take_offline(before, now)
            return Change(after, after, deregistered=True)

        record, _ = await self._apply(key, change, "operator", now)
        return record

    async def set_maintenance(self, key: InstanceKey, reason: str | None) -> InstanceRecord | None:
        """An operator puts a live instance in maintenance (``reason``), or takes it out
        (None); the record as it is then, or None if no live instance has ``key``."""
        now = self._clock()

        def change(before: InstanceRecord | None) -> Change[InstanceRecord | None]:
            if before is None or not before.is_live:
                return Change(None, KEEP)
            current = before.maintenance
            if (reason is None and current is None) or (
                current is not None and reason == current.reason
            ):
                return Change(before, KEEP)  # already so: no write, no event
            mark = None if reason is None else MaintenanceMark(reason, now)
            after = replace(before, maintenance=mark)
            return Change(after, after)

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
        seq: int | None,
        act: Callable[[InstanceRecord], InstanceRecord],
        *,
        deregistering: bool = False,
        recovering_cause: bool = False,
    ) -> Callable[[InstanceRecord | None], Change[OwnerResult]]:
        def change(before: InstanceRecord | None) -> Change[OwnerResult]:
            check = check_owner(before, session_id, seq)
            if check is not OwnerCheck.OK or before is None:
                return Change(OwnerResult(check, before), KEEP)
            after = act(before)
            # A heartbeat that changes no status only refreshes the stored contact.
            cause = "refresh" if recovering_cause and before.status is after.status else None
            return Change(OwnerResult(check, after), after, deregistered=deregistering, cause=cause)

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
        left = held = len(self._deadlines)
        expiring = 0  # keys handed to _expire (not those only heard since)
        deferred = 0  # keys past the expiry budget, left for the next sweep
        frozen = False
        at = now.timestamp()
        while left > 0 and (batch := self._deadlines.pop_due(at, SWEEP_BATCH)):
            left -= len(batch)
            if expiring >= SWEEP_BATCH:
                # A mass expiry replaces many records at once, and CPython's full
                # collection would then scan them all in one go (~150 ms at
                # 100,000). Records hold no reference cycles: exempt what lives
                # now from cyclic-GC scans (O(1)) instead of pausing the loop.
                # The price: a cycle alive at this moment and dropped later is
                # never collected (rare: only sweeps that expire more than a
                # batch do it, not the steady ones that find contacts).
                if not frozen:
                    # Young cycles are collected first (cheap: the young
                    # generations are small), since a frozen cycle never is.
                    gc.collect(1)
                    frozen = True
                gc.freeze()
            for key in batch:
                if self._heard_since(key, at):
                    continue
                if not self._budget.take(at, held):
                    self._deadlines.set(key, at + DEFERRED_FOR)
                    deferred += 1
                    continue
                expiring += 1
                await slots.acquire()
                task = asyncio.create_task(expire(key))
                running.add(task)
                task.add_done_callback(done)
            await asyncio.sleep(0)
        if running:
            await asyncio.wait(running)
        self._say_slowed(deferred, held)
        return changed

    def _say_slowed(self, deferred: int, held: int) -> None:
        """Log and flag when a mass transition starts and stops being slowed."""
        if deferred and not self.expiry_slowed:
            self.expiry_slowed = True
            EXPIRY_SLOWED.set(1)
            log.warning(
                "mass_expiry_slowed",
                deferred=deferred,
                held=held,
                per_second=self._budget.rate(held),
            )
        elif not deferred and self.expiry_slowed:
            self.expiry_slowed = False
            EXPIRY_SLOWED.set(0)
            log.info("mass_expiry_caught_up", held=held)

    def _heard_since(self, key: InstanceKey, at: float) -> bool:
        """Whether ``key``, due at ``at``, was heard from within ``unhealthy_after``
        after all; if so its deadline moves to that contact's.

        Steady heartbeats leave deadlines where they were (``heard``), so most
        keys a sweep pops need only this look, not an ``_expire``. A contact is
        heard only while the instance is ONLINE and forgotten when it leaves
        the live statuses, so a fresh one means an instance that is alive;
        should another router have marked it UNHEALTHY meanwhile, its real
        deadline (``offline_after``) is later still. The new deadline counts
        from that contact, never later than ``alive_at`` would put it: at worst
        the key is looked at again early, where ``_expire`` decides.
        """
        # Not asking whether the lease is still ours (a hash, a third of this
        # look): a key whose partition moved away is re-added at most once,
        # and its next look finds the contacts gone to the new holder, so
        # _expire drops it from the index (writing nothing: the holder's floors).
        heard = self.leases.contact(key)
        if heard is None:
            return False
        due = heard + self.timings.unhealthy_after
        if due <= at:
            return False
        self._deadlines.set(key, due)
        return True

    async def _expire(self, key: InstanceKey, now: datetime) -> bool:
        """Write what age did to one instance (nothing, if it did nothing)."""

        def change(seen: InstanceRecord | None) -> Change[None]:
            return Change(None, seen)

        try:
            _, wrote = await self._apply(key, change, "expired", now)
        except Exception:
            # Not lost: try this key again on a later tick.
            log.exception("sweep_failed", service=key.service_name, instance=key.instance_id)
            self._deadlines.set(key, now.timestamp() + 1.0)
            return False
        SWEEP_CHANGES.inc(wrote)
        return wrote

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
