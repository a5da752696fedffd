"""Who may call the admin API, and the audit trail of what operators did.

One rule, here and nowhere else: reading (GET, HEAD, OPTIONS) under
``/api/v1/admin`` needs the ``read`` role; anything else (deregister,
maintenance) needs ``operator``. Health, readiness, metrics and the OpenAPI
document stay open. Without a token table (no tokens file, no
``AEGIS_ADMIN_TOKEN``) every request acts as the operator ``anonymous``, as
the admin API always did on loopback.

Every request that may change something (not a read) is one ``operator_action``
log event, refused ones included, with the token's name, never its secret.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aegis.router.rest.contract import ADMIN_PREFIX
from aegis.router.rest.errors import ApiException, quoted
from aegis.router.rest.tokens import ANONYMOUS, Principal, Role, TokenTable
from sanic import Request
from sanic.response import BaseHTTPResponse

log = structlog.get_logger("aegis.router.audit")

READS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN = Principal(ANONYMOUS, Role.OPERATOR)
MAX_LOGGED_REASON = 256  # a valid reason is at most this long; a longer one is refused anyway


def needed_role(method: str) -> Role:
    """The role a request with ``method`` needs under the admin prefix."""
    return Role.READ if method.upper() in READS else Role.OPERATOR


def principal(request: Request) -> Principal | None:
    """Who made ``request``, once the guard has let it in (None before, or if it did not)."""
    found: Principal | None = getattr(request.ctx, "principal", None)
    return found


def actor(request: Request) -> str | None:
    """The name an operator action and its change events carry."""
    found = principal(request)
    return None if found is None else found.name


def _unauthorized(why: str) -> ApiException:
    return ApiException(
        401,
        "UNAUTHORIZED",
        f"{why}; send 'Authorization: Bearer <token>' with a token of the tokens file "
        "(AEGIS_TOKENS_FILE) or AEGIS_ADMIN_TOKEN",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _bearer(request: Request) -> str | None:
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return secret.strip()


def guard(table: TokenTable | None) -> Callable[[Request], Awaitable[None]]:
    """Request middleware: 401 without a known token, 403 with one whose role is short."""

    async def check(request: Request) -> None:
        if not request.path.startswith(ADMIN_PREFIX):
            return
        if table is None:
            request.ctx.principal = OPEN
            return
        secret = _bearer(request)
        if secret is None:
            raise _unauthorized("no bearer token")
        found = table.find(secret)
        if found is None:
            raise _unauthorized("unknown token")
        request.ctx.principal = found
        if request.route is None:
            return  # no such route or method: its 404 or 405 says more than a 403 would
        needed = needed_role(request.method)
        if not found.role.allows(needed):
            raise ApiException(
                403,
                "FORBIDDEN",
                f"token {quoted(found.name)} has role {found.role.value}; "
                f"{request.method} {request.path} needs role {needed.value}",
            )

    return check


def action_of(method: str, route_path: str | None) -> str:
    """What a mutating request does, by its route: ``deregister``, ``maintenance_on``..."""
    if route_path is None:
        return "unknown_route"
    if route_path.rstrip("/").endswith("/maintenance"):
        return "maintenance_on" if method == "PUT" else "maintenance_off"
    if method == "DELETE" and "<instance_id" in route_path:
        return "deregister"
    return f"{method.lower()}_{route_path.rstrip('/').rsplit('/', 1)[-1]}"


def _reason(request: Request) -> str | None:
    """The maintenance reason the request gave, if its body has one."""
    try:
        body: Any = request.json
    except Exception:
        return None
    reason = body.get("reason") if isinstance(body, dict) else None
    return reason[:MAX_LOGGED_REASON] if isinstance(reason, str) else None


async def audit(request: Request, response: BaseHTTPResponse) -> None:
    """Response middleware: one ``operator_action`` event per mutating admin request."""
    if not request.path.startswith(ADMIN_PREFIX) or request.method.upper() in READS:
        return
    who = principal(request)
    route = request.route
    log.info(
        "operator_action",
        actor=None if who is None else who.name,
        role=None if who is None else who.role.value,
        action=action_of(request.method.upper(), None if route is None else route.path),
        service=request.match_info.get("name"),
        instance=request.match_info.get("instance_id"),
        reason=_reason(request),
        outcome=response.status,
        origin=request.remote_addr or request.ip,
        user_agent=request.headers.get("user-agent"),
    )
