"""Every HTTP error as the standard JSON body, never an HTML page."""

from __future__ import annotations

import json as jsonlib

import structlog
from sanic import HTTPResponse, Request, json
from sanic.exceptions import SanicException

log = structlog.get_logger("aegis.router.http")

UNAUTHORIZED = (
    "UNAUTHORIZED: the router takes tokens (AEGIS_TOKENS_FILE or AEGIS_ADMIN_TOKEN) and the "
    "bearer token is missing or unknown."
)
FORBIDDEN = (
    "FORBIDDEN: the token's role is `read`; this action needs role `operator`. The message "
    "names the token (never its secret)."
)
INTERNAL = "INTERNAL_ERROR: the router failed; details are in its log."


def quoted(value: object) -> str:
    """``value`` as JSON writes it, for a message in a JSON API: "DEAD", not 'DEAD'."""
    return jsonlib.dumps(value, ensure_ascii=False, default=str)


class ApiException(SanicException):
    """An error with a stable ``code`` rendered as the standard JSON error body."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, status_code=status, headers=headers)
        self.code = code


def instance_not_found(name: str, instance_id: str, which: str = "") -> ApiException:
    """404 ``INSTANCE_NOT_FOUND`` for a path's instance (``which``: "live ", say)."""
    return ApiException(
        404,
        "INSTANCE_NOT_FOUND",
        f"no {which}instance {quoted(instance_id)} of service {quoted(name)} is registered",
    )


# Sanic's own exceptions carry no code; name them after their status.
_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
}


def _allowed_methods(request: Request) -> list[str]:
    allowed = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        try:
            request.app.router.get(request.path, method, request.headers.get("host"))
        except SanicException:
            continue
        allowed.append(method)
    return allowed


async def json_error(request: Request, exc: Exception) -> HTTPResponse:
    """Render any exception as ``{"error": {code, message}}`` with its status."""
    if isinstance(exc, SanicException):
        status = exc.status_code
        code = getattr(exc, "code", None) or _CODES.get(status, f"HTTP_{status}")
        message = str(exc) or code
        headers = dict(getattr(exc, "headers", None) or {})
        if status == 405 and "Allow" not in headers:
            # RFC 9110: a 405 names what is allowed; Sanic's router leaves it out here.
            headers["Allow"] = ", ".join(_allowed_methods(request))
    else:
        log.exception("http_unhandled_error", path=request.path, method=request.method)
        status, code, message, headers = 500, "INTERNAL_ERROR", "internal router error", {}
    return json({"error": {"code": code, "message": message}}, status=status, headers=headers)
