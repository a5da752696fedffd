"""Leases in the registry: steady heartbeats stay in memory, holders sweep, handovers
keep the living."""

from __future__ import annotations

import asyncio
import gc

import pytest
from aegis.router.domain import InstanceKey, Outcome, OwnerCheck
from aegis.router.leases.contacts import Leases
from aegis.router.leases.membership import MEMBER_TTL, Membership
from aegis.router.registry.liveness import SWEEP_BATCH
from aegis.router.registry.operations import Registry
from aegis.router.store.port import MemoryStore
from aegis.wire.messages import InstanceStatus

from tests.support import T0, FakeClock
from tests.unit.router.fakes import LATE, SESSION, TIMINGS, ListSink, register_request

ONLINE, UNHEALTHY = InstanceStatus.ONLINE, InstanceStatus.UNHEALTHY


def router_a(store: MemoryStore, clock: FakeClock) -> tuple[Registry, Membership]:
    """Router a's registry, with a live router b beside it holding about half the leases."""
    membership = Membership("a", MEMBER_TTL, 0.0)
    registry = Registry(store, TIMINGS, ListSink(), clock, leases=Leases(membership))
    membership.seen("b", 0.0)
    return registry, membership


def clocked_router(clock: FakeClock, store: MemoryStore) -> tuple[Registry, Membership]:
    """Router a's registry, alone so far, its leases on ``clock``."""
    membership = Membership("a", MEMBER_TTL, 0.0)
    leases = Leases(membership, clock=lambda: clock.now.timestamp())
    return Registry(store, TIMINGS, ListSink(), clock, leases=leases), membership


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def keys_held_by(membership: Membership, want: bool, n: int = 1) -> list[InstanceKey]:
    found = []
    i = 0
    while len(found) < n:
        key = InstanceKey("billing", f"b-{i}")
        if membership.holds(key) is want:
            found.append(key)
        i += 1
    return found


async def test_only_the_holder_sweeps_an_instance() -> None:
    clock = FakeClock()
    store = MemoryStore()
    ra, ma = router_a(store, clock)
    (mine,) = keys_held_by(ma, True)
    (theirs,) = keys_held_by(ma, False)
    for key in (mine, theirs):
        await ra.register(register_request(key.instance_id))
    await settle()

    clock.at(TIMINGS.unhealthy_after + LATE)
    assert await ra.liveness.sweep() == 1
    assert store.peek(mine).record.status is UNHEALTHY  # type: ignore[union-attr]
    assert store.peek(theirs).record.status is ONLINE  # type: ignore[union-attr]
    assert ra.held == 1


async def test_a_steady_heartbeat_keeps_the_instance_online_without_a_write() -> None:
    clock = FakeClock()
    registry = Registry(MemoryStore(), TIMINGS, ListSink(), clock)
    await registry.register(register_request())
    key = InstanceKey("billing", "b-1")
    for n in range(1, 20):  # 47.5 s of heartbeats every 2.5 s: well past unhealthy_after
        clock.at(2.5 * n)
        assert (await registry.heartbeat(key, SESSION)).check is OwnerCheck.OK
        await registry.liveness.sweep()
    (record,) = await registry.instances()
    assert record.status is ONLINE
    assert record.last_heartbeat_at == clock.now
    assert registry.leases.heard_count == 1


async def test_a_silence_after_steady_heartbeats_counts_from_the_last_one() -> None:
    # Steady heartbeats move no deadline: the sweep that pops the old one must
    # find the contact and look again at the new deadline, neither early nor late.
    clock = FakeClock()
    registry = Registry(MemoryStore(), TIMINGS, ListSink(), clock)
    await registry.register(register_request())
    key = InstanceKey("billing", "b-1")
    for at in (2.5, 5.0, 7.5):
        clock.at(at)
        assert registry.liveness.heard(key, SESSION, clock.now.timestamp()) is not None
    silent_until = 7.5 + TIMINGS.unhealthy_after
    for at in (TIMINGS.unhealthy_after + LATE, silent_until - LATE):
        clock.at(at)
        assert await registry.liveness.sweep() == 0  # heard since: nothing due yet
    clock.at(silent_until + LATE)
    assert await registry.liveness.sweep() == 1
    (record,) = await registry.instances()
    assert record.status is UNHEALTHY


async def test_only_a_mass_expiry_freezes_the_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    # A steady registry's sweeps pop every instance once per unhealthy_after and
    # find its contact: they must not freeze what lives (a frozen cycle is never
    # collected). Only sweeps that expire more than a batch do.
    freezes: list[int] = []
    monkeypatch.setattr(gc, "freeze", lambda: freezes.append(1))
    clock = FakeClock()
    registry = Registry(MemoryStore(), TIMINGS, ListSink(), clock)
    keys = [InstanceKey("billing", f"b-{n}") for n in range(3 * SWEEP_BATCH)]
    for key in keys:
        await registry.register(register_request(key.instance_id))
    for second in range(1, 40):  # heartbeats every 2.5 s, a sweep every second
        clock.at(float(second))
        if second % 2 == 0:
            for key in keys:
                assert registry.liveness.heard(key, SESSION, clock.now.timestamp()) is not None
        assert await registry.liveness.sweep() == 0
    assert freezes == []
    clock.at(39 + TIMINGS.unhealthy_after + LATE)  # all silent since t=38
    assert await registry.liveness.sweep() == len(keys)
    assert freezes  # the mass expiry did


async def test_a_handover_from_a_dead_router_counts_from_the_last_moment_it_could_answer() -> None:
    clock = FakeClock()
    store = MemoryStore()
    ra, ma = router_a(store, clock)
    (theirs,) = keys_held_by(ma, False)
    await ra.register(register_request(theirs.instance_id))
    await settle()
    # b was last seen at 40, then was cut off. Deaf only from 43 (its own ttl), it
    # answered heartbeats from memory until then: seed 301 of the chaos run
    # (docs/reliability.md, known limit 7) expired one 1.4 s after b's last 200.
    answered_until = 40 + MEMBER_TTL
    clock.at(40)
    ma.seen("b", 40.0 + T0.timestamp())
    assert ma.expire(T0.timestamp() + 44.0) == ["b"]
    await settle()
    assert ra.held == 1

    clock.at(answered_until + TIMINGS.unhealthy_after - 1)
    assert await ra.liveness.sweep() == 0, "maybe answered by b at 43: not UNHEALTHY yet"
    clock.at(answered_until + TIMINGS.unhealthy_after + LATE)
    assert await ra.liveness.sweep() == 1
    record = store.peek(theirs)
    assert record is not None
    assert record.record.status is UNHEALTHY
    # The store keeps the last contact anyone knows of; the floor only delayed the verdict.
    assert record.record.last_heartbeat_at == T0
    clock.at(answered_until + TIMINGS.offline_after - 1)
    assert await ra.liveness.sweep() == 0, "OFFLINE counts from the floor too"
    clock.at(answered_until + TIMINGS.offline_after + LATE)
    assert await ra.liveness.sweep() == 1
    # Found by the chaos run (seed 14, CI): once OFFLINE, the removal counted from
    # the stored contact (T0) and came on the very next sweep, 4 s early here.
    clock.at(answered_until + TIMINGS.remove_after - 1)
    assert await ra.liveness.sweep() == 0, "and so does the removal"
    assert store.peek(theirs) is not None
    clock.at(answered_until + TIMINGS.remove_after + LATE)
    assert await ra.liveness.sweep() == 1
    assert store.peek(theirs) is None


async def test_a_router_starting_late_gives_every_instance_a_full_unhealthy_after() -> None:
    clock = FakeClock()
    store = MemoryStore()
    first = Registry(store, TIMINGS, ListSink(), clock)
    await first.register(register_request())
    clock.at(100)  # the first router is gone; its contacts with it
    later = Registry(
        store,
        TIMINGS,
        ListSink(),
        clock,
        leases=Leases(Membership("later", 3.0, 0.0), since=clock.now.timestamp()),
    )
    await later.load()
    clock.at(100 + TIMINGS.unhealthy_after - 1)
    assert await later.liveness.sweep() == 0
    clock.at(100 + TIMINGS.unhealthy_after + LATE)
    assert await later.liveness.sweep() == 1


async def test_a_heartbeat_answered_by_a_non_holder_is_remembered_for_a_takeover() -> None:
    clock = FakeClock()
    store = MemoryStore()
    ra, ma = router_a(store, clock)
    (theirs,) = keys_held_by(ma, False)
    await ra.register(register_request(theirs.instance_id))
    clock.at(30)
    ma.seen("b", T0.timestamp() + 29)  # b vouched for it until a second ago, then died
    # b did not answer a forward: a answers and keeps the contact.
    assert (await ra.heartbeat(theirs, SESSION)).check is OwnerCheck.OK
    assert ra.held == 0
    ma.left("b", last_seen=T0.timestamp() + 1.0)
    await settle()
    clock.at(30 + TIMINGS.unhealthy_after - 1)
    assert await ra.liveness.sweep() == 0, "the contact a heard counts, not b's old sighting"


async def test_a_non_holder_gives_no_id_away_that_a_silent_holder_may_have_just_answered() -> None:
    # The holder b was last seen at 40 and still counts as a member (a has not
    # judged it gone yet); it answers from memory until it is deaf, at 43. At 47
    # the record is OFFLINE by age counted from b's sighting, but not from 43:
    # a new session must not take the id of an owner b may have answered at 43.
    clock = FakeClock()
    store = MemoryStore()
    ra, membership = clocked_router(clock, store)
    membership.seen("b", 0.0)
    (theirs,) = keys_held_by(membership, False)
    await ra.register(register_request(theirs.instance_id))
    membership.seen("b", T0.timestamp() + 40)
    clock.at(40 + TIMINGS.offline_after + 1)
    taken = await ra.register(register_request(theirs.instance_id, session="a-new-session"))
    assert taken.outcome is Outcome.DUPLICATE
    clock.at(40 + MEMBER_TTL + TIMINGS.offline_after + LATE)
    taken = await ra.register(register_request(theirs.instance_id, session="a-new-session"))
    assert taken.outcome is Outcome.CREATED, "OFFLINE by age from 43: the id is free"


async def test_a_router_slow_to_start_counts_from_when_it_hears_not_its_process_start() -> None:
    # From a chaos history (issue 14, seed 101): router-2, restarted, took 5 s to
    # open the bucket while its stream elected a leader; it counted the instances
    # of its partitions alive from its process start, so 0.5 s after it began
    # answering it marked UNHEALTHY (and 0.4 s later OFFLINE) an instance router-1
    # had heard 1.2 s before. Another session then took the id over.
    clock = FakeClock()
    store = MemoryStore()
    first = Registry(store, TIMINGS, ListSink(), clock)
    await first.register(register_request())
    clock.at(TIMINGS.unhealthy_after - 1)  # the process starts; the owner heartbeats elsewhere
    leases = Leases(Membership("late", 3.0, 0.0), since=clock.now.timestamp())
    late = Registry(store, TIMINGS, ListSink(), clock, leases=leases)
    await late.load()
    clock.at(TIMINGS.unhealthy_after + 5)  # the bucket opened at last: it answers from now
    leases.hearing_from(clock.now.timestamp())

    clock.at(TIMINGS.unhealthy_after + 5 + TIMINGS.unhealthy_after - 1)
    assert await late.liveness.sweep() == 0
    clock.at(TIMINGS.unhealthy_after + 5 + TIMINGS.unhealthy_after + LATE)
    assert await late.liveness.sweep() == 1


async def test_a_router_hearing_again_counts_its_own_partitions_from_then() -> None:
    # From a chaos history (issue 14, seed 101): router-1, stopped 4.7 s and then
    # unable to hear itself for 5 s more, held its partitions again as soon as it
    # heard itself, but judged their instances on the contacts it had before the
    # gap: 0.75 s later it answered a live instance's heartbeat 404 and gave the
    # id to a new session (201), 4 s after router-0, holding the partition
    # meanwhile, had answered the owner.
    clock = FakeClock()
    store = MemoryStore()
    registry, membership = clocked_router(clock, store)
    await registry.register(register_request())
    key = InstanceKey("billing", "b-1")
    gap_end = TIMINGS.offline_after + 5  # others heard the owner meanwhile, in memory
    clock.at(gap_end)
    membership.heard_self_at = clock.now.timestamp()
    membership.seen_all(clock.now.timestamp())  # as KvMembership does on hearing again
    await settle()

    clock.at(gap_end + 1)
    assert (await registry.heartbeat(key, SESSION)).check is OwnerCheck.OK
    taken = await registry.register(register_request(session="a-new-session"))
    assert taken.outcome is Outcome.DUPLICATE


def test_last_contact_is_the_later_of_heard_and_stored() -> None:
    leases = Leases(Membership("a", 3.0, 0.0))
    key = InstanceKey("billing", "b-1")
    assert leases.last_contact(key, 100.0) == 100.0  # nothing heard
    leases.heard(key, 105.0)
    assert leases.last_contact(key, 100.0) == 105.0
    assert leases.last_contact(key, 110.0) == 110.0  # a newer stored contact wins


@pytest.mark.parametrize("behind", [False, True])
async def test_a_heartbeat_read_while_the_router_is_behind_finds_its_instance_alive(
    behind: bool,
) -> None:
    # Behind its own requests (the sweeper paused, router_behind), the router may
    # not have read this instance's earlier heartbeats: the one it reads now must
    # not find it dead by age. Seen with two routers on one 2-core machine: 5,587
    # instances heartbeating on time were answered 404 and registered again.
    clock = FakeClock()
    registry, _ = clocked_router(clock, MemoryStore())
    await registry.register(register_request())
    registry.leases.holding_back = lambda: behind
    clock.at(TIMINGS.offline_after + LATE)
    result = await registry.heartbeat(InstanceKey("billing", "b-1"), SESSION)
    assert (result.check is OwnerCheck.OK) is behind
