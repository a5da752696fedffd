"""aegis.router.domain: the rules without I/O.

Registration (create, renew, duplicate, takeover) as wire contract v1 states it;
liveness: timings, deadlines, expiry, ownership, change kinds.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from aegis.router.domain import (
    Decision,
    InstanceRecord,
    Outcome,
    OwnerCheck,
    Timings,
    change_kind,
    check_owner,
    decide_registration,
    expire,
    next_deadline,
    take_offline,
    touch,
)
from aegis.wire.messages import EventKind, InstanceStatus

from tests.support import T0
from tests.unit.router.fakes import SESSION, TIMINGS, stored

# -- registration (wire contract v1) ------------------------------------------------

EARLIER = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
NOW = EARLIER + timedelta(minutes=5)


def registered_earlier(status: InstanceStatus, session_id: str | None = "s-1") -> InstanceRecord:
    return InstanceRecord(
        service_name="billing",
        instance_id="billing-1",
        status=status,
        metadata={"version": "1"},
        registered_at=EARLIER,
        last_heartbeat_at=EARLIER,
        session_id=session_id,
    )


def decide(existing: InstanceRecord | None, session_id: str | None = "s-1", **kw: Any) -> Decision:
    kw.setdefault("metadata", {"version": "2"})
    return decide_registration(
        existing,
        service_name="billing",
        instance_id="billing-1",
        session_id=session_id,
        now=NOW,
        **kw,
    )


def test_new_instance_is_created_online() -> None:
    decision = decide(None)
    assert decision.outcome is Outcome.CREATED
    assert decision.record == InstanceRecord(
        service_name="billing",
        instance_id="billing-1",
        status=InstanceStatus.ONLINE,
        metadata={"version": "2"},
        registered_at=NOW,
        last_heartbeat_at=NOW,
        session_id="s-1",
    )


@pytest.mark.parametrize("session_id", ["s-1", "other", None])
def test_offline_instance_is_taken_over(session_id: str | None) -> None:
    decision = decide(registered_earlier(InstanceStatus.OFFLINE), session_id=session_id)
    assert decision.outcome is Outcome.CREATED
    record = decision.record
    assert record.status is InstanceStatus.ONLINE
    assert (record.registered_at, record.last_heartbeat_at) == (NOW, NOW)
    assert record.metadata == {"version": "2"}
    assert record.session_id == session_id


@pytest.mark.parametrize("status", [InstanceStatus.ONLINE, InstanceStatus.UNHEALTHY])
def test_live_same_session_is_renewed_without_changing_metadata(status: InstanceStatus) -> None:
    existing = registered_earlier(status)
    decision = decide(existing, metadata={"version": "999", "extra": True})
    assert decision.outcome is Outcome.RENEWED
    record = decision.record
    assert record.status is InstanceStatus.ONLINE
    assert record.last_heartbeat_at == NOW
    assert record.registered_at == EARLIER
    assert record.metadata == {"version": "1"}
    assert record.session_id == "s-1"


@pytest.mark.parametrize("status", [InstanceStatus.ONLINE, InstanceStatus.UNHEALTHY])
@pytest.mark.parametrize(
    ("stored_session", "request_session"),
    [("s-1", "s-2"), ("s-1", None), (None, "s-2"), (None, None)],
)
def test_live_under_other_or_no_session_is_duplicate(
    status: InstanceStatus, stored_session: str | None, request_session: str | None
) -> None:
    existing = registered_earlier(status, session_id=stored_session)
    decision = decide(existing, session_id=request_session)
    assert decision.outcome is Outcome.DUPLICATE
    assert decision.record == existing


def test_to_public_hides_session_and_renders_utc_z() -> None:
    local = datetime(2026, 1, 2, 5, 4, 5, 678000, tzinfo=timezone(timedelta(hours=2)))
    record = InstanceRecord(
        service_name="billing",
        instance_id="billing-1",
        status=InstanceStatus.ONLINE,
        metadata={"a": 1},
        registered_at=EARLIER,
        last_heartbeat_at=local,
        session_id="secret-session",
        version=3,
    )
    public = record.to_public().model_dump(mode="json")
    assert public == {
        "service_name": "billing",
        "instance_id": "billing-1",
        "status": "ONLINE",
        "metadata": {"a": 1},
        "registered_at": "2026-01-02T03:04:05.678Z",
        "last_heartbeat_at": "2026-01-02T03:04:05.678Z",
        "version": 3,
    }
    assert "secret-session" not in str(public)


# -- liveness ---------------------------------------------------------------------------

ONLINE, UNHEALTHY, OFFLINE = InstanceStatus.ONLINE, InstanceStatus.UNHEALTHY, InstanceStatus.OFFLINE


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def test_timing_defaults_are_the_documented_ones() -> None:
    assert Timings() == Timings(5.0, 15.0, 30.0, 300.0)


@pytest.mark.parametrize(
    "values",
    [
        (0.25, 0.5, 0.75, 1.5),  # fractions are fine
        (1, 2, 3, 4),
    ],
)
def test_ordered_timings_are_accepted(values: tuple[float, float, float, float]) -> None:
    assert Timings(*values).remove_after == values[3]


@pytest.mark.parametrize(
    "values",
    [
        pytest.param((0.0, 15.0, 30.0, 300.0), id="zero-heartbeat"),
        pytest.param((-1.0, 15.0, 30.0, 300.0), id="negative-heartbeat"),
        pytest.param((15.0, 15.0, 30.0, 300.0), id="heartbeat=unhealthy"),
        pytest.param((20.0, 15.0, 30.0, 300.0), id="heartbeat>unhealthy"),
        pytest.param((5.0, 30.0, 30.0, 300.0), id="unhealthy=offline"),
        pytest.param((5.0, 45.5, 30.0, 300.0), id="unhealthy>offline"),
        pytest.param((5.0, 15.0, 300.0, 300.0), id="offline=remove"),
        pytest.param((5.0, 15.0, 30.0, 12.5), id="remove<offline"),
        pytest.param((5.0, 15.0, 30.0, float("nan")), id="nan"),
    ],
)
def test_unordered_timings_are_rejected_naming_the_values(
    values: tuple[float, float, float, float],
) -> None:
    with pytest.raises(ValueError, match="heartbeat_interval < unhealthy_after") as info:
        Timings(*values)
    for value in values:
        assert str(value) in str(info.value)


@pytest.mark.parametrize(
    ("status", "after"),
    [(ONLINE, 10), (UNHEALTHY, 20), (OFFLINE, 100)],
)
def test_next_deadline_is_the_next_transition_counted_from_last_contact(
    status: InstanceStatus, after: float
) -> None:
    record = replace(stored("b-1", status), last_heartbeat_at=T0 + seconds(7))
    assert next_deadline(record, TIMINGS) == (T0 + seconds(7 + after)).timestamp()


# (stored status, seconds since last contact, status after expiry; None = removed)
EXPIRY = [
    (ONLINE, 0, ONLINE),
    (ONLINE, 9.999999, ONLINE),
    (ONLINE, 10, UNHEALTHY),
    (ONLINE, 19.999999, UNHEALTHY),
    (ONLINE, 20, OFFLINE),  # a late sweep jumps straight to OFFLINE
    (ONLINE, 99.999999, OFFLINE),
    (ONLINE, 100, None),
    (UNHEALTHY, 5, UNHEALTHY),  # age alone never brings it back
    (UNHEALTHY, 20, OFFLINE),
    (UNHEALTHY, 100, None),
    (OFFLINE, 0, OFFLINE),  # deregistered just now: stays OFFLINE
    (OFFLINE, 12, OFFLINE),
    (OFFLINE, 99.999999, OFFLINE),
    (OFFLINE, 100, None),
    (OFFLINE, 5000, None),
]


@pytest.mark.parametrize(("status", "age", "expected"), EXPIRY)
def test_expire_by_age(status: InstanceStatus, age: float, expected: InstanceStatus | None) -> None:
    record = stored("b-1", status)
    after = expire(record, T0 + seconds(age), TIMINGS)
    if expected is None:
        assert after is None
    else:
        # Only the status moves; the deadlines keep counting from the same contact.
        assert after == replace(record, status=expected)


@pytest.mark.parametrize("session", [SESSION, "someone-else", ""])
def test_check_owner_not_found_for_absent_or_offline_whatever_the_session(session: str) -> None:
    assert check_owner(None, session) is OwnerCheck.NOT_FOUND
    assert check_owner(stored("b-1", OFFLINE), session) is OwnerCheck.NOT_FOUND
    assert check_owner(stored("b-1", OFFLINE, session=None), session) is OwnerCheck.NOT_FOUND


@pytest.mark.parametrize("status", [ONLINE, UNHEALTHY])
@pytest.mark.parametrize(
    ("owner", "caller", "expected"),
    [
        (SESSION, SESSION, OwnerCheck.OK),
        (SESSION, "someone-else", OwnerCheck.SESSION_MISMATCH),
        (None, SESSION, OwnerCheck.SESSION_MISMATCH),  # registered without a session: no owner
        (None, "", OwnerCheck.SESSION_MISMATCH),
    ],
)
def test_check_owner_of_a_live_instance(
    status: InstanceStatus, owner: str | None, caller: str, expected: OwnerCheck
) -> None:
    assert check_owner(stored("b-1", status, session=owner), caller) is expected


@pytest.mark.parametrize("status", [ONLINE, UNHEALTHY])
def test_touch_is_online_again_from_now(status: InstanceStatus) -> None:
    record = stored("b-1", status)
    later = T0 + seconds(12)
    assert touch(record, later) == replace(record, status=ONLINE, last_heartbeat_at=later)


@pytest.mark.parametrize("status", [ONLINE, UNHEALTHY])
def test_take_offline_is_offline_at_once_and_removal_counts_from_now(
    status: InstanceStatus,
) -> None:
    record = stored("b-1", status)
    later = T0 + seconds(3)
    after = take_offline(record, later)
    assert after == replace(record, status=OFFLINE, last_heartbeat_at=later)
    assert next_deadline(after, TIMINGS) == (later + seconds(TIMINGS.remove_after)).timestamp()


def _kind_cases() -> list[tuple[InstanceRecord | None, InstanceRecord | None, str, object]]:
    """(before, after, what the writer did, expected kind)."""
    online, unhealthy, offline = (stored("b-1", s) for s in (ONLINE, UNHEALTHY, OFFLINE))
    later = T0 + seconds(1)
    return [
        (None, online, "registered", EventKind.REGISTERED),
        (None, online, "", EventKind.REGISTERED),
        (
            offline,
            stored("b-1", ONLINE, session="new", at=later),
            "registered",
            EventKind.REGISTERED,
        ),
        # A takeover in the same clock tick: only the writer knows it was a registration.
        (offline, stored("b-1", ONLINE, session="new"), "registered", EventKind.REGISTERED),
        (online, unhealthy, "", EventKind.STATUS_CHANGED),
        (unhealthy, offline, "", EventKind.STATUS_CHANGED),
        (unhealthy, touch(unhealthy, later), "", EventKind.STATUS_CHANGED),
        (online, take_offline(online, later), "deregistered", EventKind.DEREGISTERED),
        (unhealthy, take_offline(unhealthy, later), "deregistered", EventKind.DEREGISTERED),
        (offline, None, "", EventKind.REMOVED),
        (online, None, "", EventKind.REMOVED),
        (online, touch(online, later), "", None),  # a plain heartbeat (or renewal) is no news
        (None, None, "", None),
    ]


@pytest.mark.parametrize(("before", "after", "how", "expected"), _kind_cases())
def test_change_kind(
    before: InstanceRecord | None,
    after: InstanceRecord | None,
    how: str,
    expected: EventKind | None,
) -> None:
    flags = {how: True} if how else {}
    assert change_kind(before, after, **flags) is expected
