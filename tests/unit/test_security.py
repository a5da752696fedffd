"""Admin token, loopback-only default, readiness."""

from __future__ import annotations

from typing import Any

import pytest
from aegis.router.bootstrap import bootstrap
from aegis.router.settings import Settings, is_loopback, load_settings

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


async def test_not_ready_until_nats_is_up() -> None:
    _, response = await app_with().asgi_client.get("/readyz")

    assert response.status == 503
    assert response.json["error"]["code"] == "NOT_READY"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.5", False),
        ("::", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_public_address_without_token_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        load_settings([], {"AEGIS_HTTP_HOST": "0.0.0.0"})

    assert info.value.code == 2
    assert "AEGIS_ADMIN_TOKEN" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        ([], {"AEGIS_HTTP_HOST": "0.0.0.0", "AEGIS_ADMIN_TOKEN": TOKEN}),
        (["--insecure"], {"AEGIS_HTTP_HOST": "0.0.0.0"}),
        ([], {"AEGIS_HTTP_HOST": "0.0.0.0", "AEGIS_INSECURE": "1"}),
    ],
)
def test_public_address_with_token_or_insecure_is_accepted(
    argv: list[str], env: dict[str, str]
) -> None:
    settings = load_settings(argv, env)

    assert settings.http_host == "0.0.0.0"
    assert TOKEN not in repr(settings), "the token must not leak into logs of the settings"
