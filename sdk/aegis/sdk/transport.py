"""Talking to the router over NATS: the connection, one try, and a call one can rely on.

``Transport.send`` is one request: transport failures become typed errors and
the reply comes back decoded but unchecked (heartbeats read it themselves).
``Transport.request`` is what the facade calls: a request id in a NATS header
(the same on every retry, so the router's log lines match the client's),
retries with backoff only when no reply could come or the router answered
503, a circuit breaker around the whole call, and ``errors.from_reply``.

A request NATS refuses to carry (a permissions violation: these credentials
may not publish on the subject) gets no reply and no error on the request
itself: nats-py hears the server's ``-ERR`` in its read loop and hands it to
the connection's error callback, asynchronously. ``Transport`` keeps each
waiting request's task under its subject; the error callback reads the
subject from the error and cancels the tasks waiting on it, which then raise
``PermissionDeniedError`` at once instead of timing out and retrying (the
same cancel-and-uncancel asyncio's own ``timeout`` uses).
"""

from __future__ import annotations

import asyncio
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from aegis.connect.backoff import backoff_delay
from aegis.connect.connection import ConnectFailedError, ConnectRejectedError, connect
from aegis.connect.log import get_logger
from aegis.wire.codec import pack, unpack
from aegis.wire.messages import (
    REQUEST_ID_HEADER,
    SHARED_SUBJECTS,
    ErrorCode,
    Instance,
    Reply,
    service_subject,
    subject_service,
)
from nats import errors as nats_errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import BaseModel

from .config import ClientConfig
from .errors import (
    AegisError,
    CircuitOpenError,
    PermissionDeniedError,
    RequestTimeoutError,
    RouterError,
    ServiceUnavailableError,
    from_reply,
)
from .resilience import CircuitBreaker

log = get_logger("aegis.sdk.transport")

Sleep = Callable[[float], Awaitable[None]]
WallClock = Callable[[], datetime]
Monotonic = Callable[[], float]
Rand = Callable[[], float]
Callback = Callable[[], Awaitable[None]]

# How nats-py reports the server's -ERR 'Permissions Violation for Publish to "<subject>"'
# (its parser lowercases the whole line; NATS subjects are case-sensitive).
_PUBLISH_DENIED = re.compile(r'permissions violation for publish to "([^"]+)"', re.IGNORECASE)


def denied_subject(error: BaseException) -> str | None:
    """The subject a NATS publish permissions violation names (lowercased by nats-py);
    None for any other error."""
    found = _PUBLISH_DENIED.search(str(error))
    return found.group(1) if found else None


def utc_now() -> datetime:
    """The wall time in UTC (the production ``clock``)."""
    return datetime.now(UTC)


class Message(Protocol):
    """A reply message: only its body is read."""

    data: bytes


class NatsConnection(Protocol):
    """The part of a nats-py ``Client`` the SDK uses (a fake in tests)."""

    @property
    def is_closed(self) -> bool:
        """True once closed for good (not while reconnecting)."""

    async def request(
        self,
        subject: str,
        payload: bytes,
        reply_within: float,
        /,
        *,
        headers: dict[str, Any] | None,
    ) -> Message:
        """Publish and wait ``reply_within`` seconds for one reply."""

    async def subscribe(
        self, subject: str, *, cb: Callable[[Msg], Awaitable[None]]
    ) -> Subscription:
        """Deliver each message on ``subject`` to ``cb``."""

    async def flush(self) -> None:
        """Wait until the server has seen everything sent so far."""

    async def drain(self) -> None:
        """Finish in-flight work, then close."""


# Called like ``aegis.connect.connection.connect`` (its keyword arguments).
Connector = Callable[..., Awaitable[NatsConnection]]


class Transport:
    """One NATS connection to the router, with retries and a circuit breaker.

    ``connect`` opens the connection (default ``aegis.connect``'s bounded,
    backed-off connect); ``sleep`` waits between retries, ``monotonic`` times
    the breaker and ``rand`` jitters the backoff, so tests can inject all four.
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        connect: Connector = connect,
        sleep: Sleep = asyncio.sleep,
        monotonic: Monotonic = time.monotonic,
        rand: Rand = random.random,
    ) -> None:
        self.config = config
        self._connect = connect
        self._sleep = sleep
        self._rand = rand
        self._nc: NatsConnection | None = None
        self._breaker = CircuitBreaker(
            config.breaker_threshold, config.breaker_cooldown, clock=monotonic
        )
        # Requests waiting for a reply, by subject as nats-py reports a denied one
        # (lowercased), and those a permissions violation cancelled, with the subject.
        self._waiting: dict[str, set[asyncio.Task[Any]]] = {}
        self._denied: dict[asyncio.Task[Any], str] = {}

    def subject(self, verb: str, service_name: str) -> str:
        """Where a ``verb`` request about ``service_name`` goes: its per-service subject, or
        with ``config.shared_subjects`` the v1 shared one."""
        if self.config.shared_subjects:
            return SHARED_SUBJECTS[verb]
        return service_subject(service_name, verb)

    @property
    def connected(self) -> bool:
        """True while there is a connection that is not closed for good."""
        return self._nc is not None and not self._nc.is_closed

    def connection(self) -> NatsConnection:
        """The open connection; ``ServiceUnavailableError`` (``NOT_CONNECTED``) without one."""
        if self._nc is None or self._nc.is_closed:
            raise ServiceUnavailableError(
                "client is not connected; use 'async with ServiceClient(...)'",
                code="NOT_CONNECTED",
            )
        return self._nc

    async def open(
        self, servers: str | Sequence[str], *, name: str, on_reconnect: Callback
    ) -> None:
        """Connect unless connected; ``on_reconnect`` runs after each NATS reconnection.

        Raises ``ServiceUnavailableError`` with code ``NATS_AUTH_FAILED`` when NATS
        refused the credentials or TLS did not verify, else ``NATS_UNREACHABLE``.
        """
        if self.connected:
            return
        cfg = self.config
        try:
            self._nc = await self._connect(
                servers,
                name=name,
                attempts=cfg.retries + 1,
                connect_timeout=cfg.connect_timeout,
                backoff_base=cfg.backoff_base,
                backoff_max=cfg.backoff_max,
                jitter=cfg.jitter,
                reconnected_cb=on_reconnect,
                error_cb=self._nats_error,
                auth=cfg.auth,
            )
        except ConnectRejectedError as exc:
            raise ServiceUnavailableError(str(exc), code="NATS_AUTH_FAILED") from exc
        except ConnectFailedError as exc:
            raise ServiceUnavailableError(str(exc), code="NATS_UNREACHABLE") from exc

    async def _nats_error(self, error: Exception) -> None:
        """nats-py's error callback: a publish permissions violation fails the requests
        waiting on its subject at once; anything else is only logged."""
        subject = denied_subject(error)
        if subject is None:
            log.debug("nats_error", error=repr(error))
            return
        waiting = self._waiting.get(subject.lower(), ())
        log.warning("nats_permission_denied", subject=subject, waiting=len(waiting))
        for task in waiting:
            if task not in self._denied:
                self._denied[task] = subject
                task.cancel()

    async def close(self) -> None:
        """Drain and forget the connection."""
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            await nc.drain()

    async def send(
        self, subject: str, body: BaseModel, reply_within: float, request_id: str | None = None
    ) -> Reply:
        """One try: the decoded reply, unchecked; no reply at all as a typed error."""
        return await self._send(subject, pack(body), reply_within, request_id or uuid.uuid4().hex)

    async def request(self, subject: str, body: BaseModel) -> Reply:
        """A successful reply, or the typed error: retried, guarded by the breaker."""
        self.connection()  # fail at once, and not as a breaker failure, when not connected
        if not self._breaker.allow():
            raise CircuitOpenError(
                f"circuit open after repeated failures; next try in "
                f"{self._breaker.retry_after():.1f}s",
                code="CIRCUIT_OPEN",
            )
        try:
            reply = await self._with_retries(subject, pack(body))
        except AegisError as exc:
            if exc.code == ErrorCode.OVERLOADED or isinstance(exc, PermissionDeniedError):
                # The router answered, busy, or NATS refused the request before any
                # router saw it: no verdict on the router's health, so heartbeats
                # (which it always answers first) are not cut off by the breaker.
                self._breaker.abandon()
            else:
                self._breaker.record_failure()
            raise
        except BaseException:
            self._breaker.abandon()  # cancelled: no verdict on the router
            raise
        self._breaker.record_success()
        error = from_reply(reply)
        if error is not None:
            raise error
        return reply

    async def _with_retries(self, subject: str, payload: bytes) -> Reply:
        """Retried with backoff when no reply could come or the router answered 503
        (safe: the client's session makes a repeated registration idempotent); after
        a 503 with ``retry_after`` (OVERLOADED), that long times 1 to 1.1 instead: the
        router spaces the refused callers' returns at the pace it serves."""
        cfg = self.config
        request_id = uuid.uuid4().hex  # one id for every retry of this call
        failure: AegisError | None = None
        advised: float | None = None
        for attempt in range(cfg.retries + 1):
            if attempt:
                if advised is not None:
                    # The router's advice is an appointment (its next free slot):
                    # a little jitter, not the backoff's, keeps it.
                    delay = advised * (1.0 + 0.1 * self._rand())
                else:
                    delay = backoff_delay(
                        attempt - 1,
                        base=cfg.backoff_base,
                        cap=cfg.backoff_max,
                        jitter=cfg.jitter,
                        rand=self._rand,
                    )
                log.debug(
                    "request_retry",
                    subject=subject,
                    attempt=attempt,
                    delay=delay,
                    request_id=request_id,
                )
                await self._sleep(delay)
            try:
                reply = await self._send(subject, payload, cfg.timeout, request_id)
            except (ServiceUnavailableError, RequestTimeoutError) as exc:
                failure, advised = exc, None
                continue
            if reply.ok or reply.status != 503:
                return reply
            # The router is up but its store is not (e.g. a JetStream leader
            # election), or it is at capacity and says when to come back.
            failure = from_reply(reply)
            advised = reply.retry_after
        assert failure is not None  # the loop runs at least once
        raise failure

    async def _send(
        self, subject: str, payload: bytes, reply_within: float, request_id: str
    ) -> Reply:
        headers = {REQUEST_ID_HEADER: request_id}
        nc = self.connection()
        try:
            msg = await self._denial_watched(nc, subject, payload, reply_within, headers)
        except nats_errors.NoRespondersError as exc:
            # Most often the router is stopped or restarting: that comes first.
            hint = "is one running?"
            if subject_service(subject) is not None:
                hint += (
                    " A router older than wire contract v1.2 answers only the shared "
                    "ipc.service.* subjects: ClientConfig(shared_subjects=True) uses those"
                )
            raise ServiceUnavailableError(
                f"no router is listening on {subject} ({hint})", code="NO_RESPONDERS"
            ) from exc
        except (TimeoutError, nats_errors.TimeoutError) as exc:
            raise RequestTimeoutError(
                f"no reply on {subject} within {reply_within}s", code="TIMEOUT"
            ) from exc
        except nats_errors.Error as exc:  # connection closed, draining, buffer full
            raise ServiceUnavailableError(f"NATS request failed: {exc!r}", code="NATS") from exc
        try:
            return Reply.model_validate(unpack(msg.data))
        except Exception as exc:
            raise RouterError(f"undecodable reply from router: {exc!r:.200}", 502) from exc

    async def _denial_watched(
        self,
        nc: NatsConnection,
        subject: str,
        payload: bytes,
        reply_within: float,
        headers: dict[str, Any],
    ) -> Message:
        """``nc.request``, ended at once with ``PermissionDeniedError`` when NATS reports
        that it refused to carry a publish on ``subject`` (``_nats_error``)."""
        task = asyncio.current_task()
        assert task is not None  # always called from a coroutine run as a task
        key = subject.lower()
        waiting = self._waiting.setdefault(key, set())
        waiting.add(task)
        cancelling = task.cancelling()
        try:
            return await nc.request(subject, payload, reply_within, headers=headers)
        except asyncio.CancelledError:
            denied = self._denied.pop(task, None)
            # Cancelled by someone else as well: that cancellation goes on.
            if denied is None or task.uncancel() > cancelling:
                raise
            raise PermissionDeniedError(
                f"NATS refused to carry this request on {subject} (permissions violation): "
                f"these NATS credentials may not publish there{_whose(subject)}; "
                "nothing reached the router",
                subject,
            ) from None
        finally:
            self._denied.pop(task, None)
            waiting.discard(task)
            if not waiting and self._waiting.get(key) is waiting:
                del self._waiting[key]


def _whose(subject: str) -> str:
    """What a refusal of ``subject`` means for the service it names, if any."""
    service = subject_service(subject)
    return "" if service is None else f", so they may not speak for service {service!r}"


def instance_of(reply: Reply) -> Instance:
    """The reply's ``instance``; a ``RouterError`` (502) if a success came without one."""
    if reply.instance is None:
        raise RouterError(f"router answered {reply.status} without an instance", 502)
    return reply.instance
