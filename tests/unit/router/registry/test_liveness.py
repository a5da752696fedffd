"""aegis.router.registry.liveness over the in-memory store, on a fake clock: steady
heartbeats kept in memory, and the sweep.

Deadlines and the life cycle they walk, sweeps that read only what is due, mass
expiries and their budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from aegis.router.domain import InstanceKey, InstanceRecord, Outcome, OwnerCheck
from aegis.router.registry import liveness
from aegis.router.registry.expiry_budget import ExpiryBudget
from aegis.router.registry.liveness import SWEEP_BATCH
from aegis.router.registry.operations import Registry
from aegis.router.store.port import (
    MemoryStore,
    Versioned,
)
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from tests.support import T0, FakeClock
from tests.unit.router.fakes import (
    KEY,
    LATE,
    OFFLINE,
    ONLINE,
    OTHER_SESSION,
    SESSION,
    UNHEALTHY,
    RoundTrips,
    current,
    make_registry,
    register_request,
    status_of,
    stored,
    sweep_at,
)


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
        slowed = registry.liveness.expiry_slowed
        later = [await sweep_at(registry, clock, 10 + LATE + s) for s in (1, 2, 3, 4)]

    assert first == 50
    assert slowed
    assert later == [50, 50, 50, 0]
    assert not registry.liveness.expiry_slowed
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
    assert not registry.liveness.expiry_slowed


class SlowWrites(MemoryStore):
    """A store each update of which takes ``seconds`` on ``clock``."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.clock: FakeClock | None = None

    async def update(self, rec: InstanceRecord, expected_revision: int) -> int:
        await asyncio.sleep(0)
        if self.clock is not None:
            self.clock.elapsed += self.seconds
        return await super().update(rec, expected_revision)


async def test_a_mass_expiry_slower_than_its_budget_is_not_held_back_by_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Eight writes at once, each a tenth of a second: 80 a second, past the
    # budget's 50 only while the first full bucket lasts.
    monkeypatch.setattr(liveness, "SWEEP_IN_FLIGHT", 8)
    store = SlowWrites(0.1)
    registry, clock, sink, _ = make_registry(store, ExpiryBudget(share=0.1, floor=50))
    with capture_logs():
        for n in range(200):
            await registry.register(register_request(f"i-{n}"))
    sink.events.clear()
    store.clock = clock

    with capture_logs() as logs:
        changed = await sweep_at(registry, clock, 10 + LATE)

    assert changed == 200, "one sweep, none left for the next tick"
    assert {r.status for r in await registry.instances()} == {UNHEALTHY}
    assert len(sink.events) == 200
    assert not registry.liveness.expiry_slowed
    assert not [e for e in logs if "mass_expiry" in e["event"]]
