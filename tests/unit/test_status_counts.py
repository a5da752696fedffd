"""StatusCounts follows every change; the services list is rebuilt only after one."""

from __future__ import annotations

from datetime import UTC, datetime

from aegis.router.bootstrap import bootstrap
from aegis.router.domain import InstanceKey, InstanceRecord
from aegis.router.registry import Registry
from aegis.router.settings import Settings
from aegis.router.status_counts import StatusCounts
from aegis.wire.messages import InstanceStatus, RegisterRequest

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


async def test_services_endpoint_shows_a_change_after_a_cached_answer() -> None:
    app = bootstrap(Settings(store="memory"), nats=None)
    registry: Registry = app.ctx.registry
    await registry.register(RegisterRequest(service_name="one", instance_id="1"))
    _, first = await app.asgi_client.get("/api/v1/admin/services")
    _, same = await app.asgi_client.get("/api/v1/admin/services")
    await registry.register(RegisterRequest(service_name="two", instance_id="2"))
    _, second = await app.asgi_client.get("/api/v1/admin/services")

    assert first.json == same.json
    assert first.json["total"] == 1
    assert [s["name"] for s in second.json["services"]] == ["one", "two"]
