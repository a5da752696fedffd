"""aegis.router.registry.engine over the in-memory store, on a fake clock: the one
compare-and-set loop every change goes through.

Races and conflicts, store round trips, what age decides before a write, write causes,
change events and their log lines.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aegis.router.domain import InstanceKey, InstanceRecord, Outcome, OwnerCheck
from aegis.router.registry.operations import MAX_CAS_ATTEMPTS, Registry
from aegis.router.store.port import (
    AlreadyExists,
    MemoryStore,
    RevisionMismatch,
    StoreError,
    Versioned,
)
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from tests.unit.router.fakes import (
    KEY,
    LATE,
    OFFLINE,
    ONLINE,
    OTHER_SESSION,
    SESSION,
    RoundTrips,
    current,
    make_registry,
    register_request,
    status_of,
    stored,
    sweep_at,
)


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


@pytest.mark.parametrize("store_type", [MemoryStore, YieldingStore])
async def test_concurrent_registrations_create_exactly_one(store_type: type[MemoryStore]) -> None:
    store = store_type()
    registry = Registry(store)
    decisions = await asyncio.gather(
        *(registry.register(register_request(session=f"s-{n}")) for n in range(50))
    )
    outcomes = [d.outcome for d in decisions]
    assert outcomes.count(Outcome.CREATED) == 1
    assert outcomes.count(Outcome.DUPLICATE) == 49
    winner = next(d.record for d in decisions if d.outcome is Outcome.CREATED)
    assert all(d.record == winner for d in decisions)
    assert await store.list_all() == [winner]


@pytest.mark.parametrize(
    "existing", [None, stored("b-1", ONLINE, session="s-1")], ids=["create", "renew"]
)
async def test_gives_up_with_store_error_after_max_cas_attempts(
    existing: InstanceRecord | None,
) -> None:
    store = AlwaysConflictingStore(existing)
    with pytest.raises(StoreError):
        await Registry(store).register(register_request())
    assert store.writes == MAX_CAS_ATTEMPTS


class BrokenSink:
    async def publish(self, service_name: str, event: dict[str, Any], data: bytes) -> None:
        raise ConnectionError("nats is down")


async def test_a_failing_event_sink_never_fails_the_operation() -> None:
    registry, clock, _, store = make_registry()
    registry.set_event_sink(BrokenSink())
    with capture_logs() as logs:
        decision = await registry.register(register_request())
        assert (await registry.heartbeat(KEY, SESSION)).check is OwnerCheck.OK
        assert await sweep_at(registry, clock, 10 + LATE) == 1
        assert (await registry.deregister(KEY, SESSION)).check is OwnerCheck.OK

    assert decision.outcome is Outcome.CREATED
    assert await status_of(store) is OFFLINE
    failures = [e for e in logs if e["event"] == "event_publish_failed"]
    assert len(failures) == 3  # registered, status_changed, deregistered
    assert all(e["service"] == "billing" and "nats is down" in e["error"] for e in failures)


async def test_one_log_event_per_transition_and_never_a_session() -> None:
    registry, clock, sink, _ = make_registry()
    other = InstanceKey("billing", "b-2")
    with capture_logs() as logs:
        await registry.register(register_request())
        await registry.register(register_request("b-2"))
        await registry.register(register_request(session=OTHER_SESSION))  # 409: no change
        await registry.heartbeat(KEY, SESSION)  # ONLINE stays ONLINE: no news
        await registry.heartbeat(KEY, OTHER_SESSION)  # 403: no change
        clock.at(3)
        await registry.deregister(other, SESSION)
        await registry.force_deregister(other)  # already OFFLINE: no change
        for at in (10 + LATE, 20 + LATE, 100 + LATE, 150 + LATE):
            await sweep_at(registry, clock, at)

    transitions = [(e["event"], e["instance"]) for e in logs if e["event"].startswith("instance_")]
    assert transitions == [
        ("instance_registered", "b-1"),
        ("instance_registered", "b-2"),
        ("instance_deregistered", "b-2"),
        ("instance_status_changed", "b-1"),
        ("instance_status_changed", "b-1"),
        ("instance_removed", "b-1"),
        ("instance_removed", "b-2"),
    ]
    assert [(e.event.value, e.instance.instance_id) for e in sink.events] == [
        (name.removeprefix("instance_"), instance) for name, instance in transitions
    ]
    for secret in (SESSION, OTHER_SESSION):
        assert secret not in repr(logs)
        assert all(secret not in e.model_dump_json() for e in sink.events)


async def test_an_instance_offline_by_age_is_not_revived_before_the_sweep() -> None:
    registry, clock, sink, _ = make_registry()
    await registry.register(register_request())
    clock.at(20 + LATE)  # past offline_after, and no sweep has run

    heartbeat = await registry.heartbeat(KEY, SESSION)
    takeover = await registry.register(register_request(session=OTHER_SESSION))

    assert heartbeat.check is OwnerCheck.NOT_FOUND
    assert takeover.outcome is Outcome.CREATED
    assert sink.summary()[-1] == ("registered", "ONLINE", "ONLINE")


async def test_registration_and_heartbeat_take_one_store_round_trip() -> None:
    store = RoundTrips()
    registry, _, _, _ = make_registry(store)

    assert (await registry.register(register_request())).outcome is Outcome.CREATED
    assert (await registry.heartbeat(KEY, SESSION)).check is OwnerCheck.OK
    assert (await registry.register(register_request())).outcome is Outcome.RENEWED

    # The steady heartbeat touches no store at all.
    assert store.calls == ["create", "update"], "no read before a write"


async def test_a_lagging_cache_costs_one_read_and_the_fresh_record_decides() -> None:
    store = RoundTrips()
    registry, _, _, _ = make_registry(store)
    await registry.register(register_request(session=OTHER_SESSION))
    store.stale[KEY], store.calls = None, []  # this router has not seen it yet

    decision = await registry.register(register_request())

    assert decision.outcome is Outcome.DUPLICATE
    assert store.calls == ["create", "get"]


async def test_a_decision_to_write_nothing_is_checked_against_the_store() -> None:
    store = RoundTrips()
    registry, _, _, _ = make_registry(store)
    await registry.register(register_request(session=OTHER_SESSION))
    live = store.peek(KEY)
    await registry.deregister(KEY, OTHER_SESSION)  # OFFLINE now: anyone may take it
    store.stale[KEY], store.calls = live, []  # but this router still sees it live

    decision = await registry.register(register_request())

    assert decision.outcome is Outcome.CREATED, "a stale cache must not answer 409"
    assert store.calls == ["get", "update"]


async def test_store_writes_are_counted_by_cause() -> None:
    registry, clock, _, _ = make_registry()

    def writes(cause: str) -> float:
        return REGISTRY.get_sample_value("aegis_store_writes_total", {"cause": cause}) or 0.0

    causes = ("register", "heartbeat", "refresh", "expired")
    before = {cause: writes(cause) for cause in causes}
    await registry.register(register_request())
    await registry.heartbeat(KEY, SESSION)  # steady: writes nothing
    await registry.register(register_request(session=OTHER_SESSION))  # 409: writes nothing
    await sweep_at(registry, clock, 10 + LATE)  # UNHEALTHY
    await registry.heartbeat(KEY, SESSION)  # ONLINE again: news, written
    for n in range(1, 53):  # steady for 130 s: one refresh, refresh_after (120 s) on
        clock.at(10 + LATE + 2.5 * n)
        await registry.heartbeat(KEY, SESSION)
    await registry.recoveries.drained()  # refreshes are written in the background

    assert {cause: writes(cause) - n for cause, n in before.items()} == {
        "register": 1,
        "heartbeat": 1,
        "refresh": 1,
        "expired": 1,
    }


async def test_each_change_event_carries_the_next_version_of_its_instance() -> None:
    registry, clock, sink, store = make_registry()
    await registry.register(register_request())
    await registry.heartbeat(KEY, SESSION)  # steady: no event, no new version
    await sweep_at(registry, clock, 10 + LATE)  # UNHEALTHY
    await registry.heartbeat(KEY, SESSION)  # ONLINE again
    await registry.deregister(KEY, SESSION)  # OFFLINE
    await sweep_at(registry, clock, 10 + LATE + 100 + LATE)  # removed

    assert [(e.event.value, e.instance.version) for e in sink.events] == [
        ("registered", 1),
        ("status_changed", 2),
        ("status_changed", 3),
        ("deregistered", 4),
        ("removed", 5),
    ]
    assert await current(store) is None
