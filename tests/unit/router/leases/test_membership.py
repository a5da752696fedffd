"""Membership: which live router holds which partition, and what moves when routers come and go."""

from __future__ import annotations

from collections import Counter

from aegis.router.domain import InstanceKey
from aegis.router.leases.membership import (
    PARTITIONS,
    Handover,
    Membership,
    owner_table,
    partition_of,
)


def test_partition_is_stable_and_spread() -> None:
    keys = [InstanceKey("billing", f"b-{n}") for n in range(20_000)]
    assert partition_of(keys[0]) == partition_of(InstanceKey("billing", "b-0"))
    counts = Counter(partition_of(k) for k in keys)
    assert len(counts) == PARTITIONS
    assert max(counts.values()) < 3 * len(keys) / PARTITIONS


def test_two_routers_split_the_partitions_about_evenly() -> None:
    table = owner_table(["alpha", "beta"])
    share = table.count("alpha") / PARTITIONS
    assert 0.4 < share < 0.6


def test_a_leaving_router_moves_only_its_own_partitions() -> None:
    three = owner_table(["a", "b", "c"])
    two = owner_table(["a", "b"])
    for before, after in zip(three, two, strict=True):
        if before != "c":
            assert after == before


def record_handovers(membership: Membership) -> list[Handover]:
    seen: list[Handover] = []
    membership.set_listener(seen.append)
    return seen


def test_a_joining_router_takes_its_share_from_a_live_one_with_floor_now() -> None:
    alone = Membership("a", ttl=3.0, now=100.0)
    handovers = record_handovers(alone)
    assert alone.held_partitions() == PARTITIONS

    alone.seen("b", now=105.0)

    (handover,) = handovers
    assert handover.gained == {}
    assert 0.4 * PARTITIONS < len(handover.lost) < 0.6 * PARTITIONS
    assert alone.held_partitions() == PARTITIONS - len(handover.lost)
    assert alone.member_ids == ["a", "b"]


def test_a_silent_router_expires_and_its_partitions_count_from_its_last_sighting_plus_ttl() -> None:
    a = Membership("a", ttl=3.0, now=100.0)
    a.seen("b", now=100.0)
    a.seen("b", now=101.0)
    handovers = record_handovers(a)

    assert a.expire(103.5) == []  # 2.5 s silent: still there
    assert a.expire(104.5) == ["b"]

    (handover,) = handovers
    assert handover.lost == frozenset()
    # b hears itself until 104 (its own ttl) and answers from memory until then.
    assert set(handover.gained.values()) == {104.0}, "floor: when b last may have answered"
    assert a.held_partitions() == PARTITIONS
    key = InstanceKey("billing", "b-1")
    assert a.holds(key)
    assert a.owner(key) == "a"


def test_a_goodbye_hands_over_at_once_and_unknown_goodbyes_change_nothing() -> None:
    a = Membership("a", ttl=3.0, now=0.0)
    a.seen("b", now=1.0)
    handovers = record_handovers(a)
    a.left("zzz", last_seen=2.0)
    a.left("a", last_seen=2.0)  # never leaves its own view
    assert handovers == []

    a.left("b", last_seen=2.0)

    assert set(handovers[0].gained.values()) == {2.0}
    assert a.member_ids == ["a"]


def test_both_routers_compute_the_same_holder() -> None:
    a = Membership("a", ttl=3.0, now=0.0)
    b = Membership("b", ttl=3.0, now=0.0)
    a.seen("b", 0.0)
    b.seen("a", 0.0)
    keys = [InstanceKey("svc", f"i-{n}") for n in range(500)]
    assert [a.owner(k) for k in keys] == [b.owner(k) for k in keys]
    assert all(a.holds(k) != b.holds(k) for k in keys), "exactly one holder each"


def test_a_resigning_router_hands_everything_to_the_others() -> None:
    a = Membership("a", ttl=3.0, now=0.0)
    alone = Membership("alone", ttl=3.0, now=0.0)
    a.seen("b", 1.0)
    handovers = record_handovers(a)

    a.resign()
    alone.resign()  # nobody to hand over to: keeps serving everything

    assert a.held_partitions() == 0
    assert len(handovers[0].lost) > 0.4 * PARTITIONS
    assert a.owner(InstanceKey("billing", "b-1")) == "b"
    assert alone.held_partitions() == PARTITIONS


def test_after_a_deaf_spell_everyone_gets_a_fresh_ttl() -> None:
    a = Membership("a", ttl=3.0, now=0.0)
    a.seen("b", 1.0)
    a.seen_all(10.0)  # a heard nobody (itself included) from 1 to 10
    assert a.expire(12.0) == [], "b is judged from when a could hear again"
    assert a.expire(13.5) == ["b"]


def test_a_router_hears_itself_until_its_own_sighting_is_a_ttl_old() -> None:
    membership = Membership("a", ttl=3.0, now=0.0)
    assert membership.hearing(1000.0), "nothing tracks it: a lone router hears itself"
    membership.heard_self_at = 10.0
    assert membership.hearing(13.0)
    assert not membership.hearing(13.1)
