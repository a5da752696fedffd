"""The registration rules of wire contract v1, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from aegis.router.domain import Decision, InstanceRecord, Outcome, decide_registration
from aegis.wire.messages import InstanceStatus

EARLIER = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
NOW = EARLIER + timedelta(minutes=5)


def stored(status: InstanceStatus, session_id: str | None = "s-1") -> InstanceRecord:
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
    decision = decide(stored(InstanceStatus.OFFLINE), session_id=session_id)
    assert decision.outcome is Outcome.CREATED
    record = decision.record
    assert record.status is InstanceStatus.ONLINE
    assert (record.registered_at, record.last_heartbeat_at) == (NOW, NOW)
    assert record.metadata == {"version": "2"}
    assert record.session_id == session_id


@pytest.mark.parametrize("status", [InstanceStatus.ONLINE, InstanceStatus.UNHEALTHY])
def test_live_same_session_is_renewed_without_changing_metadata(status: InstanceStatus) -> None:
    existing = stored(status)
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
    existing = stored(status, session_id=stored_session)
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
    )
    public = record.to_public().model_dump(mode="json")
    assert public == {
        "service_name": "billing",
        "instance_id": "billing-1",
        "status": "ONLINE",
        "metadata": {"a": 1},
        "registered_at": "2026-01-02T03:04:05.678Z",
        "last_heartbeat_at": "2026-01-02T03:04:05.678Z",
    }
    assert "secret-session" not in str(public)
