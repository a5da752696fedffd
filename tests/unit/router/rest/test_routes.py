"""aegis.router.rest.routes: the admin REST API over an injected registry (no NATS)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from aegis.router.bootstrap import bootstrap
from aegis.router.domain import InstanceRecord
from aegis.router.registry.operations import Registry
from aegis.router.settings import Settings
from aegis.router.store.port import MemoryStore
from aegis.wire.messages import InstanceStatus, RegisterRequest
from sanic import Sanic
from structlog.testing import capture_logs

from tests.support import FakeClock
from tests.support.wire import INSTANCE_KEYS
from tests.unit.router.fakes import (
    OTHER_SESSION,
    SESSION,
    TIMINGS,
    register_request,
    stored,
)

# -- reading the registry ------------------------------------------------------------

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


async def request(app: Sanic[Any, Any], path: str, method: str = "get") -> tuple[int, Any]:
    _, response = await getattr(app.asgi_client, method)(path)
    assert response.headers["content-type"].startswith("application/json")
    assert SESSION not in response.text
    assert OTHER_SESSION not in response.text
    return response.status, response.json


async def test_services(app: Sanic[Any, Any]) -> None:
    status, body = await request(app, f"{ADMIN}/services")
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
        "version": "local:5",  # no event feed (no NATS side): the registry's changes
    }


async def test_services_empty() -> None:
    app = bootstrap(Settings(store="memory"), nats=None)
    assert await request(app, f"{ADMIN}/services") == (
        200,
        {"services": [], "total": 0, "version": "local:0"},
    )


async def test_one_service(app: Sanic[Any, Any]) -> None:
    status, body = await request(app, f"{ADMIN}/services/billing")
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
        "version": 1,  # one change event so far: registered
    }


async def test_unknown_service_is_404(app: Sanic[Any, Any]) -> None:
    status, body = await request(app, f"{ADMIN}/services/nope")
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
    status, body = await request(app, f"{ADMIN}/instances{query}")
    assert status == 200
    assert set(body) == {"instances", "total", "next_cursor", "version"}
    assert body["next_cursor"] is None  # no limit: one page
    assert [f"{i['service_name']}/{i['instance_id']}" for i in body["instances"]] == expected
    assert body["total"] == len(expected)


async def test_instances_bad_status_is_400(app: Sanic[Any, Any]) -> None:
    status, body = await request(app, f"{ADMIN}/instances?status=DEAD")
    assert status == 400
    assert body["error"]["code"] == "INVALID_STATUS"
    # The value quoted as JSON quotes it, in a JSON API (issue 25), not as Python does.
    assert body["error"]["message"].endswith('got "DEAD"')


async def test_a_missing_instance_is_named_in_json_quotes(app: Sanic[Any, Any]) -> None:
    status, body = await request(app, f"{ADMIN}/services/billing/instances/it's-gone")
    assert status == 404
    assert body["error"]["message"] == (
        'no instance "it\'s-gone" of service "billing" is registered'
    )


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
    got, body = await request(app, path, method)
    assert got == status
    assert body["error"]["code"] == code
    assert body["error"]["message"]


async def test_healthz(app: Sanic[Any, Any]) -> None:
    assert await request(app, "/healthz") == (200, {"status": "ok"})


async def test_openapi_documents_every_route_with_exact_schemas(app: Sanic[Any, Any]) -> None:
    status, doc = await request(app, "/docs/openapi.json")
    assert status == 200
    routes = {
        "/" + re.sub(r"<(\w+)(:[^>]*)?>", r"{\1}", route.path)
        for route in app.router.routes
        if not route.path.startswith("docs")
    }
    assert routes == {
        f"{ADMIN}/services",
        f"{ADMIN}/services/{{name}}",
        f"{ADMIN}/services/{{name}}/instances",
        f"{ADMIN}/services/{{name}}/instances/{{instance_id}}",
        f"{ADMIN}/services/{{name}}/instances/{{instance_id}}/maintenance",
        f"{ADMIN}/services/{{name}}/maintenance",
        f"{ADMIN}/instances",
        f"{ADMIN}/events",
        f"{ADMIN}/whoami",
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
    # version is optional in the contract (older routers leave it out); this one always sends it.
    assert set(schemas["Instance"]["required"]) == INSTANCE_KEYS - {"version"}
    responses = doc["paths"][f"{ADMIN}/services/{{name}}"]["get"]["responses"]
    assert responses["404"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ErrorResponse"
    )


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


async def test_not_ready_until_nats_is_up() -> None:
    _, response = await bootstrap(Settings(store="memory"), nats=None).asgi_client.get("/readyz")

    assert response.status == 503
    assert response.json["error"]["code"] == "NOT_READY"


# -- one service by status, and an operator's force-deregistration ---------------------

SERVICE = f"{ADMIN}/services"


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def liveness_app(store: MemoryStore) -> Sanic[Any, Any]:
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
def registry(liveness_app: Sanic[Any, Any]) -> Registry:
    registry: Registry = liveness_app.ctx.registry
    return registry


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["b-1", "b-2", "b-3", "b-9"]),
        ("?status=ONLINE", ["b-1", "b-9"]),
        ("?status=UNHEALTHY", ["b-2"]),
        ("?status=OFFLINE", ["b-3"]),
        ("?status=offline", ["b-3"]),
        ("?status=ANY", ["b-1", "b-2", "b-3", "b-9"]),  # as NATS discover takes it
    ],
)
async def test_service_status_filter(
    liveness_app: Sanic[Any, Any], query: str, expected: list[str]
) -> None:
    status, body = await request(liveness_app, f"{SERVICE}/billing{query}")
    assert status == 200
    assert body["name"] == "billing"
    assert [i["instance_id"] for i in body["instances"]] == expected


async def test_known_service_with_nothing_in_that_status_is_an_empty_list(
    liveness_app: Sanic[Any, Any],
) -> None:
    assert await request(liveness_app, f"{SERVICE}/payments?status=OFFLINE") == (
        200,
        {"name": "payments", "instances": []},
    )


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        (f"{SERVICE}/nope?status=ONLINE", 404, "SERVICE_NOT_FOUND"),
        (f"{SERVICE}/nope", 404, "SERVICE_NOT_FOUND"),
        (f"{SERVICE}/billing?status=DEAD", 400, "INVALID_STATUS"),
        (f"{SERVICE}/billing?status=ALL", 400, "INVALID_STATUS"),
    ],
)
async def test_service_errors(
    liveness_app: Sanic[Any, Any], path: str, status: int, code: str
) -> None:
    got, body = await request(liveness_app, path)
    assert got == status
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]


@pytest.mark.parametrize("instance", ["b-1", "b-2", "b-9", "b-3"])
async def test_force_deregister_takes_the_instance_offline(
    liveness_app: Sanic[Any, Any], registry: Registry, instance: str
) -> None:
    with capture_logs() as logs:
        status, body = await request(
            liveness_app, f"{SERVICE}/billing/instances/{instance}", "delete"
        )

    assert status == 200
    assert (body["service_name"], body["instance_id"], body["status"]) == (
        "billing",
        instance,
        "OFFLINE",
    )
    stored_now = {r.instance_id: r.status for r in await registry.instances("billing")}
    assert stored_now[instance] is InstanceStatus.OFFLINE
    [line] = [e for e in logs if e["event"] == "operator_action"]
    assert (line["action"], line["service"], line["instance"], line["outcome"]) == (
        "deregister",
        "billing",
        instance,
        200,
    )
    assert line["actor"] == "anonymous"  # no token configured
    assert isinstance(line["origin"], str)
    assert line["origin"]
    assert SESSION not in repr(logs)
    assert OTHER_SESSION not in repr(logs)


@pytest.mark.parametrize(("service", "instance"), [("billing", "nope"), ("nope", "b-1")])
async def test_force_deregister_unknown_is_404(
    liveness_app: Sanic[Any, Any], registry: Registry, service: str, instance: str
) -> None:
    before = await registry.instances()
    with capture_logs() as logs:
        status, body = await request(
            liveness_app, f"{SERVICE}/{service}/instances/{instance}", "delete"
        )

    assert status == 404
    assert set(body) == {"error"}
    assert body["error"]["code"] == "INSTANCE_NOT_FOUND"
    assert instance in body["error"]["message"]
    assert await registry.instances() == before
    [line] = [e for e in logs if e["event"] == "operator_action"]
    assert (line["service"], line["instance"], line["outcome"]) == (service, instance, 404)
    assert line["origin"]


async def filtered_app() -> Sanic[Any, Any]:
    app = bootstrap(Settings(store="memory"), store=MemoryStore(), nats=None, clock=lambda: T0)
    registry: Registry = app.ctx.registry
    for n, metadata in enumerate(
        [
            {"zone": "eu-1", "port": 8080, "canary": True},
            {"zone": "eu-1", "port": 8081, "canary": False},
            {"zone": "us-1", "port": 8080},
            {"zone": {"nested": "eu-1"}},
        ]
    ):
        await registry.register(
            RegisterRequest(
                service_name="pay", instance_id=f"p-{n}", metadata=metadata, session_id=SESSION
            )
        )
    return app


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("meta.zone=eu-1", ["p-0", "p-1"]),
        ("meta.zone=eu-1&meta.port=8081", ["p-1"]),
        ("meta.canary=true", ["p-0"]),
        ("meta.port=8080&status=ONLINE", ["p-0", "p-2"]),
        ("meta.zone=mars", []),
        ("meta.port=8080&status=OFFLINE", []),
    ],
)
async def test_metadata_filters_on_every_listing(query: str, expected: list[str]) -> None:
    app = await filtered_app()
    for path, key in [
        (f"{ADMIN}/services/pay/instances?{query}", "instances"),
        (f"{ADMIN}/services/pay?{query}", "instances"),
        (f"{ADMIN}/instances?service=pay&{query}", "instances"),
    ]:
        status, body = await request(app, path)
        assert status == 200, path
        assert [i["instance_id"] for i in body[key]] == expected, path


@pytest.mark.parametrize(
    "query", ["meta.=x", "meta.zone=a&meta.zone=b", "&".join(f"meta.k{n}=v" for n in range(17))]
)
async def test_a_bad_metadata_filter_is_a_400_that_says_why(query: str) -> None:
    app = await filtered_app()
    status, body = await request(app, f"{ADMIN}/services/pay/instances?{query}")
    assert status == 400
    assert body["error"]["code"] == "INVALID_FILTER"


async def test_an_unknown_service_is_404_even_with_filters() -> None:
    app = await filtered_app()
    status, body = await request(app, f"{ADMIN}/services/nope/instances?meta.zone=eu-1")
    assert (status, body["error"]["code"]) == (404, "SERVICE_NOT_FOUND")


async def test_maintenance_routes_mark_hide_and_unmark() -> None:
    app = await filtered_app()
    status, body = await request(app, f"{ADMIN}/services/pay/instances/p-0/maintenance", "put")
    assert (status, body["error"]["code"]) == (400, "VALIDATION_ERROR"), "a reason is required"
    _, response = await app.asgi_client.put(
        f"{ADMIN}/services/pay/instances/p-0/maintenance", json={"reason": "kernel upgrade"}
    )
    assert response.status == 200
    assert response.json["maintenance"]["reason"] == "kernel upgrade"

    _, listing = await request(app, f"{ADMIN}/services/pay")
    assert [i.get("maintenance", {}).get("reason") for i in listing["instances"]] == [
        "kernel upgrade",
        None,
        None,
        None,
    ], "the plain listing shows the mark"
    _, filtered = await request(app, f"{ADMIN}/services/pay/instances?meta.zone=eu-1")
    assert [i["instance_id"] for i in filtered["instances"]] == ["p-1"], "filters leave it out"
    _, only = await request(app, f"{ADMIN}/instances?maintenance=only")
    assert [i["instance_id"] for i in only["instances"]] == ["p-0"]
    status, body = await request(app, f"{ADMIN}/instances?maintenance=maybe")
    assert (status, body["error"]["code"]) == (400, "INVALID_FILTER")

    status, body = await request(app, f"{ADMIN}/services/pay/instances/p-0/maintenance", "delete")
    assert status == 200
    assert "maintenance" not in body
    status, body = await request(app, f"{ADMIN}/services/nope/instances/x/maintenance", "delete")
    assert (status, body["error"]["code"]) == (404, "INSTANCE_NOT_FOUND")


async def test_a_whole_service_in_and_out_of_maintenance() -> None:
    app = await filtered_app()
    _, response = await app.asgi_client.put(
        f"{ADMIN}/services/pay/maintenance", json={"reason": "migration"}
    )
    assert response.status == 200
    assert response.json["total"] == 4
    _, online = await request(app, f"{ADMIN}/services/pay/instances?status=ONLINE")
    assert online["total"] == 0
    status, body = await request(app, f"{ADMIN}/services/pay/maintenance", "delete")
    assert (status, body["total"]) == (200, 4)
    _, online = await request(app, f"{ADMIN}/services/pay/instances?status=ONLINE")
    assert online["total"] == 4
    status, body = await request(app, f"{ADMIN}/services/nope/maintenance", "delete")
    assert (status, body["error"]["code"]) == (404, "SERVICE_NOT_FOUND")


@pytest.mark.parametrize(("instance", "state"), [("b-1", "ONLINE"), ("b-3", "OFFLINE")])
async def test_one_instance_is_got_at_its_own_path(
    liveness_app: Sanic[Any, Any], instance: str, state: str
) -> None:
    # DELETE and /maintenance live at this path; GET answered 405 (issue 25).
    status, body = await request(liveness_app, f"{SERVICE}/billing/instances/{instance}")
    assert status == 200
    assert (body["service_name"], body["instance_id"], body["status"]) == (
        "billing",
        instance,
        state,
    )


@pytest.mark.parametrize(
    "path", ["billing/instances/nope", "nope/instances/b-1", "billing/instances/bad%20id"]
)
async def test_an_unknown_instance_is_404(liveness_app: Sanic[Any, Any], path: str) -> None:
    status, body = await request(liveness_app, f"{SERVICE}/{path}")
    assert status == 404
    assert body["error"]["code"] == "INSTANCE_NOT_FOUND"


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({}, "reason: Field required"),
        ({"reason": ""}, "reason: String should have at least 1 character"),
        ({"reason": 7}, "reason: Input should be a valid string"),
        (["kernel upgrade"], "body: must be a JSON object"),
    ],
)
async def test_a_bad_maintenance_body_is_told_in_json_terms(body: Any, said: str) -> None:
    # Issue 25: the message showed Python reprs ({'reason': ...}, 'loc': ('reason',)).
    app = await filtered_app()
    _, response = await app.asgi_client.put(
        f"{ADMIN}/services/pay/instances/p-0/maintenance", json=body
    )
    message = response.json["error"]["message"]
    assert response.status == 400
    assert message.startswith('body must be {"reason": "..."}')
    assert said in message
    assert "{'" not in message
    assert "('" not in message
    assert "loc" not in message
    assert "MaintenanceRequest" not in message, "no internal names"
