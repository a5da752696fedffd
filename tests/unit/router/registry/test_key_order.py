"""aegis.router.registry.key_order: keys in listing order; changes counted, contacts not."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from aegis.router.domain import InstanceKey, InstanceRecord, MaintenanceMark
from aegis.router.registry.key_order import KeyOrder, prefix_range
from aegis.wire.messages import InstanceStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rec(service: str, instance: str, version: int = 1) -> InstanceRecord:
    return InstanceRecord(service, instance, InstanceStatus.ONLINE, {}, T0, T0, None, version)


def test_keys_come_in_service_then_id_order_whatever_the_order_they_came_in() -> None:
    order = KeyOrder()
    for service, instance in [("b", "2"), ("a", "z"), ("b", "1"), ("a", "a"), ("ab", "0")]:
        order.apply(InstanceKey(service, instance), rec(service, instance))
    assert list(order.keys(None, None)) == [
        ("a", "a"),
        ("a", "z"),
        ("ab", "0"),
        ("b", "1"),
        ("b", "2"),
    ]
    assert len(order) == 5
    # After a key, even one no longer (or never) there: the next ones in order.
    assert list(order.keys(None, None, after=InstanceKey("a", "m"))) == [
        ("a", "z"),
        ("ab", "0"),
        ("b", "1"),
        ("b", "2"),
    ]
    order.apply(InstanceKey("ab", "0"), None)
    order.apply(InstanceKey("never", "x"), None)  # unknown: nothing to remove
    assert list(order.keys(*prefix_range("a"))) == [("a", "a"), ("a", "z")]
    assert list(order.keys(*prefix_range("ab"))) == []
    assert len(order) == 4


def test_prefix_ranges_count_and_list_only_their_ids() -> None:
    order = KeyOrder()
    for instance in ["web-1", "web-10", "web-2", "web.x", "api-1", "web", "we"]:
        order.apply(InstanceKey("svc", instance), rec("svc", instance))
    order.apply(InstanceKey("svc-2", "web-9"), rec("svc-2", "web-9"))
    start, stop = prefix_range("svc", "web-")
    assert [k.instance_id for k in order.keys(start, stop)] == ["web-1", "web-10", "web-2"]
    assert order.count(start, stop) == 3
    assert order.count(*prefix_range("svc", "web")) == 5
    assert order.count(*prefix_range("svc")) == 7
    assert order.count(None, None) == 8
    after = InstanceKey("svc", "web-10")
    assert [k.instance_id for k in order.keys(start, stop, after)] == ["web-2"]
    # A cursor before the range starts at the range.
    assert len(list(order.keys(start, stop, InstanceKey("a", "a")))) == 3


def test_changes_count_what_a_listing_shows_and_not_a_contact() -> None:
    order, key = KeyOrder(), InstanceKey("svc", "a")
    first = rec("svc", "a")
    order.apply(key, first)
    assert order.changes == 1
    order.apply(key, first)
    order.apply(key, replace(first, last_heartbeat_at=T0 + timedelta(seconds=5)))
    assert order.changes == 1  # a contact alone
    order.apply(key, replace(first, version=2, status=InstanceStatus.UNHEALTHY))
    assert order.changes == 2
    order.apply(key, replace(first, version=2, status=InstanceStatus.UNHEALTHY, metadata={"a": 1}))
    assert order.changes == 3  # metadata renewed (a micro service's): no version of its own
    marked = replace(first, version=3, maintenance=MaintenanceMark("upgrade", T0))
    order.apply(key, marked)
    assert order.changes == 4
    order.apply(key, None)
    order.apply(key, None)
    assert order.changes == 5
