"""aegis.router.rest.auth: the admin API's bearer token, and which routes stay open."""

from __future__ import annotations

from typing import Any

import pytest
from aegis.router.bootstrap import bootstrap
from aegis.router.settings import Settings

TOKEN = "s3cret-token-value"
ADMIN = "/api/v1/admin"


def app_with(**settings: Any):  # type: ignore[no-untyped-def]
    return bootstrap(Settings(store="memory", **settings), nats=None)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": TOKEN}, 401),
        ({"Authorization": f"Bearer {TOKEN}x"}, 401),
        ({"Authorization": f"Bearer {TOKEN}"}, 200),
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


@pytest.mark.parametrize("path", ["/healthz", "/docs/openapi.json"])
async def test_health_and_docs_stay_open(path: str) -> None:
    _, response = await app_with(admin_token=TOKEN).asgi_client.get(path)

    assert response.status == 200


async def test_without_a_token_the_admin_api_is_open_on_loopback() -> None:
    _, response = await app_with().asgi_client.get(f"{ADMIN}/services")

    assert response.status == 200
