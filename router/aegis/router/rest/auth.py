"""Bearer-token protection of the admin API."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aegis.router.rest.contract import ADMIN_PREFIX
from aegis.router.rest.errors import ApiException
from sanic import Request


def require_token(token: str) -> Callable[[Request], Awaitable[None]]:
    """Request middleware: every ``/api/v1/admin`` request must carry ``token``.

    Health, readiness, metrics and the OpenAPI document stay open.
    """
    expected = f"Bearer {token}".encode()

    async def check(request: Request) -> None:
        if not request.path.startswith(ADMIN_PREFIX):
            return
        given = request.headers.get("authorization", "").encode()
        # Constant time: the comparison must not tell how much of a guess was right.
        if not hmac.compare_digest(given, expected):
            raise ApiException(
                401,
                "UNAUTHORIZED",
                "missing or wrong admin token; send 'Authorization: Bearer <AEGIS_ADMIN_TOKEN>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return check
