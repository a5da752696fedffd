"""The registry service over the in-memory store, and the store's CAS semantics."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from aegis.router.domain import InstanceKey, InstanceRecord, Outcome
from aegis.router.registry import MAX_CAS_ATTEMPTS, Registry
from aegis.router.store import AlreadyExists, MemoryStore, RevisionMismatch, StoreError, Versioned
from aegis.wire.messages import InstanceStatus, RegisterRequest

from tests.support import T0, FakeClock


def request(
    service: str = "billing", instance: str = "b-1", session: str | None = "s-1", **metadata: object
) -> RegisterRequest:
    return RegisterRequest(
        service_name=service, instance_id=instance, session_id=session, metadata=metadata
    )


def record(
    service: str,
    instance: str,
    status: InstanceStatus = InstanceStatus.ONLINE,
    session: str | None = "s",
) -> InstanceRecord:
    return InstanceRecord(service, instance, status, {}, T0, T0, session)


class YieldingStore(MemoryStore):
    """A MemoryStore that gives other tasks a turn before every call, like a networked store."""

    async def get(self, key: InstanceKey) -> Versioned | None:
        await asyncio.sleep(0)
        return await super().get(key)

    async def create(self, rec: InstanceRecord) -> int:
        await asyncio.sleep(0)
        return await super().create(rec)

    async def update(self, rec: InstanceRecord, expected_revision: int) -> int:
        await asyncio.sleep(0)
        return await super().update(rec, expected_revision)


class AlwaysConflictingStore(MemoryStore):
    """Every write loses a race; counts the writes."""

    def __init__(self, existing: InstanceRecord | None) -> None:
        super().__init__()
        self._existing = existing
        self.writes = 0

    async def get(self, key: InstanceKey) -> Versioned | None:
        return Versioned(self._existing, 1) if self._existing else None

    async def create(self, rec: InstanceRecord) -> int:
        self.writes += 1
        raise AlreadyExists(rec.key)

    async def update(self, rec: InstanceRecord, expected_revision: int) -> int:
        self.writes += 1
        raise RevisionMismatch(rec.key)


async def test_register_create_renew_duplicate() -> None:
    clock = FakeClock()
    store = MemoryStore()
    registry = Registry(store, clock=clock)

    first = await registry.register(request(version="1"))
    assert first.outcome is Outcome.CREATED
    clock.now = T0 + timedelta(seconds=7)
    again = await registry.register(request(version="2"))
    assert again.outcome is Outcome.RENEWED
    other = await registry.register(request(session="s-2"))
    assert other.outcome is Outcome.DUPLICATE

    current = await store.get(InstanceKey("billing", "b-1"))
    assert current is not None
    kept = current.record
    assert kept.metadata == {"version": "1"}
    assert (kept.registered_at, kept.last_heartbeat_at) == (T0, T0 + timedelta(seconds=7))
    assert kept.session_id == "s-1"


@pytest.mark.parametrize("store_type", [MemoryStore, YieldingStore])
async def test_concurrent_registrations_create_exactly_one(store_type: type[MemoryStore]) -> None:
    store = store_type()
    registry = Registry(store)
    decisions = await asyncio.gather(
        *(registry.register(request(session=f"s-{n}")) for n in range(50))
    )
    outcomes = [d.outcome for d in decisions]
    assert outcomes.count(Outcome.CREATED) == 1
    assert outcomes.count(Outcome.DUPLICATE) == 49
    winner = next(d.record for d in decisions if d.outcome is Outcome.CREATED)
    assert all(d.record == winner for d in decisions)
    assert await store.list_all() == [winner]


@pytest.mark.parametrize(
    "existing", [None, record("billing", "b-1", session="s-1")], ids=["create", "renew"]
)
async def test_gives_up_with_store_error_after_max_cas_attempts(
    existing: InstanceRecord | None,
) -> None:
    store = AlwaysConflictingStore(existing)
    with pytest.raises(StoreError):
        await Registry(store).register(request())
    assert store.writes == MAX_CAS_ATTEMPTS


async def filled_registry() -> Registry:
    store = MemoryStore()
    for rec in [
        record("payments", "p-2", InstanceStatus.OFFLINE),
        record("billing", "b-2", InstanceStatus.UNHEALTHY),
        record("payments", "p-1"),
        record("billing", "b-1"),
        record("billing", "b-3", InstanceStatus.OFFLINE),
        record("audit", "a-1", InstanceStatus.UNHEALTHY),
    ]:
        await store.create(rec)
    registry = Registry(store)
    await registry.load()  # what the router does at start-up
    return registry


async def test_services_counts_by_status_sorted_by_name() -> None:
    summaries = await (await filled_registry()).services()
    assert [(s.name, s.instance_count, dict(s.statuses)) for s in summaries] == [
        (
            "audit",
            1,
            {InstanceStatus.ONLINE: 0, InstanceStatus.UNHEALTHY: 1, InstanceStatus.OFFLINE: 0},
        ),
        (
            "billing",
            3,
            {InstanceStatus.ONLINE: 1, InstanceStatus.UNHEALTHY: 1, InstanceStatus.OFFLINE: 1},
        ),
        (
            "payments",
            2,
            {InstanceStatus.ONLINE: 1, InstanceStatus.UNHEALTHY: 0, InstanceStatus.OFFLINE: 1},
        ),
    ]


async def test_services_empty_registry() -> None:
    assert await Registry(MemoryStore()).services() == []


@pytest.mark.parametrize(
    ("service", "status", "expected"),
    [
        (
            None,
            None,
            [
                "audit/a-1",
                "billing/b-1",
                "billing/b-2",
                "billing/b-3",
                "payments/p-1",
                "payments/p-2",
            ],
        ),
        ("billing", None, ["billing/b-1", "billing/b-2", "billing/b-3"]),
        (None, InstanceStatus.UNHEALTHY, ["audit/a-1", "billing/b-2"]),
        ("payments", InstanceStatus.OFFLINE, ["payments/p-2"]),
        ("payments", InstanceStatus.UNHEALTHY, []),
        ("nope", None, []),
    ],
)
async def test_instances_filters_and_sorts(
    service: str | None, status: InstanceStatus | None, expected: list[str]
) -> None:
    found = await (await filled_registry()).instances(service, status)
    assert [f"{r.service_name}/{r.instance_id}" for r in found] == expected


async def test_memory_store_create_and_update_revisions() -> None:
    store = MemoryStore()
    key = InstanceKey("billing", "b-1")
    assert await store.get(key) is None

    rev1 = await store.create(record("billing", "b-1"))
    with pytest.raises(AlreadyExists):
        await store.create(record("billing", "b-1", InstanceStatus.OFFLINE))
    assert await store.get(key) == Versioned(record("billing", "b-1"), rev1)

    changed = record("billing", "b-1", InstanceStatus.UNHEALTHY)
    rev2 = await store.update(changed, rev1)
    assert rev2 > rev1
    with pytest.raises(RevisionMismatch):
        await store.update(record("billing", "b-1"), rev1)  # stale revision
    assert await store.get(key) == Versioned(changed, rev2)

    with pytest.raises(RevisionMismatch):
        await store.update(record("billing", "absent"), rev2)
    assert await store.list_service("billing") == [changed]
    assert await store.list_service("absent") == []
