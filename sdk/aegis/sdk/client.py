"""``ServiceClient``: what a service uses to register itself with the router."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import msgpack
import structlog
from nats import errors as nats_errors
from nats.aio.client import Client as NatsClient
from pydantic import ValidationError

from .config import ClientConfig
from .connection import ConnectFailedError, connect
from .errors import (
    AegisError,
    CircuitOpenError,
    DuplicateInstanceError,
    RegistrationValidationError,
    RequestTimeoutError,
    RouterError,
    ServiceUnavailableError,
)
from .models import REGISTER_SUBJECT, Instance, RegisterRequest, Reply, error_details
from .resilience import CircuitBreaker, backoff_delay

log = structlog.get_logger("aegis.sdk")

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


class ServiceClient:
    """Registers service instances with an AegisIPC router over NATS.

    Use as ``async with ServiceClient(nats_url=...) as client:``. One client
    has one random session id; the router ties every instance this client
    registers to it, so a retried registration is answered 200, not 409.
    """

    def __init__(
        self,
        nats_url: str | Sequence[str] = DEFAULT_NATS_URL,
        config: ClientConfig | None = None,
        *,
        name: str = "aegis-sdk",
    ) -> None:
        self.nats_url = nats_url
        self.config = config or ClientConfig()
        self.session_id = secrets.token_urlsafe(18)
        self._name = name
        self._nc: NatsClient | None = None
        self._breaker = CircuitBreaker(self.config.breaker_threshold, self.config.breaker_cooldown)

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect to NATS (retried with backoff); ``ServiceUnavailableError`` if it cannot."""
        if self._nc is not None and not self._nc.is_closed:
            return
        cfg = self.config
        try:
            self._nc = await connect(
                self.nats_url,
                name=self._name,
                attempts=cfg.retries + 1,
                connect_timeout=cfg.connect_timeout,
                backoff_base=cfg.backoff_base,
                backoff_max=cfg.backoff_max,
                jitter=cfg.jitter,
            )
        except ConnectFailedError as exc:
            raise ServiceUnavailableError(str(exc), code="NATS_UNREACHABLE") from exc

    async def close(self) -> None:
        """Flush and close the NATS connection."""
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            await nc.drain()

    async def register(
        self,
        service_name: str,
        instance_id: str,
        metadata: dict[str, Any] | None = None,
    ) -> Instance:
        """Register one instance and return it as the router stored it.

        Raises ``RegistrationValidationError`` (400) before sending anything if
        the request breaks the contract, ``DuplicateInstanceError`` (409) if the
        instance is live under another session, ``RequestTimeoutError`` (504),
        ``ServiceUnavailableError`` (503) or ``CircuitOpenError`` otherwise.
        """
        try:
            request = RegisterRequest(
                service_name=service_name,
                instance_id=instance_id,
                metadata=metadata or {},
                timestamp=datetime.now(UTC).isoformat(),
                session_id=self.session_id,
            )
        except ValidationError as exc:
            raise RegistrationValidationError(
                "request failed validation", error_details(exc)
            ) from exc
        payload = msgpack.packb(request.model_dump(mode="json", exclude_none=True))
        reply = await self._request(REGISTER_SUBJECT, payload)
        log.debug("registered", service=service_name, instance=instance_id, status=reply.status)
        if reply.instance is None:
            raise RouterError(f"router answered {reply.status} without an instance", 502)
        return reply.instance

    async def _request(self, subject: str, payload: bytes) -> Reply:
        """Send with retries on transport failures only; raise on an error reply."""
        if self._nc is None or self._nc.is_closed:
            raise ServiceUnavailableError(
                "client is not connected; use 'async with ServiceClient(...)'",
                code="NOT_CONNECTED",
            )
        if not self._breaker.allow():
            raise CircuitOpenError(
                f"circuit open after repeated failures; next try in "
                f"{self._breaker.retry_after():.1f}s",
                code="CIRCUIT_OPEN",
            )
        try:
            data = await self._send_with_retries(self._nc, subject, payload)
        except AegisError:
            self._breaker.record_failure()
            raise
        except BaseException:
            self._breaker.abandon()  # cancelled: no verdict on the router
            raise
        self._breaker.record_success()
        return _check(_decode(data))

    async def _send_with_retries(self, nc: NatsClient, subject: str, payload: bytes) -> bytes:
        """The reply's bytes; retried with backoff when no reply could come."""
        cfg = self.config
        failure: AegisError | None = None
        for attempt in range(cfg.retries + 1):
            if attempt:
                delay = backoff_delay(
                    attempt - 1, base=cfg.backoff_base, cap=cfg.backoff_max, jitter=cfg.jitter
                )
                log.debug("request_retry", subject=subject, attempt=attempt, delay=delay)
                await asyncio.sleep(delay)
            try:
                msg = await nc.request(subject, payload, timeout=cfg.timeout)
            except nats_errors.NoRespondersError:
                failure = ServiceUnavailableError(
                    f"no router is listening on {subject}", code="NO_RESPONDERS"
                )
            except (TimeoutError, nats_errors.TimeoutError):
                failure = RequestTimeoutError(
                    f"no reply on {subject} within {cfg.timeout}s", code="TIMEOUT"
                )
            except nats_errors.Error as exc:  # connection closed, draining, buffer full
                failure = ServiceUnavailableError(f"NATS request failed: {exc!r}", code="NATS")
            else:
                data: bytes = msg.data
                return data
        assert failure is not None  # the loop runs at least once
        raise failure


def _decode(data: bytes) -> Reply:
    try:
        return Reply.model_validate(msgpack.unpackb(data, raw=False))
    except Exception as exc:
        raise RouterError(f"undecodable reply from router: {exc!r:.200}", 502) from exc


def _check(reply: Reply) -> Reply:
    """Return a successful reply; raise the typed error of a failed one."""
    if reply.ok:
        return reply
    error = reply.error
    message = error.message if error else f"router answered {reply.status}"
    code = error.code if error else None
    if reply.status == 400:
        details = (error.details if error else None) or []
        raise RegistrationValidationError(message, details, code=code)
    if reply.status == 409:
        raise DuplicateInstanceError(message, reply.existing, code=code)
    if reply.status == 503:
        raise ServiceUnavailableError(message, code=code)
    raise RouterError(message, reply.status, code=code)
