"""The admin REST API over an injected registry (no NATS)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from aegis.router.bootstrap import bootstrap
from aegis.router.domain import InstanceRecord
from aegis.router.registry import Registry
from aegis.router.settings import Settings
from aegis.router.store import MemoryStore
from aegis.wire.messages import InstanceStatus, RegisterRequest
from sanic import Sanic

from tests.support.wire import INSTANCE_KEYS

SESSION = "rest-sess-7Hq2"
T0 = datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)
ADMIN = "/api/v1/admin"


@pytest.fixture
async def app() -> Sanic[Any, Any]:
    store = MemoryStore()
    app = bootstrap(Settings(store="memory"), store=store, nats=None, clock=lambda: T0)
    registry: Registry = app.ctx.registry
    for service, instance in [("payments", "p-1"), ("billing", "b-2"), ("billing", "b-1")]:
        await registry.register(
            RegisterRequest(
                service_name=service, instance_id=instance, metadata={"v": 1}, session_id=SESSION
            )
        )
    for instance, status in [("b-3", InstanceStatus.UNHEALTHY), ("b-4", InstanceStatus.OFFLINE)]:
        await store.create(InstanceRecord("billing", instance, status, {}, T0, T0, SESSION))
    return app


async def get(app: Sanic[Any, Any], path: str, method: str = "get") -> tuple[int, Any]:
    _, response = await getattr(app.asgi_client, method)(path)
    assert SESSION not in response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.status, response.json


async def test_services(app: Sanic[Any, Any]) -> None:
    status, body = await get(app, f"{ADMIN}/services")
    assert status == 200
    assert body == {
        "services": [
            {
                "name": "billing",
                "instance_count": 4,
                "statuses": {"ONLINE": 2, "UNHEALTHY": 1, "OFFLINE": 1},
            },
            {
                "name": "payments",
                "instance_count": 1,
                "statuses": {"ONLINE": 1, "UNHEALTHY": 0, "OFFLINE": 0},
            },
        ],
        "total": 2,
    }


async def test_services_empty() -> None:
    app = bootstrap(Settings(store="memory"), nats=None)
    assert await get(app, f"{ADMIN}/services") == (200, {"services": [], "total": 0})


async def test_one_service(app: Sanic[Any, Any]) -> None:
    status, body = await get(app, f"{ADMIN}/services/billing")
    assert status == 200
    assert set(body) == {"name", "instances"}
    assert body["name"] == "billing"
    assert [i["instance_id"] for i in body["instances"]] == ["b-1", "b-2", "b-3", "b-4"]
    assert all(set(i) == INSTANCE_KEYS for i in body["instances"])
    assert body["instances"][0] == {
        "service_name": "billing",
        "instance_id": "b-1",
        "status": "ONLINE",
        "metadata": {"v": 1},
        "registered_at": "2026-02-03T04:05:06.000Z",
        "last_heartbeat_at": "2026-02-03T04:05:06.000Z",
    }


async def test_unknown_service_is_404(app: Sanic[Any, Any]) -> None:
    status, body = await get(app, f"{ADMIN}/services/nope")
    assert status == 404
    assert set(body) == {"error"}
    assert body["error"]["code"] == "SERVICE_NOT_FOUND"
    assert "nope" in body["error"]["message"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["billing/b-1", "billing/b-2", "billing/b-3", "billing/b-4", "payments/p-1"]),
        ("?service=payments", ["payments/p-1"]),
        ("?status=UNHEALTHY", ["billing/b-3"]),
        ("?status=online", ["billing/b-1", "billing/b-2", "payments/p-1"]),
        ("?service=billing&status=OFFLINE", ["billing/b-4"]),
        ("?service=nope", []),
    ],
)
async def test_instances_filters(app: Sanic[Any, Any], query: str, expected: list[str]) -> None:
    status, body = await get(app, f"{ADMIN}/instances{query}")
    assert status == 200
    assert set(body) == {"instances", "total"}
    assert [f"{i['service_name']}/{i['instance_id']}" for i in body["instances"]] == expected
    assert body["total"] == len(expected)


async def test_instances_bad_status_is_400(app: Sanic[Any, Any]) -> None:
    status, body = await get(app, f"{ADMIN}/instances?status=DEAD")
    assert status == 400
    assert body["error"]["code"] == "INVALID_STATUS"
    assert body["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/nope", 404, "NOT_FOUND"),
        ("get", f"{ADMIN}/nope", 404, "NOT_FOUND"),
        ("post", f"{ADMIN}/services", 405, "METHOD_NOT_ALLOWED"),
        ("delete", "/healthz", 405, "METHOD_NOT_ALLOWED"),
    ],
)
async def test_framework_errors_are_json(
    app: Sanic[Any, Any], method: str, path: str, status: int, code: str
) -> None:
    got, body = await get(app, path, method)
    assert got == status
    assert body["error"]["code"] == code
    assert body["error"]["message"]


async def test_healthz(app: Sanic[Any, Any]) -> None:
    assert await get(app, "/healthz") == (200, {"status": "ok"})


async def test_openapi_documents_every_route_with_exact_schemas(app: Sanic[Any, Any]) -> None:
    status, doc = await get(app, "/docs/openapi.json")
    assert status == 200
    routes = {
        "/" + re.sub(r"<(\w+)(:[^>]*)?>", r"{\1}", route.path)
        for route in app.router.routes
        if not route.path.startswith("docs")
    }
    assert routes == {
        f"{ADMIN}/services",
        f"{ADMIN}/services/{{name}}",
        f"{ADMIN}/services/{{name}}/instances/{{instance_id}}",
        f"{ADMIN}/instances",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    assert set(doc["paths"]) == routes
    schemas = doc["components"]["schemas"]
    for path, operations in doc["paths"].items():
        for operation in operations.values():
            assert "200" in operation["responses"], path
            for response in operation["responses"].values():
                if "application/json" not in response["content"]:
                    continue  # /metrics: Prometheus text
                ref = response["content"]["application/json"]["schema"]["$ref"]
                name = ref.removeprefix("#/components/schemas/")
                assert schemas[name]["required"], (path, name)
    assert schemas["ServicesResponse"]["required"] == ["services", "total"]
    assert schemas["ErrorResponse"]["required"] == ["error"]
    assert set(schemas["Instance"]["required"]) == INSTANCE_KEYS
    responses = doc["paths"][f"{ADMIN}/services/{{name}}"]["get"]["responses"]
    assert responses["404"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorResponse"
    )
