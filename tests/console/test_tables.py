"""The keyed diff and what the rows hold."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aegis.console.models import InstanceInfo, ServiceSummary
from aegis.console.tables import (
    ALL_SERVICES,
    INSTANCE_COLUMNS,
    INSTANCE_SORTS,
    all_services_row,
    diff_rows,
    instance_cells,
    matches,
    service_cells,
    service_order,
)

T = datetime(2026, 11, 3, 12, 0, 0, tzinfo=UTC)


def info(
    service: str = "orders",
    instance_id: str = "o-1",
    status: str = "ONLINE",
    *,
    registered: datetime = T,
    heartbeat: datetime = T,
    metadata: dict[str, object] | None = None,
) -> InstanceInfo:
    return InstanceInfo(
        service_name=service,
        instance_id=instance_id,
        status=status,
        registered_at=registered,
        last_heartbeat_at=heartbeat,
        metadata=metadata if metadata is not None else {},
    )


def test_diff_of_equal_mappings_is_empty() -> None:
    diff = diff_rows({"a": 1, "b": 2}, {"b": 2, "a": 1})
    assert (diff.added, diff.updated, diff.removed) == ({}, {}, [])
    assert not diff


def test_diff_finds_adds_updates_removes() -> None:
    diff = diff_rows({"a": 1, "b": 2, "c": 3}, {"b": 20, "c": 3, "d": 4, "e": 5})
    assert diff.added == {"d": 4, "e": 5}
    assert diff.updated == {"b": 20}
    assert diff.removed == ["a"]
    assert diff


def test_diff_from_and_to_nothing() -> None:
    assert diff_rows({}, {"a": 1}).added == {"a": 1}
    assert diff_rows({"a": 1}, {}).removed == ["a"]


def test_diff_compares_instances_by_value_including_metadata() -> None:
    old = {"k": info(metadata={"v": 1})}
    assert not diff_rows(old, {"k": info(metadata={"v": 1})})
    assert diff_rows(old, {"k": info(metadata={"v": 2})}).updated
    assert diff_rows(old, {"k": info(metadata={"v": 1}, status="OFFLINE")}).updated


def test_diff_keeps_new_order_for_adds() -> None:
    assert list(diff_rows({}, {"z": 1, "a": 2, "m": 3}).added) == ["z", "a", "m"]


def test_instance_cells_follow_the_columns() -> None:
    instance = info(
        metadata={"version": "2.0", "tags": ["a"]},
        registered=datetime(2026, 11, 3, 9, 30, 1, tzinfo=UTC),
        heartbeat=datetime(2026, 11, 3, 11, 59, 48, tzinfo=UTC),
    )
    cells = instance_cells(instance, T)
    assert len(cells) == len(INSTANCE_COLUMNS)
    assert [c.plain for c in cells] == [
        "o-1",
        "orders",
        "ONLINE",
        "",
        "2026-11-03 09:30:01",
        "12s",
        "version=2.0 tags=[1]",
    ]


def test_metadata_cell_is_not_markup() -> None:
    cells = instance_cells(info(metadata={"note": "[bold]x[/bold]"}), T)
    assert cells[-1].plain == "note=[bold]x[/bold]"
    assert not cells[-1].spans


@pytest.mark.parametrize(
    ("status", "colour"), [("ONLINE", "green"), ("UNHEALTHY", "yellow"), ("OFFLINE", "red")]
)
def test_status_cell_colour(status: str, colour: str) -> None:
    assert colour in str(instance_cells(info(status=status), T)[2].style)


def test_all_services_row_sums_and_sorts_first() -> None:
    services = (ServiceSummary("b", 3, 1, 1, 1), ServiceSummary("a", 2, 2, 0, 0))
    total = all_services_row(services)
    assert total == ServiceSummary(ALL_SERVICES, 5, 3, 1, 1)
    ordered = sorted([*services, total], key=service_order)
    assert [s.name for s in ordered] == [ALL_SERVICES, "a", "b"]
    assert service_cells(total)[0].plain == "All services"
    assert [c.plain for c in service_cells(services[0])] == ["b", "3", "1", "1", "1"]


def test_sort_orders() -> None:
    a = info("a", "1", "ONLINE", registered=T.replace(hour=1), heartbeat=T.replace(minute=59))
    b = info("b", "1", "OFFLINE", registered=T.replace(hour=3), heartbeat=T.replace(minute=10))
    c = info("a", "2", "UNHEALTHY", registered=T.replace(hour=2), heartbeat=T.replace(minute=30))

    def ordered(index: int) -> list[str]:
        return [i.key for i in sorted([a, b, c], key=INSTANCE_SORTS[index].key)]

    assert ordered(0) == ["a/1", "a/2", "b/1"]
    assert ordered(1) == ["b/1", "a/2", "a/1"]
    assert ordered(2) == ["b/1", "a/2", "a/1"]
    assert ordered(3) == ["b/1", "a/2", "a/1"]


def test_matches_service_and_substring() -> None:
    instance = info("Orders", "ord-7")
    assert matches(instance, None, "")
    assert matches(instance, "Orders", "")
    assert not matches(instance, "billing", "")
    assert matches(instance, None, "RD-7")
    assert matches(instance, None, "orde")
    assert not matches(instance, None, "pay")
    assert not matches(instance, "billing", "ord")


def test_every_sort_orders_ids_and_services_naturally() -> None:
    # Same status, heartbeat and registration: every order falls back to the names.
    rows = [
        info(service, instance_id)
        for service, instance_id in [
            ("svc-10", "big-1"),
            ("svc-9", "big-10"),
            ("svc-9", "big-2"),
            ("Svc-9", "big-3"),
        ]
    ]
    for sort in INSTANCE_SORTS:
        assert [i.key for i in sorted(rows, key=sort.key)] == [
            # Services differing only in case stay apart, each with its instances.
            "Svc-9/big-3",
            "svc-9/big-2",
            "svc-9/big-10",
            "svc-10/big-1",
        ], sort.label


def test_services_sort_naturally_after_the_totals_row() -> None:
    names = ["svc-10", "svc-2", "Billing", ALL_SERVICES, "api"]
    rows = [ServiceSummary(name, 1, 1, 0, 0) for name in names]
    ordered = [s.name for s in sorted(rows, key=service_order)]
    assert ordered == [ALL_SERVICES, "api", "Billing", "svc-2", "svc-10"]
