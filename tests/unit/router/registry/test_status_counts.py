"""aegis.router.registry.status_counts: counts follow every change; the version only a change."""

from __future__ import annotations

from datetime import UTC, datetime

from aegis.router.domain import InstanceKey, InstanceRecord
from aegis.router.registry.status_counts import StatusCounts
from aegis.wire.messages import InstanceStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ONLINE, UNHEALTHY, OFFLINE = InstanceStatus.ONLINE, InstanceStatus.UNHEALTHY, InstanceStatus.OFFLINE


def rec(service: str, instance: str, status: InstanceStatus) -> InstanceRecord:
    return InstanceRecord(service, instance, status, {}, T0, T0, None)


def test_counts_follow_changes_and_version_moves_only_on_change() -> None:
    counts = StatusCounts()
    a, b = InstanceKey("svc", "a"), InstanceKey("svc", "b")
    counts.apply(a, rec("svc", "a", ONLINE))
    counts.apply(b, rec("svc", "b", ONLINE))
    counts.apply(b, rec("svc", "b", UNHEALTHY))
    version = counts.version
    counts.apply(b, rec("svc", "b", UNHEALTHY))  # no change

    assert counts.version == version
    assert counts.by_service() == [("svc", {ONLINE: 1, UNHEALTHY: 1, OFFLINE: 0})]
    counts.apply(a, None)
    counts.apply(b, None)
    counts.apply(InstanceKey("svc", "never"), None)
    assert counts.by_service() == []
    assert counts.version == version + 2
