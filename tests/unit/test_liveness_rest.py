"""REST: the status filter on one service, and an operator's force-deregistration."""

from __future__ import annotations

from typing import Any

import pytest
from aegis.router.bootstrap import bootstrap
from aegis.router.registry import Registry
from aegis.router.settings import Settings
from aegis.router.store import MemoryStore
from aegis.wire.messages import InstanceStatus
from sanic import Sanic
from structlog.testing import capture_logs

from tests.support import FakeClock
from tests.unit.liveness_fakes import (
    OTHER_SESSION,
    SESSION,
    TIMINGS,
    register_request,
    stored,
)

SERVICE = "/api/v1/admin/services"


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def app(store: MemoryStore) -> Sanic[Any, Any]:
    clock, timings = FakeClock(), TIMINGS
    settings = Settings(
        store="memory",
        heartbeat_interval=timings.heartbeat_interval,
        unhealthy_after=timings.unhealthy_after,
        offline_after=timings.offline_after,
        remove_after=timings.remove_after,
    )
    app = bootstrap(settings, store=store, nats=None, clock=clock)
    registry: Registry = app.ctx.registry
    await registry.register(register_request("b-1"))
    await registry.register(register_request("b-9", session=None))
    await registry.register(register_request("p-1", service="payments"))
    await store.create(stored("b-2", InstanceStatus.UNHEALTHY, session=OTHER_SESSION))
    await store.create(stored("b-3", InstanceStatus.OFFLINE))
    return app


@pytest.fixture
def registry(app: Sanic[Any, Any]) -> Registry:
    registry: Registry = app.ctx.registry
    return registry


async def request(app: Sanic[Any, Any], path: str, method: str = "get") -> tuple[int, Any]:
    _, response = await getattr(app.asgi_client, method)(path)
    assert response.headers["content-type"].startswith("application/json")
    assert SESSION not in response.text
    assert OTHER_SESSION not in response.text
    return response.status, response.json


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["b-1", "b-2", "b-3", "b-9"]),
        ("?status=ONLINE", ["b-1", "b-9"]),
        ("?status=UNHEALTHY", ["b-2"]),
        ("?status=OFFLINE", ["b-3"]),
        ("?status=offline", ["b-3"]),
    ],
)
async def test_service_status_filter(app: Sanic[Any, Any], query: str, expected: list[str]) -> None:
    status, body = await request(app, f"{SERVICE}/billing{query}")
    assert status == 200
    assert body["name"] == "billing"
    assert [i["instance_id"] for i in body["instances"]] == expected


async def test_known_service_with_nothing_in_that_status_is_an_empty_list(
    app: Sanic[Any, Any],
) -> None:
    assert await request(app, f"{SERVICE}/payments?status=OFFLINE") == (
        200,
        {"name": "payments", "instances": []},
    )


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        (f"{SERVICE}/nope?status=ONLINE", 404, "SERVICE_NOT_FOUND"),
        (f"{SERVICE}/nope", 404, "SERVICE_NOT_FOUND"),
        (f"{SERVICE}/billing?status=DEAD", 400, "INVALID_STATUS"),
        (f"{SERVICE}/billing?status=ANY", 400, "INVALID_STATUS"),
    ],
)
async def test_service_errors(app: Sanic[Any, Any], path: str, status: int, code: str) -> None:
    got, body = await request(app, path)
    assert got == status
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


@pytest.mark.parametrize("instance", ["b-1", "b-2", "b-9", "b-3"])
async def test_force_deregister_takes_the_instance_offline(
    app: Sanic[Any, Any], registry: Registry, instance: str
) -> None:
    with capture_logs() as logs:
        status, body = await request(app, f"{SERVICE}/billing/instances/{instance}", "delete")

    assert status == 200
    assert (body["service_name"], body["instance_id"], body["status"]) == (
        "billing",
        instance,
        "OFFLINE",
    )
    stored_now = {r.instance_id: r.status for r in await registry.instances("billing")}
    assert stored_now[instance] is InstanceStatus.OFFLINE
    [line] = [e for e in logs if e["event"] == "operator_deregistration"]
    assert (line["service"], line["instance"], line["found"]) == ("billing", instance, True)
    assert isinstance(line["origin"], str)
    assert line["origin"]
    assert SESSION not in repr(logs)
    assert OTHER_SESSION not in repr(logs)


@pytest.mark.parametrize(("service", "instance"), [("billing", "nope"), ("nope", "b-1")])
async def test_force_deregister_unknown_is_404(
    app: Sanic[Any, Any], registry: Registry, service: str, instance: str
) -> None:
    before = await registry.instances()
    with capture_logs() as logs:
        status, body = await request(app, f"{SERVICE}/{service}/instances/{instance}", "delete")

    assert status == 404
    assert set(body) == {"error"}
    assert body["error"]["code"] == "INSTANCE_NOT_FOUND"
    assert instance in body["error"]["message"]
    assert await registry.instances() == before
    [line] = [e for e in logs if e["event"] == "operator_deregistration"]
    assert (line["service"], line["instance"], line["found"]) == (service, instance, False)
    assert line["origin"]
