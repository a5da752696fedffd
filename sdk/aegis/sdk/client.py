"""``ServiceClient``: what a service uses to register itself and find others."""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType, TracebackType
from typing import Any, Self

from aegis.connect.backoff import backoff_delay
from aegis.connect.connection import ConnectFailedError, ConnectRejectedError, connect
from aegis.connect.log import get_logger
from aegis.wire.codec import pack, unpack
from aegis.wire.messages import (
    DEREGISTER_SUBJECT,
    DISCOVER_SUBJECT,
    HEARTBEAT_SUBJECT,
    REGISTER_SUBJECT,
    REQUEST_ID_HEADER,
    DiscoverRequest,
    Instance,
    InstanceRequest,
    RegisterRequest,
    Reply,
    error_details,
)
from nats import errors as nats_errors
from nats.aio.client import Client as NatsClient
from pydantic import ValidationError

from .config import ClientConfig
from .errors import (
    AegisError,
    CircuitOpenError,
    DuplicateInstanceError,
    InstanceNotFoundError,
    LimitExceededError,
    RegistrationValidationError,
    RequestTimeoutError,
    RouterError,
    ServiceUnavailableError,
    SessionMismatchError,
)
from .registrations import DEFAULT_HEARTBEAT_INTERVAL, RegisteredInstance, RegistrationState
from .resilience import CircuitBreaker
from .watch import EventStream

log = get_logger("aegis.sdk")

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
# The router's sweeper applies a passed deadline within one tick (<= 1 s).
TAKEOVER_MARGIN = 0.5
# Deregistrations on close get one short try each: closing must not hang.
CLOSE_TIMEOUT = 2.0

Key = tuple[str, str]


class ServiceClient:
    """Registers service instances with an AegisIPC router over NATS and keeps them alive.

    Use as ``async with ServiceClient(nats_url=...) as client:``. One client
    has one random session id; the router ties every instance this client
    registers to it, so a retried registration is answered 200, not 409, and
    nobody else can heartbeat or deregister them. Each registered instance
    gets a background heartbeat at the router's interval; leaving the
    ``async with`` block deregisters them all.

    ``nats_url`` is one server, several comma-separated
    (``"nats://a:4222,nats://b:4222"``, as ``AEGIS_NATS_URL`` takes them) or a list.
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
        self._registrations: dict[Key, RegisteredInstance] = {}
        self._heartbeats: dict[Key, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._streams: set[EventStream] = set()
        self._stopping = asyncio.Event()

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

    @property
    def instances(self) -> Mapping[Key, RegisteredInstance]:
        """This client's instances by ``(service_name, instance_id)``, with their state."""
        return MappingProxyType(self._registrations)

    async def connect(self) -> None:
        """Connect to NATS (retried with backoff); ``ServiceUnavailableError`` if it cannot.

        The error's code is ``NATS_AUTH_FAILED`` when NATS refused the credentials
        or TLS did not verify, else ``NATS_UNREACHABLE``. A ``config.auth`` naming
        a missing file raises ``ValueError`` at once.
        """
        if self._nc is not None and not self._nc.is_closed:
            return
        cfg = self.config
        self._stopping = asyncio.Event()
        try:
            self._nc = await connect(
                self.nats_url,
                name=self._name,
                attempts=cfg.retries + 1,
                connect_timeout=cfg.connect_timeout,
                backoff_base=cfg.backoff_base,
                backoff_max=cfg.backoff_max,
                jitter=cfg.jitter,
                reconnected_cb=self._on_reconnected,
                auth=cfg.auth,
            )
        except ConnectRejectedError as exc:
            raise ServiceUnavailableError(str(exc), code="NATS_AUTH_FAILED") from exc
        except ConnectFailedError as exc:
            raise ServiceUnavailableError(str(exc), code="NATS_UNREACHABLE") from exc

    async def close(self) -> None:
        """Stop heartbeats, deregister every instance (one short try each), close NATS."""
        self._stopping.set()
        tasks = [*self._heartbeats.values(), *self._background]
        self._heartbeats.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for stream in list(self._streams):
            await stream.close()
        self._streams.clear()
        nc, self._nc = self._nc, None
        if nc is None or nc.is_closed:
            return
        await asyncio.gather(*(self._leave(nc, reg) for reg in self._registrations.values()))
        self._registrations.clear()
        await nc.drain()

    async def _leave(self, nc: NatsClient, reg: RegisteredInstance) -> None:
        try:
            await _send(nc, DEREGISTER_SUBJECT, self._owner_payload(reg), CLOSE_TIMEOUT)
            reg.state = RegistrationState.DEREGISTERED
        except AegisError as exc:
            log.warning(
                "deregister_on_close_failed",
                service=reg.service_name,
                instance=reg.instance_id,
                error=str(exc),
            )

    async def register(
        self,
        service_name: str,
        instance_id: str,
        metadata: dict[str, Any] | None = None,
        *,
        wait_if_taken: float = 0.0,
    ) -> Instance:
        """Register one instance, start its heartbeats, and return it as the router stored it.

        ``wait_if_taken``: if the instance id is still held by a stale
        registration (say, this service's previous run that crashed), wait up
        to this many seconds for it to expire and take it over, instead of
        failing with 409 at once.

        Raises ``RegistrationValidationError`` (400) before sending anything if
        the request breaks the contract, ``DuplicateInstanceError`` (409) if the
        instance is live under another session, ``RequestTimeoutError`` (504),
        ``ServiceUnavailableError`` (503) or ``CircuitOpenError`` otherwise.
        """
        request = _validated(
            RegisterRequest,
            service_name=service_name,
            instance_id=instance_id,
            metadata=metadata or {},
            timestamp=datetime.now(UTC).isoformat(),
            session_id=self.session_id,
        )
        payload = pack(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_if_taken
        while True:
            try:
                reply = await self._request(REGISTER_SUBJECT, payload)
                break
            except DuplicateInstanceError as exc:
                wait = (exc.retry_after or 0.0) + TAKEOVER_MARGIN
                if exc.retry_after is None or loop.time() + wait > deadline:
                    raise
                log.info(
                    "waiting_for_stale_registration",
                    service=service_name,
                    instance=instance_id,
                    seconds=round(wait, 3),
                )
                await asyncio.sleep(wait)
        instance = _instance_of(reply)
        self._keep_alive(request.metadata, instance, reply.heartbeat_interval)
        return instance

    async def deregister(self, service_name: str, instance_id: str) -> Instance | None:
        """Stop heartbeating and take the instance OFFLINE; None if the router did not know it."""
        key = (service_name, instance_id)
        task = self._heartbeats.pop(key, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        reg = self._registrations.pop(key, None)
        payload = pack(
            _validated(
                InstanceRequest,
                service_name=service_name,
                instance_id=instance_id,
                session_id=self.session_id,
            )
        )
        try:
            reply = await self._request(DEREGISTER_SUBJECT, payload)
        except InstanceNotFoundError:
            return None
        if reg is not None:
            reg.state = RegistrationState.DEREGISTERED
        return _instance_of(reply)

    async def discover(self, service_name: str, status: str = "ONLINE") -> list[Instance]:
        """Instances of a service in ``status`` (ONLINE, UNHEALTHY, OFFLINE or ANY)."""
        request = _validated(DiscoverRequest, service_name=service_name, status=status)
        reply = await self._request(DISCOVER_SUBJECT, pack(request))
        return list(reply.instances or [])

    def watch(self, service_name: str | None = None) -> EventStream:
        """Change events of ``service_name`` (None: every service) as they happen."""
        if self._nc is None or self._nc.is_closed:
            raise ServiceUnavailableError(
                "client is not connected; use 'async with ServiceClient(...)'",
                code="NOT_CONNECTED",
            )
        stream = EventStream(self._nc, service_name)
        self._streams.add(stream)
        return stream

    # -- heartbeats -----------------------------------------------------------

    def _keep_alive(
        self, metadata: dict[str, Any], instance: Instance, interval: float | None
    ) -> None:
        key = (instance.service_name, instance.instance_id)
        reg = self._registrations.get(key)
        if reg is None:
            reg = RegisteredInstance(
                instance.service_name, instance.instance_id, metadata, instance
            )
            self._registrations[key] = reg
        reg.instance = instance
        reg.heartbeat_interval = interval or DEFAULT_HEARTBEAT_INTERVAL
        reg.state = RegistrationState.REGISTERED
        reg.last_contact_at = datetime.now(UTC)
        reg.last_error = None
        if key not in self._heartbeats:
            self._heartbeats[key] = asyncio.create_task(
                self._heartbeat_loop(reg), name=f"aegis-heartbeat-{key[0]}-{key[1]}"
            )

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds``; True if the client started closing meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    async def _heartbeat_loop(self, reg: RegisteredInstance) -> None:
        """Heartbeat forever; never raises into the service, failures are logged and kept."""
        payload = self._owner_payload(reg)
        while not await self._pause(reg.heartbeat_interval):
            nc = self._nc
            if nc is None:
                return
            try:
                timeout = min(self.config.timeout, reg.heartbeat_interval)
                reply = await _send(nc, HEARTBEAT_SUBJECT, payload, timeout)
            except AegisError as exc:
                self._failed(reg, "heartbeat_failed", str(exc))
                continue
            if reply.ok and reply.instance is not None:
                reg.instance = reply.instance
                reg.state = RegistrationState.REGISTERED
                reg.last_contact_at = datetime.now(UTC)
                reg.last_error, reg.failures = None, 0
            elif reply.status in (403, 404):
                # Forgotten (router restarted, instance expired) or taken: register again.
                log.warning(
                    "heartbeat_rejected",
                    service=reg.service_name,
                    instance=reg.instance_id,
                    status=reply.status,
                )
                await self._reregister(reg)
            else:
                self._failed(reg, "heartbeat_failed", _message(reply))

    async def _reregister(self, reg: RegisteredInstance) -> None:
        """Register ``reg`` again after a random pause, so a fleet does not stampede."""
        reg.state = RegistrationState.REREGISTERING
        if await self._pause(random.uniform(0, reg.heartbeat_interval)):  # noqa: S311
            return
        nc = self._nc
        if nc is None:
            return
        request = _validated(
            RegisterRequest,
            service_name=reg.service_name,
            instance_id=reg.instance_id,
            metadata=reg.metadata,
            timestamp=datetime.now(UTC).isoformat(),
            session_id=self.session_id,
        )
        try:
            reply = await _send(nc, REGISTER_SUBJECT, pack(request), self.config.timeout)
        except AegisError as exc:
            self._failed(reg, "reregister_failed", str(exc))
            return
        if reply.ok and reply.instance is not None:
            self._keep_alive(reg.metadata, reply.instance, reply.heartbeat_interval)
            log.info("reregistered", service=reg.service_name, instance=reg.instance_id)
        else:
            self._failed(reg, "reregister_failed", _message(reply))

    def _failed(self, reg: RegisteredInstance, event: str, error: str) -> None:
        reg.failures += 1
        reg.last_error = error
        if reg.state is RegistrationState.REGISTERED:
            reg.state = RegistrationState.RETRYING
        log.warning(
            event,
            service=reg.service_name,
            instance=reg.instance_id,
            error=error,
            failures=reg.failures,
        )

    async def _on_reconnected(self) -> None:
        """NATS came back (maybe a new server, maybe a restarted router): re-register all."""
        log.info("nats_reconnected", instances=len(self._registrations))
        for reg in list(self._registrations.values()):
            task = asyncio.create_task(self._reregister(reg))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _owner_payload(self, reg: RegisteredInstance) -> bytes:
        return pack(
            InstanceRequest(
                service_name=reg.service_name,
                instance_id=reg.instance_id,
                session_id=self.session_id,
            )
        )

    # -- requests -------------------------------------------------------------

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
            reply = await self._send_with_retries(self._nc, subject, payload)
        except AegisError:
            self._breaker.record_failure()
            raise
        except BaseException:
            self._breaker.abandon()  # cancelled: no verdict on the router
            raise
        self._breaker.record_success()
        return _check(reply)

    async def _send_with_retries(self, nc: NatsClient, subject: str, payload: bytes) -> Reply:
        """The decoded reply; retried with backoff when no reply could come or the router
        answered 503 (a retry is safe: the session makes registration idempotent)."""
        cfg = self.config
        request_id = uuid.uuid4().hex  # one id for every retry of this call
        for attempt in range(cfg.retries + 1):
            if attempt:
                delay = backoff_delay(
                    attempt - 1, base=cfg.backoff_base, cap=cfg.backoff_max, jitter=cfg.jitter
                )
                log.debug(
                    "request_retry",
                    subject=subject,
                    attempt=attempt,
                    delay=delay,
                    request_id=request_id,
                )
                await asyncio.sleep(delay)
            try:
                reply = await _send(nc, subject, payload, cfg.timeout, request_id)
            except (ServiceUnavailableError, RequestTimeoutError) as exc:
                failure: AegisError = exc
                continue
            if reply.status != 503:
                return reply
            # The router is up but its store is not (e.g. a JetStream leader election).
            error_code = reply.error.code if reply.error else None
            failure = ServiceUnavailableError(_message(reply), code=error_code)
        raise failure


async def _send(
    nc: NatsClient,
    subject: str,
    payload: bytes,
    reply_within: float,
    request_id: str | None = None,
) -> Reply:
    """One request; transport failures as typed errors, the reply decoded but unchecked.

    The request id travels in a NATS header, so the router's log lines for it
    carry the same id as the client's.
    """
    headers = {REQUEST_ID_HEADER: request_id or uuid.uuid4().hex}
    try:
        msg = await nc.request(subject, payload, timeout=reply_within, headers=headers)
    except nats_errors.NoRespondersError as exc:
        raise ServiceUnavailableError(
            f"no router is listening on {subject}", code="NO_RESPONDERS"
        ) from exc
    except (TimeoutError, nats_errors.TimeoutError) as exc:
        raise RequestTimeoutError(
            f"no reply on {subject} within {reply_within}s", code="TIMEOUT"
        ) from exc
    except nats_errors.Error as exc:  # connection closed, draining, buffer full
        raise ServiceUnavailableError(f"NATS request failed: {exc!r}", code="NATS") from exc
    return _decode(msg.data)


def _validated(model: type[Any], **fields: Any) -> Any:
    """Build a wire model, or raise the SDK's 400 with the same details the router gives."""
    try:
        return model(**fields)
    except ValidationError as exc:
        raise RegistrationValidationError("request failed validation", error_details(exc)) from exc


def _instance_of(reply: Reply) -> Instance:
    if reply.instance is None:
        raise RouterError(f"router answered {reply.status} without an instance", 502)
    return reply.instance


def _decode(data: bytes) -> Reply:
    try:
        return Reply.model_validate(unpack(data))
    except Exception as exc:
        raise RouterError(f"undecodable reply from router: {exc!r:.200}", 502) from exc


def _message(reply: Reply) -> str:
    return reply.error.message if reply.error else f"router answered {reply.status}"


def _check(reply: Reply) -> Reply:
    """Return a successful reply; raise the typed error of a failed one."""
    if reply.ok:
        return reply
    error = reply.error
    message = _message(reply)
    code = error.code if error else None
    if reply.status == 400:
        details = (error.details if error else None) or []
        raise RegistrationValidationError(message, details, code=code)
    if reply.status == 409:
        raise DuplicateInstanceError(
            message, reply.existing, code=code, retry_after=reply.retry_after
        )
    if reply.status == 403:
        raise SessionMismatchError(message, code=code)
    if reply.status == 429:
        raise LimitExceededError(message, code=code)
    if reply.status == 404:
        raise InstanceNotFoundError(message, code=code)
    if reply.status == 503:
        raise ServiceUnavailableError(message, code=code)
    raise RouterError(message, reply.status, code=code)
