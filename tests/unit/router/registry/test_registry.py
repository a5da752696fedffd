"""aegis.router.registry.operations over the in-memory store, on a fake clock: no real time passes.

Registration with compare-and-set under races, the services and instances views,
and liveness: heartbeats, deregistration, sweeps, events and log lines.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from aegis.router.domain import InstanceKey, InstanceRecord, Outcome, OwnerCheck
from aegis.router.registry.expiry_budget import ExpiryBudget
from aegis.router.registry.operations import MAX_CAS_ATTEMPTS, SWEEP_BATCH, OwnerResult, Registry
from aegis.router.store.port import (
    AlreadyExists,
    MemoryStore,
    RevisionMismatch,
    StoreError,
    Versioned,
)
from aegis.wire.messages import InstanceStatus, RegisterRequest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from tests.support import T0, FakeClock
from tests.unit.router.fakes import (
    LATE,
    OTHER_SESSION,
    SESSION,
    make_registry,
    register_request,
    stored,
)

KEY = InstanceKey("billing", "b-1")
ONLINE, UNHEALTHY, OFFLINE = InstanceStatus.ONLINE, InstanceStatus.UNHEALTHY, InstanceStatus.OFFLINE


def request(
    service: str = "billing", instance: str = "b-1", session: str | None = "s-1", **metadata: object
) -> RegisterRequest:
    return RegisterRequest(
        service_name=service, instance_id=instance, session_id=session, metadata=metadata
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
    "existing", [None, stored("b-1", ONLINE, session="s-1")], ids=["create", "renew"]
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
        stored("p-2", OFFLINE, "payments"),
        stored("b-2", UNHEALTHY),
        stored("p-1", ONLINE, "payments"),
        stored("b-1", ONLINE),
        stored("b-3", OFFLINE),
        stored("a-1", UNHEALTHY, "audit"),
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


async def current(store: MemoryStore, key: InstanceKey = KEY) -> InstanceRecord | None:
    found = await store.get(key)
    return found.record if found else None


async def status_of(store: MemoryStore, key: InstanceKey = KEY) -> InstanceStatus:
    record = await current(store, key)
    assert record is not None
    return record.status


async def sweep_at(registry: Registry, clock: FakeClock, seconds: float) -> int:
    clock.at(seconds)
    return await registry.sweep()


async def test_heartbeat_restarts_the_deadlines_without_news() -> None:
    registry, clock, sink, store = make_registry()
    await registry.register(register_request())
    clock.at(8)
    result = await registry.heartbeat(KEY, SESSION)

    assert result.check is OwnerCheck.OK
    assert result.record is not None
    assert (result.record.status, result.record.last_heartbeat_at) == (ONLINE, clock.now)
    assert result.record.registered_at == T0
    stored_record = await current(store)
    assert stored_record is not None
    assert stored_record.last_heartbeat_at == T0, "a steady heartbeat writes nothing"
    # The router's own view shows the contact it heard.
    assert [r.last_heartbeat_at for r in await registry.instances()] == [clock.now]
    # UNHEALTHY comes 10 s after the heartbeat, not after the registration.
    assert await sweep_at(registry, clock, 10 + LATE) == 0
    assert await sweep_at(registry, clock, 18 + LATE) == 1
    assert [e.event.value for e in sink.events] == ["registered", "status_changed"]


@pytest.mark.parametrize(
    "contact",
    [
        pytest.param(lambda r: r.heartbeat(KEY, SESSION), id="heartbeat"),
        pytest.param(lambda r: r.register(register_request()), id="same-session-register"),
    ],
)
async def test_contact_brings_unhealthy_back_online(
    contact: Callable[[Registry], Awaitable[object]],
) -> None:
    registry, clock, sink, store = make_registry()
    await registry.register(register_request())
    assert await sweep_at(registry, clock, 10 + LATE) == 1
    clock.at(12)
    await contact(registry)

    record = await current(store)
    assert record is not None
    assert (record.status, record.last_heartbeat_at) == (ONLINE, clock.now)
    assert sink.summary()[-1] == ("status_changed", "ONLINE", "UNHEALTHY")


async def deregistered(registry: Registry, clock: FakeClock) -> None:
    await registry.deregister(KEY, SESSION)


async def expired(registry: Registry, clock: FakeClock) -> None:
    assert await sweep_at(registry, clock, 20 + LATE) == 1


async def removed(registry: Registry, clock: FakeClock) -> None:
    assert await sweep_at(registry, clock, 100 + LATE) == 1


@pytest.mark.parametrize("gone", [deregistered, expired, removed])
@pytest.mark.parametrize("session", [SESSION, OTHER_SESSION])
async def test_heartbeat_and_deregister_of_an_instance_that_is_gone_are_not_found(
    gone: Callable[[Registry, FakeClock], Awaitable[None]], session: str
) -> None:
    registry, clock, sink, store = make_registry()
    await registry.register(register_request())
    await gone(registry, clock)
    before, events = await current(store), len(sink.events)

    assert (await registry.heartbeat(KEY, session)).check is OwnerCheck.NOT_FOUND
    assert (await registry.deregister(KEY, session)).check is OwnerCheck.NOT_FOUND
    assert await current(store) == before
    assert len(sink.events) == events


async def test_unknown_instance_is_not_found() -> None:
    registry, _, sink, store = make_registry()
    assert (await registry.heartbeat(KEY, SESSION)).check is OwnerCheck.NOT_FOUND
    assert (await registry.deregister(KEY, SESSION)).check is OwnerCheck.NOT_FOUND
    assert await store.list_all() == []
    assert sink.events == []


@pytest.mark.parametrize(("owner", "caller"), [(SESSION, OTHER_SESSION), (None, SESSION)])
@pytest.mark.parametrize("action", [Registry.heartbeat, Registry.deregister])
@pytest.mark.parametrize("unhealthy", [False, True])
async def test_wrong_session_is_refused_and_nothing_changes(
    owner: str | None,
    caller: str,
    action: Callable[[Registry, InstanceKey, str], Awaitable[OwnerResult]],
    unhealthy: bool,
) -> None:
    registry, clock, sink, store = make_registry()
    await registry.register(register_request(session=owner))
    if unhealthy:
        await sweep_at(registry, clock, 10 + LATE)
    before, events = await store.get(KEY), list(sink.events)
    clock.at(15)

    result = await action(registry, KEY, caller)

    assert result.check is OwnerCheck.SESSION_MISMATCH
    assert await store.get(KEY) == before  # same record, same revision
    assert sink.events == events
    # The refused call was no contact: the instance still expires on its own schedule.
    assert await sweep_at(registry, clock, 20 + LATE) == 1
    assert await status_of(store) is OFFLINE


async def test_deregister_is_offline_at_once_and_removal_counts_from_then() -> None:
    registry, clock, sink, store = make_registry()
    await registry.register(register_request())
    clock.at(5)  # still ONLINE (unhealthy after 10)
    result = await registry.deregister(KEY, SESSION)

    assert result.check is OwnerCheck.OK
    assert result.record == await current(store)
    assert result.record is not None
    assert (result.record.status, result.record.last_heartbeat_at) == (OFFLINE, clock.now)
    assert sink.summary() == [
        ("registered", "ONLINE", None),
        ("deregistered", "OFFLINE", "ONLINE"),
    ]
    assert await sweep_at(registry, clock, 100 + LATE) == 0
    assert await sweep_at(registry, clock, 105 + LATE) == 1
    assert await current(store) is None
    assert sink.summary()[-1] == ("removed", "OFFLINE", "OFFLINE")


@pytest.mark.parametrize("owner", [SESSION, None])
async def test_force_deregister_takes_a_live_instance_offline_whatever_its_session(
    owner: str | None,
) -> None:
    registry, clock, sink, store = make_registry()
    await registry.register(register_request(session=owner))
    clock.at(4)
    record = await registry.force_deregister(KEY)

    assert record is not None
    assert record == await current(store)
    assert (record.status, record.last_heartbeat_at) == (OFFLINE, clock.now)
    assert sink.summary()[-1] == ("deregistered", "OFFLINE", "ONLINE")
    assert (await registry.heartbeat(KEY, SESSION)).check is OwnerCheck.NOT_FOUND


async def test_force_deregister_of_unknown_is_none() -> None:
    registry, _, sink, store = make_registry()
    assert await registry.force_deregister(KEY) is None
    assert await store.list_all() == []
    assert sink.events == []


async def test_force_deregister_of_offline_changes_nothing() -> None:
    registry, clock, sink, store = make_registry()
    await registry.register(register_request())
    await registry.deregister(KEY, SESSION)
    before, events = await store.get(KEY), len(sink.events)
    clock.at(60)

    record = await registry.force_deregister(KEY)

    assert before is not None
    assert record == before.record
    assert await store.get(KEY) == before
    assert len(sink.events) == events
    assert await sweep_at(registry, clock, 100 + LATE) == 1  # removal was not postponed


async def test_sweep_walks_the_whole_life_cycle_one_event_per_transition() -> None:
    registry, clock, sink, store = make_registry()
    await registry.register(register_request())
    steps = [(9.9, 0), (10 + LATE, 1), (15, 0), (19.9, 0), (20 + LATE, 1), (99, 0), (100 + LATE, 1)]

    counts = [await sweep_at(registry, clock, at) for at, _ in steps]

    assert counts == [n for _, n in steps]
    assert await store.list_all() == []
    assert sink.summary() == [
        ("registered", "ONLINE", None),
        ("status_changed", "UNHEALTHY", "ONLINE"),
        ("status_changed", "OFFLINE", "UNHEALTHY"),
        ("removed", "OFFLINE", "OFFLINE"),
    ]
    assert await sweep_at(registry, clock, 1000) == 0


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (20 + LATE, [("status_changed", "OFFLINE", "ONLINE")]),
        (100 + LATE, [("removed", "ONLINE", "ONLINE")]),
    ],
)
async def test_a_late_sweep_makes_one_jump(at: float, expected: list[tuple[str, str, str]]) -> None:
    registry, clock, sink, _ = make_registry()
    await registry.register(register_request())
    assert await sweep_at(registry, clock, at) == 1
    assert sink.summary()[1:] == expected


async def test_discovery_by_status() -> None:
    registry, clock, _, _ = make_registry()
    for name in ("gone", "quiet", "fresh"):
        await registry.register(register_request(name))
    await registry.register(register_request("other", service="payments"))
    await registry.deregister(InstanceKey("billing", "gone"), SESSION)
    clock.at(8)
    await registry.heartbeat(InstanceKey("billing", "fresh"), SESSION)
    await registry.heartbeat(InstanceKey("payments", "other"), SESSION)
    await sweep_at(registry, clock, 10 + LATE)

    async def ids(status: InstanceStatus | None) -> list[str]:
        return [r.instance_id for r in await registry.instances("billing", status)]

    assert await ids(ONLINE) == ["fresh"]
    assert await ids(UNHEALTHY) == ["quiet"]
    assert await ids(OFFLINE) == ["gone"]
    assert await ids(None) == ["fresh", "gone", "quiet"]
    assert await registry.instances("nope", ONLINE) == []


async def test_takeover_of_an_offline_instance_is_announced_as_registered() -> None:
    registry, clock, sink, _ = make_registry()
    await registry.register(register_request())
    await registry.deregister(KEY, SESSION)
    clock.at(1)
    decision = await registry.register(register_request(session=OTHER_SESSION))
    assert decision.outcome is Outcome.CREATED
    assert sink.summary()[-1] == ("registered", "ONLINE", "OFFLINE")


async def test_takeover_in_the_same_clock_tick_is_still_registered() -> None:
    """A coarse clock (or a quick restart) can give the new registration the old timestamp."""
    registry, _, sink, _ = make_registry()
    await registry.register(register_request())
    await registry.deregister(KEY, SESSION)
    with capture_logs() as logs:
        decision = await registry.register(register_request(session=OTHER_SESSION))
    assert decision.outcome is Outcome.CREATED
    assert [e["event"] for e in logs] == ["instance_registered"]
    assert sink.summary()[-1] == ("registered", "ONLINE", "OFFLINE")


async def test_a_stale_record_the_registry_never_tracked_still_expires_once_seen() -> None:
    """A record already in the store (e.g. a shared store after a router restart) that meets
    a refused registration must still expire, or the 409's promise would never come true."""
    registry, clock, _, store = make_registry()
    await store.create(stored("b-1", ONLINE))
    refused = await registry.register(register_request(session=OTHER_SESSION))
    assert refused.outcome is Outcome.DUPLICATE

    assert await sweep_at(registry, clock, 20 + LATE) == 1
    assert await status_of(store) is OFFLINE
    taken = await registry.register(register_request(session=OTHER_SESSION))
    assert taken.outcome is Outcome.CREATED


class BrokenSink:
    async def publish(self, service_name: str, event: dict[str, Any]) -> None:
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


class CountingStore(MemoryStore):
    """Counts reads of either kind (``get`` reads through ``peek`` here)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def peek(self, key: InstanceKey) -> Versioned | None:
        self.reads += 1
        return super().peek(key)


async def test_sweep_of_a_large_registry_reads_only_what_is_due() -> None:
    store = CountingStore()
    registry, clock, sink, _ = make_registry(store)
    stale = [f"stale-{n}" for n in range(10)]
    with capture_logs():
        for name in stale:
            await registry.register(register_request(name))
        clock.at(5)
        for n in range(20_000 - len(stale)):
            await registry.register(register_request(f"i-{n}"))
    assert len(await store.list_all()) == 20_000
    sink.events.clear()
    store.reads = 0

    with capture_logs():
        assert await sweep_at(registry, clock, 10 + LATE) == 10

    assert store.reads == len(stale)
    assert sorted(e.instance.instance_id for e in sink.events) == stale
    assert {e.instance.status for e in sink.events} == {UNHEALTHY}
    assert [r.instance_id for r in await registry.instances("billing", UNHEALTHY)] == stale


async def test_an_instance_offline_by_age_is_not_revived_before_the_sweep() -> None:
    registry, clock, sink, _ = make_registry()
    await registry.register(register_request())
    clock.at(20 + LATE)  # past offline_after, and no sweep has run

    heartbeat = await registry.heartbeat(KEY, SESSION)
    takeover = await registry.register(register_request(session=OTHER_SESSION))

    assert heartbeat.check is OwnerCheck.NOT_FOUND
    assert takeover.outcome is Outcome.CREATED
    assert sink.summary()[-1] == ("registered", "ONLINE", "ONLINE")


class RoundTrips(MemoryStore):
    """Records each call a networked store would make a round trip for.

    ``stale`` makes ``peek`` answer as a router whose cache lags behind would.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.stale: dict[InstanceKey, Versioned | None] = {}
        self.in_flight = self.most_in_flight = 0

    def peek(self, key: InstanceKey) -> Versioned | None:
        return self.stale[key] if key in self.stale else super().peek(key)

    async def get(self, key: InstanceKey) -> Versioned | None:
        self.calls.append("get")
        return super().peek(key)

    async def create(self, rec: InstanceRecord) -> int:
        self.calls.append("create")
        return await super().create(rec)

    async def update(self, rec: InstanceRecord, expected_revision: int) -> int:
        self.calls.append("update")
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0)  # a round trip: others run meanwhile
        self.in_flight -= 1
        return await super().update(rec, expected_revision)


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


async def test_a_mass_expiry_writes_concurrently_and_lets_requests_in_between() -> None:
    store = RoundTrips()
    # No budget to speak of: the writes of one sweep are what is under test.
    registry, clock, _, _ = make_registry(store, ExpiryBudget(floor=1e9))
    count = 10 * SWEEP_BATCH
    with capture_logs():
        for n in range(count):
            await registry.register(register_request(f"i-{n}"))
    turns = 0

    async def another_request() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(another_request())
    await asyncio.sleep(0)
    turns = 0
    with capture_logs():
        changed = await sweep_at(registry, clock, 10 + LATE)
    other.cancel()

    assert changed == count
    assert {r.status for r in await registry.instances()} == {UNHEALTHY}
    assert 1 < store.most_in_flight <= SWEEP_BATCH, "concurrent, and bounded"
    assert turns >= count // SWEEP_BATCH, "the loop ran other work during the sweep"


async def test_a_mass_transition_is_slowed_to_its_budget_loudly_and_then_completes() -> None:
    registry, clock, sink, _ = make_registry(expiry_budget=ExpiryBudget(share=0.1, floor=50))
    with capture_logs():
        for n in range(200):
            await registry.register(register_request(f"i-{n}"))
    sink.events.clear()

    with capture_logs() as logs:
        first = await sweep_at(registry, clock, 10 + LATE)  # all 200 due: 50 a second
        slowed = registry.expiry_slowed
        later = [await sweep_at(registry, clock, 10 + LATE + s) for s in (1, 2, 3, 4)]

    assert first == 50
    assert slowed
    assert later == [50, 50, 50, 0]
    assert not registry.expiry_slowed
    assert len(sink.events) == 200
    said = [(e["event"], e.get("deferred")) for e in logs if "mass_expiry" in e["event"]]
    assert said == [("mass_expiry_slowed", 150), ("mass_expiry_caught_up", None)]
    assert REGISTRY.get_sample_value("aegis_expiry_slowed") == 0


async def test_an_expiry_within_the_budget_is_not_slowed() -> None:
    registry, clock, _, _ = make_registry(expiry_budget=ExpiryBudget(share=0.1, floor=50))
    with capture_logs():
        for n in range(50):
            await registry.register(register_request(f"i-{n}"))
        assert await sweep_at(registry, clock, 10 + LATE) == 50
    assert not registry.expiry_slowed


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


async def test_maintenance_keeps_liveness_survives_heartbeats_and_is_announced() -> None:
    registry, clock, sink, store = make_registry()
    await registry.register(register_request())
    clock.at(1)
    marked = await registry.set_maintenance(KEY, "kernel upgrade")
    assert marked is not None
    assert marked.maintenance is not None
    assert (marked.maintenance.reason, marked.maintenance.since) == ("kernel upgrade", clock.now)
    assert await registry.set_maintenance(KEY, "kernel upgrade") == marked  # no second write
    clock.at(5)
    await registry.heartbeat(KEY, SESSION)
    await registry.register(register_request())  # a renewal keeps it too
    stored_record = await current(store)
    assert stored_record is not None
    assert stored_record.maintenance == marked.maintenance
    assert stored_record.status is ONLINE
    cleared = await registry.set_maintenance(KEY, None)
    assert cleared is not None
    assert cleared.maintenance is None
    assert [e.event.value for e in sink.events] == ["registered", "maintenance", "maintenance"]
    assert sink.events[1].instance.maintenance is not None
    assert sink.events[2].instance.maintenance is None
    assert await registry.set_maintenance(InstanceKey("billing", "nope"), "x") is None


async def test_a_service_goes_into_maintenance_whole() -> None:
    registry, _, _, _ = make_registry()
    for n in range(3):
        await registry.register(register_request(f"b-{n}"))
    await registry.deregister(InstanceKey("billing", "b-2"), SESSION)  # OFFLINE: left alone
    marked = await registry.set_service_maintenance("billing", "migration")
    assert marked is not None
    assert [(r.instance_id, r.maintenance is not None) for r in marked] == [
        ("b-0", True),
        ("b-1", True),
    ]
    assert await registry.set_service_maintenance("nope", "x") is None


async def test_a_duplicate_is_told_when_the_holder_may_be_taken_over_from_its_lease() -> None:
    registry, clock, _, store = make_registry()
    await registry.register(register_request())
    clock.at(8)
    await registry.heartbeat(KEY, SESSION)  # steady: only the lease knows it
    stored_record = await current(store)
    assert stored_record is not None
    assert stored_record.last_heartbeat_at == T0
    # Counted from the contact the lease holds (8 s), not the stored one (0 s).
    assert registry.offline_at(stored_record) == T0 + timedelta(seconds=8 + 20)
