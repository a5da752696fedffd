"""DeadlineIndex: keys come due in time order, never early, once each."""

from __future__ import annotations

import pytest
from aegis.router.leases.deadlines import DeadlineIndex


def test_keys_come_due_at_their_deadline_not_before() -> None:
    index: DeadlineIndex[str] = DeadlineIndex(resolution=0.1)
    index.set("a", 10.0)
    index.set("b", 10.25)
    index.set("c", 20.0)

    assert index.pop_due(9.99) == []
    assert index.pop_due(10.0) == ["a"]
    assert index.pop_due(10.2) == []
    assert index.pop_due(10.3) == ["b"]
    assert len(index) == 1
    assert index.pop_due(100.0) == ["c"]
    assert index.pop_due(1000.0) == []


def test_moving_a_key_keeps_one_entry_and_only_the_new_deadline() -> None:
    index: DeadlineIndex[str] = DeadlineIndex(resolution=0.1)
    for beat in range(100):
        index.set("a", 10.0 + beat)  # a heartbeat pushes the deadline out

    assert len(index) == 1
    assert index.pop_due(50.0) == []
    assert index.pop_due(109.0) == ["a"]


def test_moving_a_key_earlier_and_back_to_an_emptied_bucket() -> None:
    index: DeadlineIndex[str] = DeadlineIndex(resolution=1.0)
    index.set("a", 5.0)
    index.set("a", 3.0)
    index.set("b", 5.0)

    assert index.next_deadline() == 3.0
    assert index.pop_due(4.0) == ["a"]
    assert index.pop_due(5.0) == ["b"]


def test_discard_forgets_a_key() -> None:
    index: DeadlineIndex[str] = DeadlineIndex()
    index.set("a", 1.0)
    index.discard("a")
    index.discard("never-there")

    assert index.pop_due(10.0) == []
    assert index.next_deadline() is None


def test_next_deadline_skips_emptied_buckets() -> None:
    index: DeadlineIndex[str] = DeadlineIndex(resolution=1.0)
    index.set("a", 1.0)
    index.set("b", 7.0)
    index.set("a", 9.0)

    assert index.next_deadline() == 7.0


def test_resolution_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        DeadlineIndex(resolution=0)


def test_pop_due_hands_out_at_most_limit_and_keeps_the_rest_for_later() -> None:
    index: DeadlineIndex[str] = DeadlineIndex(0.05)
    early = {f"k{n}" for n in range(10)}
    for key in early:
        index.set(key, 1.0)  # all in one bucket
    index.set("later", 5.0)

    first = index.pop_due(2.0, limit=4)
    rest = index.pop_due(2.0, limit=100)

    assert len(first) == 4
    assert set(first) | set(rest) == early
    assert index.pop_due(2.0) == []
    assert len(index) == 1
    assert index.pop_due(5.0) == ["later"]
