"""The paged window and the change bookkeeping of the instances listing (no I/O)."""

from __future__ import annotations

from aegis.console.listing import (
    Change,
    Fetch,
    InstanceQuery,
    Listing,
    LocalSegment,
    PagedSegment,
    change_of,
    event_sequence,
    server_order,
)
from aegis.console.live_registry import ServiceCounts
from aegis.console.models import InstanceInfo, ServiceSummary

from .helpers import NOW


def info(service: str, instance_id: str, status: str = "ONLINE") -> InstanceInfo:
    return InstanceInfo(service, instance_id, status, NOW, NOW)


ROWS = [info("svc", f"i-{n:03d}") for n in range(1000)]


def loaded(start: int, count: int, total: int = 1000) -> PagedSegment:
    segment = PagedSegment(InstanceQuery())
    rows = ROWS[start : start + count]
    segment.accept(Fetch(start, None, count), rows, total, f"c{start + count}", 10)
    return segment


def test_plan_extends_the_window_from_its_end_cursor() -> None:
    segment = loaded(0, 200)
    assert segment.plan(0, 150) is None
    assert segment.plan(150, 350) == Fetch(200, "c200", 200)
    segment.accept(Fetch(200, "c200", 200), ROWS[200:400], 1000, "c400", 11)
    assert [r.instance_id for r in segment.rows[198:202]] == ["i-198", "i-199", "i-200", "i-201"]
    assert segment.row(399) == ROWS[399]


def test_a_far_jump_starts_from_the_nearest_page_start() -> None:
    segment = loaded(0, 200)
    assert segment.plan(900, 1000) == Fetch(200, "c200", 800)
    fresh = PagedSegment(InstanceQuery())
    assert fresh.plan(0, 50) == Fetch(0, None, 200)


def test_changes_before_the_window_move_it_and_the_total() -> None:
    segment = loaded(500, 200)
    segment.apply(change_of("removed", ROWS[3], "ONLINE", 11))
    assert (segment.start, segment.total) == (499, 999)
    segment.apply(change_of("registered", info("svc", "i-000a"), None, 12))
    assert (segment.start, segment.total) == (500, 1000)
    assert segment.row(500) == ROWS[500]
    # Page starts after the change move with it.
    assert segment.marks[0].offset == 700


def test_changes_inside_the_window_update_insert_and_remove_rows() -> None:
    segment = loaded(0, 200)
    segment.apply(change_of("status_changed", info("svc", "i-005", "UNHEALTHY"), "ONLINE", 11))
    assert segment.row(5) is not None
    assert segment.row(5).status == "UNHEALTHY"
    segment.apply(change_of("registered", info("svc", "i-005a"), None, 12))
    assert segment.index_of("svc/i-005a") == 6
    segment.apply(change_of("removed", ROWS[1], "ONLINE", 13))
    assert segment.index_of("svc/i-005a") == 5
    assert segment.total == 1000


def test_changes_the_listing_already_had_are_skipped() -> None:
    segment = loaded(0, 200)
    assert not segment.apply(change_of("removed", ROWS[1], "ONLINE", 10))
    assert segment.total == 1000


def test_a_status_filter_sees_instances_come_and_go() -> None:
    segment = PagedSegment(InstanceQuery(status="UNHEALTHY"))
    segment.accept(Fetch(0, None, 200), [], 0, None, 1)
    segment.apply(change_of("status_changed", info("svc", "i-007", "UNHEALTHY"), "ONLINE", 2))
    assert [r.key for r in segment.rows] == ["svc/i-007"]
    segment.apply(change_of("status_changed", info("svc", "i-007"), "UNHEALTHY", 3))
    assert (segment.rows, segment.total) == ([], 0)


def test_segments_follow_one_another() -> None:
    local = LocalSegment(ROWS[:3], lambda i: True, server_order)
    paged = loaded(0, 200)
    listing = Listing([local, paged])
    assert listing.total == 1003
    assert listing.row(3) == ROWS[0]
    assert listing.index_of("svc/i-002") == 2
    assert listing.index_of("svc/i-150") == 153
    listing.apply(Change(None, info("svc", "i-001x")))
    assert listing.total == 1005  # both segments list every instance


def test_query_parameters_and_matching() -> None:
    query = InstanceQuery(service="svc", needle="I-00", status="ONLINE", maintenance="exclude")
    assert query.params() == {
        "service": "svc",
        "q": "I-00",
        "status": "ONLINE",
        "maintenance": "exclude",
    }
    assert query.matches(ROWS[5])
    assert not query.matches(ROWS[500])
    assert event_sequence("r1:42") == ("r1", 42)
    assert event_sequence("nope") is None


def test_service_counts_say_whether_a_change_moved_a_count() -> None:
    counts = ServiceCounts([ServiceSummary("svc", 2, 2, 0, 0)])
    # A maintenance toggle: ONLINE before and after, nothing on the services table moves.
    assert not counts.apply(change_of("maintenance", info("svc", "i-001"), "ONLINE", 1))
    assert counts.by_name["svc"] == ServiceSummary("svc", 2, 2, 0, 0)
    assert counts.apply(change_of("status_changed", info("svc", "i-001", "OFFLINE"), "ONLINE", 2))
    assert counts.by_name["svc"] == ServiceSummary("svc", 2, 1, 0, 1)
    assert counts.apply(change_of("registered", info("new", "n-1"), None, 3))
    assert counts.apply(change_of("removed", info("new", "n-1"), "ONLINE", 4))
    assert "new" not in counts.by_name
