"""Turns one raw ``ipc.service.register`` body into one reply body.

Pure of NATS: takes bytes, returns bytes, never raises, so every request gets
an answer whatever it holds.
"""

from __future__ import annotations

from typing import Any

import msgpack
import structlog
from aegis.sdk.models import (
    ErrorBody,
    ErrorCode,
    ErrorDetail,
    RegisterRequest,
    Reply,
    error_details,
)
from pydantic import ValidationError

from .domain import Outcome
from .registry import Registry
from .store import StoreError

log = structlog.get_logger("aegis.router.register")

_STATUS_BY_OUTCOME = {Outcome.CREATED: 201, Outcome.RENEWED: 200, Outcome.DUPLICATE: 409}


def encode(reply: Reply) -> bytes:
    """MessagePack bytes of a reply; absent members are left out."""
    packed: bytes = msgpack.packb(reply.model_dump(mode="json", exclude_none=True))
    return packed


def error_reply(
    status: int,
    code: ErrorCode,
    message: str,
    details: list[ErrorDetail] | None = None,
    **extra: Any,
) -> Reply:
    """A failed reply with the standard error body."""
    error = ErrorBody(code=code, message=message, details=details)
    return Reply(ok=False, status=status, error=error, **extra)


def decode_request(data: bytes, max_request_bytes: int) -> dict[str, Any] | Reply:
    """The request's map, or the error reply that explains why there is none."""
    if len(data) > max_request_bytes:
        return error_reply(
            413,
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"request is {len(data)} bytes; the limit is {max_request_bytes}",
        )
    try:
        body = msgpack.unpackb(data, raw=False)
    except Exception as exc:  # msgpack raises many types for bad input
        return error_reply(
            400, ErrorCode.MALFORMED_PAYLOAD, f"body is not valid MessagePack: {exc!s:.200}"
        )
    if not isinstance(body, dict):
        return error_reply(
            400,
            ErrorCode.MALFORMED_PAYLOAD,
            f"body must be a MessagePack map, got {type(body).__name__}",
        )
    return body


class RegisterHandler:
    """Decodes, validates, registers, and encodes the reply; logs each outcome once."""

    def __init__(
        self, registry: Registry, *, max_request_bytes: int, max_metadata_bytes: int
    ) -> None:
        self._registry = registry
        self._max_request_bytes = max_request_bytes
        self._context = {"max_metadata_bytes": max_metadata_bytes}

    async def __call__(self, data: bytes) -> bytes:
        """The reply to one request body. Never raises."""
        try:
            reply = await self._reply(data)
        except Exception:
            log.exception("registration", result="error")
            reply = error_reply(500, ErrorCode.INTERNAL_ERROR, "internal router error")
        return encode(reply)

    async def _reply(self, data: bytes) -> Reply:
        body = decode_request(data, self._max_request_bytes)
        if isinstance(body, Reply):
            result = "too_large" if body.status == 413 else "malformed"
            log.info("registration", result=result)
            return body
        try:
            request = RegisterRequest.model_validate(body, context=self._context)
        except ValidationError as exc:
            details = error_details(exc)
            log.info(
                "registration",
                result="invalid",
                service=_loggable(body.get("service_name")),
                instance=_loggable(body.get("instance_id")),
                errors=[{"loc": d.loc, "type": d.type} for d in details],
            )
            return error_reply(
                400, ErrorCode.VALIDATION_ERROR, "request failed validation", details
            )
        try:
            decision = await self._registry.register(request)
        except StoreError as exc:
            log.warning(
                "registration",
                result="store_unavailable",
                service=request.service_name,
                instance=request.instance_id,
                reason=str(exc),
            )
            return error_reply(503, ErrorCode.STORE_UNAVAILABLE, "registry store unavailable")
        except Exception:
            log.exception(
                "registration",
                result="error",
                service=request.service_name,
                instance=request.instance_id,
            )
            return error_reply(500, ErrorCode.INTERNAL_ERROR, "internal router error")
        status = _STATUS_BY_OUTCOME[decision.outcome]
        log.info(
            "registration",
            result=decision.outcome.value,
            service=request.service_name,
            instance=request.instance_id,
            status=status,
        )
        instance = decision.record.to_public()
        if decision.outcome is Outcome.DUPLICATE:
            return error_reply(
                409,
                ErrorCode.DUPLICATE_INSTANCE,
                f"instance {request.instance_id!r} of {request.service_name!r} is already "
                "registered by another session",
                existing=instance,
            )
        return Reply(ok=True, status=status, instance=instance)


def _loggable(value: object) -> str | None:
    """A request field as it may appear in a log line: short strings only."""
    return value[:128] if isinstance(value, str) else None
