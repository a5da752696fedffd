"""aegis.router.rest.auth: tokens and roles on the admin API, which routes stay open,
and the ``operator_action`` audit events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aegis.router.bootstrap import bootstrap
from aegis.router.registry.operations import Registry
from aegis.router.rest.auth import action_of, needed_role
from aegis.router.rest.tokens import Role, digest
from aegis.router.settings import Settings
from aegis.wire.messages import RegisterRequest
from sanic import Sanic
from structlog.testing import capture_logs

from tests.support.admin_paths import ADMIN, INSTANCE, READS
from tests.unit.router.fakes import ListSink

TOKEN = "s3cret-token-value"
READER = "aegis_reader-secret-0123456789"
OPERATOR = "aegis_operator-secret-0123456789"


def app_with(**settings: Any):  # type: ignore[no-untyped-def]
    return bootstrap(Settings(store="memory", **settings), nats=None)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def send(
    app: Sanic[Any, Any], method: str, path: str, secret: str, body: dict[str, str] | None
) -> Any:
    """The response to ``method path`` with ``secret`` (and a JSON ``body``, if any)."""
    extra = {} if body is None else {"json": body}
    _, response = await getattr(app.asgi_client, method)(path, headers=bearer(secret), **extra)
    return response


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": TOKEN}, 401),
        ({"Authorization": "Bearer "}, 401),
        ({"Authorization": f"Basic {TOKEN}"}, 401),
        ({"Authorization": f"Bearer {TOKEN}x"}, 401),
        ({"Authorization": f"Bearer {TOKEN}"}, 200),
        ({"Authorization": f"bearer {TOKEN}"}, 200),  # RFC 9110: the scheme is case-insensitive
    ],
)
async def test_admin_routes_need_the_token(headers: dict[str, str], status: int) -> None:
    app = app_with(admin_token=TOKEN)
    _, response = await app.asgi_client.get(f"{ADMIN}/services", headers=headers)

    assert response.status == status
    if status == 401:
        assert response.json["error"]["code"] == "UNAUTHORIZED"
        assert response.headers["www-authenticate"] == "Bearer"
        assert TOKEN not in response.text


@pytest.mark.parametrize("path", ["/healthz", "/docs/openapi.json", "/metrics"])
async def test_health_metrics_and_docs_stay_open(path: str) -> None:
    _, response = await app_with(admin_token=TOKEN).asgi_client.get(path)

    assert response.status == 200


async def test_without_a_token_the_admin_api_is_open_on_loopback() -> None:
    app = app_with()
    _, response = await app.asgi_client.get(f"{ADMIN}/services")
    _, who = await app.asgi_client.get(f"{ADMIN}/whoami")

    assert response.status == 200
    assert who.json == {"name": "anonymous", "role": "operator"}


# -- roles from a tokens file ------------------------------------------------------------


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(
        "# the platform team's tokens\n"
        f"ci-dashboard read sha256:{digest(READER).hex()}\n"
        f"oncall operator sha256:{digest(OPERATOR).hex()}\n"
    )
    return path


@pytest.fixture
async def roles_app(tokens: Path) -> Sanic[Any, Any]:
    app: Sanic[Any, Any] = app_with(tokens_file=tokens, admin_token=TOKEN)
    registry: Registry = app.ctx.registry
    sink = ListSink()
    registry.set_event_sink(sink)
    app.ctx.sink = sink
    await registry.register(RegisterRequest(service_name="billing", instance_id="b-1"))
    await registry.register(RegisterRequest(service_name="billing", instance_id="b-2"))
    sink.events.clear()  # the registrations': no operator made them
    return app


ACTIONS = [
    ("delete", INSTANCE, None),
    ("put", f"{INSTANCE}/maintenance", {"reason": "kernel upgrade"}),
    ("delete", f"{INSTANCE}/maintenance", None),
    ("put", f"{ADMIN}/services/billing/maintenance", {"reason": "kernel upgrade"}),
    ("delete", f"{ADMIN}/services/billing/maintenance", None),
]


@pytest.mark.parametrize("secret", [READER, OPERATOR, TOKEN])
@pytest.mark.parametrize("path", READS)
async def test_every_token_reads(roles_app: Sanic[Any, Any], secret: str, path: str) -> None:
    _, response = await roles_app.asgi_client.get(path, headers=bearer(secret))

    assert response.status == 200


@pytest.mark.parametrize(("method", "path", "body"), ACTIONS)
async def test_a_read_token_may_not_act(
    roles_app: Sanic[Any, Any], method: str, path: str, body: dict[str, str] | None
) -> None:
    registry: Registry = roles_app.ctx.registry
    before = await registry.instances()
    with capture_logs() as logs:
        response = await send(roles_app, method, path, READER, body)

    assert response.status == 403
    error = response.json["error"]
    assert error["code"] == "FORBIDDEN"
    assert '"ci-dashboard" has role read' in error["message"]
    assert "needs role operator" in error["message"]
    assert READER not in response.text
    assert await registry.instances() == before
    assert roles_app.ctx.sink.events == []
    [line] = [e for e in logs if e["event"] == "operator_action"]
    assert (line["actor"], line["role"], line["outcome"]) == ("ci-dashboard", "read", 403)
    assert READER not in repr(logs)


@pytest.mark.parametrize("secret", [OPERATOR, TOKEN])
@pytest.mark.parametrize(("method", "path", "body"), ACTIONS)
async def test_an_operator_token_acts_and_is_named_in_audit_and_events(
    roles_app: Sanic[Any, Any], secret: str, method: str, path: str, body: dict[str, str] | None
) -> None:
    name = "oncall" if secret == OPERATOR else "admin"
    if method == "delete" and path.endswith("/maintenance"):
        # Something to take out of maintenance first.
        await roles_app.asgi_client.put(
            f"{ADMIN}/services/billing/maintenance", headers=bearer(secret), json={"reason": "x"}
        )
        roles_app.ctx.sink.events.clear()
    with capture_logs() as logs:
        response = await send(roles_app, method, path, secret, body)

    assert response.status == 200
    [line] = [e for e in logs if e["event"] == "operator_action"]
    assert line["actor"] == name
    assert line["role"] == "operator"
    assert line["service"] == "billing"
    assert line["outcome"] == 200
    assert line["reason"] == (body or {}).get("reason")
    assert secret not in repr(logs)
    events = roles_app.ctx.sink.events
    assert events
    assert {e.actor for e in events} == {name}


async def test_the_audit_event_names_action_target_and_reason(roles_app: Sanic[Any, Any]) -> None:
    with capture_logs() as logs:
        await roles_app.asgi_client.put(
            f"{INSTANCE}/maintenance", headers=bearer(OPERATOR), json={"reason": "disk swap"}
        )
        await roles_app.asgi_client.delete(INSTANCE, headers=bearer(OPERATOR))
        await roles_app.asgi_client.delete(
            f"{ADMIN}/services/billing/instances/nope", headers=bearer(OPERATOR)
        )
        await roles_app.asgi_client.delete(INSTANCE, headers=bearer("guess"))
        await roles_app.asgi_client.get(f"{ADMIN}/services", headers=bearer(OPERATOR))

    audit = [
        (e["actor"], e["action"], e["service"], e["instance"], e["reason"], e["outcome"])
        for e in logs
        if e["event"] == "operator_action"
    ]
    assert audit == [
        ("oncall", "maintenance_on", "billing", "b-1", "disk swap", 200),
        ("oncall", "deregister", "billing", "b-1", None, 200),
        ("oncall", "deregister", "billing", "nope", None, 404),
        (None, "deregister", "billing", "b-1", None, 401),  # reads are not audited
    ]
    # One event per request: the old per-route events are gone.
    assert [e["event"] for e in logs if e["event"].startswith("operator_")] == [
        "operator_action"
    ] * 4


async def test_whoami_names_the_token_and_its_role(roles_app: Sanic[Any, Any]) -> None:
    answers = []
    for secret in (READER, OPERATOR, TOKEN):
        _, response = await roles_app.asgi_client.get(f"{ADMIN}/whoami", headers=bearer(secret))
        answers.append(response.json)

    assert answers == [
        {"name": "ci-dashboard", "role": "read"},
        {"name": "oncall", "role": "operator"},
        {"name": "admin", "role": "operator"},
    ]


async def test_openapi_documents_401_everywhere_and_403_on_actions(
    roles_app: Sanic[Any, Any],
) -> None:
    _, response = await roles_app.asgi_client.get("/docs/openapi.json")
    paths = response.json["paths"]

    for path, operations in paths.items():
        if not path.startswith(ADMIN):
            continue
        for method, operation in operations.items():
            assert "401" in operation["responses"], (method, path)
            assert ("403" in operation["responses"]) is (method != "get"), (method, path)
    whoami = paths[f"{ADMIN}/whoami"]["get"]["responses"]["200"]
    assert whoami["content"]["application/json"]["schema"]["$ref"].endswith("/WhoAmI")


@pytest.mark.parametrize(
    ("method", "role"),
    [("GET", Role.READ), ("head", Role.READ), ("OPTIONS", Role.READ)]
    + [(m, Role.OPERATOR) for m in ("PUT", "DELETE", "POST", "PATCH")],
)
def test_reads_need_read_and_everything_else_operator(method: str, role: Role) -> None:
    assert needed_role(method) is role


@pytest.mark.parametrize(
    ("method", "route", "action"),
    [
        ("DELETE", "api/v1/admin/services/<name:str>/instances/<instance_id:str>", "deregister"),
        ("PUT", "api/v1/admin/services/<name:str>/maintenance", "maintenance_on"),
        ("DELETE", "api/v1/admin/services/<name:str>/maintenance", "maintenance_off"),
        ("POST", "api/v1/admin/services", "post_services"),
        ("POST", None, "unknown_route"),
    ],
)
def test_action_of_a_route(method: str, route: str | None, action: str) -> None:
    assert action_of(method, route) == action


async def test_a_method_no_route_has_is_a_405_not_a_403(roles_app: Sanic[Any, Any]) -> None:
    response = await send(roles_app, "patch", f"{ADMIN}/services", READER, None)

    assert response.status == 405
    assert "GET" in response.headers["allow"]
