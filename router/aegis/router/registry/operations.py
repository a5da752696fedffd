"""The registry service: registration, heartbeats, operator actions and queries.

Each operation is a small ``change`` function handed to the engine's
compare-and-set loop (``RegistryEngine.apply``, engine.py), so which rule runs
under which compare-and-set stays in view. Steady heartbeats and the sweep are
``Liveness``'s (liveness.py); the registry holds both collaborators.
"""

from __future__ import annotations

import asyncio
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
from aegis.router.registry.engine import (
    KEEP,
    MAX_CAS_ATTEMPTS,
    Change,
    EventSink,
    OwnerResult,
    RegistryEngine,
    utc_now,
)
from aegis.router.registry.expiry_budget import ExpiryBudget
from aegis.router.registry.liveness import Liveness
from aegis.router.registry.pages import Page, PageQuery, read_page
from aegis.router.registry.recoveries import Recoveries
from aegis.router.store.port import InstanceStore
from aegis.wire.messages import (
    FilterValue,
    InstanceStatus,
    RegisterFields,
    RegisterRequest,
    matches,
)

__all__ = [
    "MAX_CAS_ATTEMPTS",
    "EventSink",
    "InstanceLimits",
    "LimitExceededError",
    "OwnerResult",
    "Page",
    "PageQuery",
    "Registry",
    "ServiceSummary",
    "utc_now",
]

# Maintenance marks of one service written at once.
SERVICE_BATCH = 64


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


class Registry:
    """Registers instances, takes their heartbeats, answers queries about them.

    Holds the write engine (``RegistryEngine``) and the liveness over it
    (``liveness``: steady heartbeats in memory, the sweep).
    """

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
        self._engine = engine = RegistryEngine(store, timings, events, clock, leases)
        self._store = store
        self._clock = clock
        self.limits = limits or InstanceLimits()
        self.recoveries = Recoveries(self._recover)
        self.liveness = Liveness(engine, expiry_budget, write_later=self.recoveries.defer)

    @property
    def timings(self) -> Timings:
        """The liveness timings every deadline counts by."""
        return self._engine.timings

    @property
    def leases(self) -> Leases:
        """The leases: which this router holds, and the contacts it heard."""
        return self._engine.leases

    @property
    def held(self) -> int:
        """How many instances this router sweeps (the leases it holds)."""
        return self._engine.held

    @property
    def version(self) -> int:
        """Changes with every change of an instance's status or existence."""
        return self._engine.version

    @property
    def changes(self) -> int:
        """Changes with every change a listing shows (not with a contact alone)."""
        return self._engine.order.changes

    def service_size(self, service_name: str) -> int:
        """How many instances ``service_name`` has (0: none, or no such service)."""
        return self._engine.counts.of_service(service_name)

    def now(self) -> datetime:
        """The registry's clock."""
        return self._clock()

    async def load(self) -> int:
        """Track every record already stored; call once before serving."""
        return await self._engine.load()

    def set_event_sink(self, events: EventSink | None) -> None:
        """Start (or stop) announcing changes, e.g. once NATS is connected."""
        self._engine.set_event_sink(events)

    def offline_at(self, record: InstanceRecord) -> datetime:
        """When a live ``record`` goes OFFLINE (and may be taken over) if nothing more is
        heard, counted from its lease's liveness."""
        return self._engine.offline_at(record)

    async def register(self, request: RegisterRequest | RegisterFields) -> Decision:
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
        decision, _ = await self._engine.apply(key, change, "register", now)
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

        decision, _ = await self._engine.apply(key, change, "micro", now)
        return decision

    def _check_room(self, service_name: str) -> None:
        """Refuse a new key past a limit (concurrent creates may pass it by a few)."""
        counts = self._engine.counts
        if counts.total >= self.limits.total:
            raise LimitExceededError(
                f"the registry holds {counts.total} instances, its limit (AEGIS_MAX_INSTANCES)"
            )
        if counts.of_service(service_name) >= self.limits.per_service:
            raise LimitExceededError(
                f"service {service_name!r} has {self.limits.per_service} instances, its "
                "limit (AEGIS_MAX_INSTANCES_PER_SERVICE)"
            )

    async def heartbeat(
        self, key: InstanceKey, session_id: str, *, store: bool = False, seq: int | None = None
    ) -> OwnerResult:
        """Contact from the owner: ONLINE again and deadlines restart.

        A steady heartbeat (ONLINE, not UNHEALTHY by age) is only remembered
        here (``liveness.heard``), and a stored contact older than
        ``timings.refresh_after`` is rewritten in the background
        (``recoveries``); the store is written on the request path when the
        status changes, or with ``store``: when the router holding the lease may
        not hear of it.
        """
        now = self._clock()
        if not store:
            steady = self.liveness.heard(key, session_id, now.timestamp(), seq=seq)
            if steady is not None:
                return OwnerResult(OwnerCheck.OK, replace(steady, last_heartbeat_at=now))
        return await self._write_heartbeat(key, session_id, now, store=store, seq=seq)

    async def write_heartbeat(
        self, key: InstanceKey, session_id: str, *, store: bool, seq: int | None = None
    ) -> OwnerResult:
        """``heartbeat`` for one already found not steady (``liveness.heard`` said so,
        or ``store``): its contact goes to the store."""
        return await self._write_heartbeat(key, session_id, self._clock(), store=store, seq=seq)

    async def _write_heartbeat(
        self, key: InstanceKey, session_id: str, now: datetime, *, store: bool, seq: int | None
    ) -> OwnerResult:
        if not store and self.recoveries.crowded:
            deferred = self._defer_write(key, session_id, seq, now)
            if deferred is not None:
                return deferred

        def act(record: InstanceRecord) -> InstanceRecord:
            return touch(record, now)

        change = self._owned(session_id, seq, act, recovering_cause=True)
        self.recoveries.inline += 1
        try:
            result, _ = await self._engine.apply(key, change, "heartbeat", now)
        finally:
            self.recoveries.inline -= 1
        return result

    def _defer_write(
        self, key: InstanceKey, session_id: str, seq: int | None, now: datetime
    ) -> OwnerResult | None:
        """A live instance of this session heard while many heartbeat writes are in
        flight, whose contact needs a write (a recovery from UNHEALTHY): ONLINE in the
        reply now, the contact in memory, in the store when ``recoveries`` writes it;
        None when it is anything else (the full path answers). A due refresh of a
        steady one never comes here: ``liveness.heard`` defers it always.
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
        await self._engine.apply(key, change, "heartbeat", now)

    async def deregister(
        self, key: InstanceKey, session_id: str, seq: int | None = None
    ) -> OwnerResult:
        """The owner leaves: OFFLINE at once (unless its own later request overtook it)."""
        now = self._clock()
        change = self._owned(
            session_id, seq, lambda r: take_offline(r, now, seq), deregistering=True
        )
        result, _ = await self._engine.apply(key, change, "deregister", now)
        return result

    async def force_deregister(
        self, key: InstanceKey, actor: str | None = None
    ) -> InstanceRecord | None:
        """An operator (``actor``, its token's name) takes a live instance OFFLINE whatever
        its session; None if unknown."""
        now = self._clock()

        def change(before: InstanceRecord | None) -> Change[InstanceRecord | None]:
            if before is None or not before.is_live:
                return Change(before, KEEP)
            after = take_offline(before, now)
            return Change(after, after, deregistered=True)

        record, _ = await self._engine.apply(key, change, "operator", now, actor)
        return record

    async def set_maintenance(
        self, key: InstanceKey, reason: str | None, actor: str | None = None
    ) -> InstanceRecord | None:
        """An operator (``actor``) puts a live instance in maintenance (``reason``), or takes
        it out (None); the record as it is then, or None if no live instance has ``key``.

        The mark outlives the instance's runs (a re-registration keeps it) and keeps
        an OFFLINE record from being removed, so clearing it also works on an
        OFFLINE record, which is then removed in its time.
        """
        now = self._clock()

        def change(before: InstanceRecord | None) -> Change[InstanceRecord | None]:
            if before is None:
                return Change(None, KEEP)
            if not before.is_live and (reason is not None or before.maintenance is None):
                return Change(None, KEEP)
            current = before.maintenance
            if (reason is None and current is None) or (
                current is not None and reason == current.reason
            ):
                return Change(before, KEEP)  # already so: no write, no event
            mark = None if reason is None else MaintenanceMark(reason, now)
            after = replace(before, maintenance=mark)
            return Change(after, after)

        record, _ = await self._engine.apply(key, change, "operator", now, actor)
        return record

    async def set_service_maintenance(
        self, service_name: str, reason: str | None, actor: str | None = None
    ) -> list[InstanceRecord] | None:
        """``set_maintenance`` on every live instance of a service; None if it has none."""
        keys = [
            r.key
            for r in await self._store.list_service(service_name)
            if r.is_live or (reason is None and r.maintenance is not None)
        ]
        if not keys:
            return None
        done: list[InstanceRecord] = []
        for start in range(0, len(keys), SERVICE_BATCH):
            batch = keys[start : start + SERVICE_BATCH]
            results = await asyncio.gather(*(self.set_maintenance(k, reason, actor) for k in batch))
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

    async def services(self) -> list[ServiceSummary]:
        """Every service with its instance counts by status, sorted by name."""
        return [
            ServiceSummary(name=name, instance_count=sum(counts.values()), statuses=counts)
            for name, counts in self._engine.counts.by_service()
        ]

    def instance(self, key: InstanceKey) -> InstanceRecord | None:
        """One instance as this router sees it (contacts heard but not yet written
        included), whatever its status; None if none has ``key``."""
        current = self._store.peek(key)
        return None if current is None else self._engine.as_heard(current.record)

    def page(self, query: PageQuery) -> Page:
        """One page of instances in listing order (service name, then instance id), with
        contacts this router heard but has not written yet; no await, so the page and
        anything read beside it (the event feed's head) show the same moment."""
        engine = self._engine
        page = read_page(engine.order, engine.counts.names, self._store.peek, query)
        as_heard = engine.as_heard
        return Page([as_heard(r) for r in page.records], page.total, page.more)

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
        records = [self._engine.as_heard(r) for r in records]
        return sorted(records, key=lambda r: (r.service_name, r.instance_id))
