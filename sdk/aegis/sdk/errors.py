"""The SDK's exceptions, and the one place a router reply becomes one (``from_reply``).

Every exception carries the HTTP-style ``status_code`` of the failure and the
router's ``code`` (``error.code``) when there is one::

    AegisError
    ├── RegistrationValidationError   400  the request breaks the contract (.details)
    ├── SessionMismatchError          403  the instance belongs to another session
    ├── PermissionDeniedError         403  NATS refused to let this client publish there (.subject)
    ├── InstanceNotFoundError         404  unknown to the router, or OFFLINE
    ├── DuplicateInstanceError        409  live under another session (.existing, .retry_after)
    ├── StaleRequestError             409  overtaken by a later request of this session
    ├── LimitExceededError            429  the router holds as many instances as it may
    ├── RequestTimeoutError           504  no reply in time, after every retry
    ├── ServiceUnavailableError       503  no NATS, no router, or its store down, after every retry
    │   └── CircuitOpenError          503  failing fast after repeated failures
    └── RouterError                   any  other error replies (500, 413), undecodable ones (502)
"""

from __future__ import annotations

import math

from aegis.wire.messages import ErrorCode, ErrorDetail, Instance, Reply


class AegisError(Exception):
    """Base of every SDK error."""

    status_code: int = 500

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class RegistrationValidationError(AegisError):
    """The request broke the wire contract (400); ``details`` says where."""

    status_code = 400

    def __init__(
        self, message: str, details: list[ErrorDetail], *, code: str | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.details = details


class DuplicateInstanceError(AegisError):
    """The instance is live under another session (409); ``existing`` is what is stored.

    ``retry_after``: seconds until that registration goes OFFLINE and can be
    taken over, if its owner sends nothing more (see ``register(wait_if_taken=)``).
    ``message`` is the router's; ``advice`` (``from_reply`` gives ``duplicate_advice``)
    follows it in ``str(error)``: what to do about it.
    """

    status_code = 409

    def __init__(
        self,
        message: str,
        existing: Instance | None,
        *,
        code: str | None = None,
        retry_after: float | None = None,
        advice: str | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.existing = existing
        self.retry_after = retry_after
        self.advice = advice

    def __str__(self) -> str:
        if self.advice is None:
            return self.message
        return f"{self.message.rstrip('. ')}. {self.advice}"


def duplicate_advice(retry_after: float | None) -> str:
    """What to do after a 409: most often the holder is this service's own previous run,
    which crashed or was killed, and ``wait_if_taken`` waits it out."""
    if retry_after is None:
        wait = "register(..., wait_if_taken=SECONDS) waits for its registration to expire"
    else:
        seconds = math.ceil(retry_after + 1)
        wait = (
            f"its registration expires in {retry_after:.1f}s, and "
            f"register(..., wait_if_taken={seconds}) waits for that"
        )
    return (
        "If that owner was a previous run of this service that stopped without "
        f"deregistering, {wait} and takes the instance over; "
        "if a copy is still running, give this one another instance id"
    )


class SessionMismatchError(AegisError):
    """The instance is live but owned by another session (403); nothing changed."""

    status_code = 403


class StaleRequestError(AegisError):
    """A later registration or deregistration of this same session reached the router
    first (409 ``STALE_REQUEST``); this request changed nothing, and the later one holds."""

    status_code = 409


class PermissionDeniedError(AegisError):
    """NATS itself refused this client's request (403, code ``PERMISSION_DENIED``): its
    credentials may not publish on ``subject``, e.g. ``ipc.svc.<service>.register`` of a
    service another team owns. Raised as soon as NATS says so, never retried (the same
    credentials would be refused again); the router never saw the request, so nothing
    changed and the circuit breaker does not count it.
    """

    status_code = 403

    def __init__(self, message: str, subject: str, *, code: str = "PERMISSION_DENIED") -> None:
        super().__init__(message, code=code)
        self.subject = subject


class InstanceNotFoundError(AegisError):
    """The router does not know the instance, or it is OFFLINE (404)."""

    status_code = 404


class LimitExceededError(AegisError):
    """The router holds as many instances as it may (429); nothing was stored."""

    status_code = 429


class RequestTimeoutError(AegisError):
    """No reply came in time, after every retry (504)."""

    status_code = 504


class ServiceUnavailableError(AegisError):
    """No connection to NATS or no router answering, after every retry (503).

    ``retry_after``: with code ``OVERLOADED``, the router's advice (seconds) on when
    it expects room for another registration.
    """

    status_code = 503

    def __init__(
        self, message: str, *, code: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class CircuitOpenError(ServiceUnavailableError):
    """Failing fast: recent calls failed, so the breaker is open (503)."""


class RouterError(AegisError):
    """The router answered with an error this SDK has no finer type for."""

    def __init__(self, message: str, status_code: int, *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.status_code = status_code


def reply_message(reply: Reply) -> str:
    """The router's error message, or a sentence naming the status when it sent none."""
    return reply.error.message if reply.error else f"router answered {reply.status}"


def from_reply(reply: Reply) -> AegisError | None:
    """The typed error a failed reply stands for; None for a successful one.

    Like httpx's ``raise_for_status``, the whole status → exception table is
    here and nowhere else; callers ``raise`` what it returns, or branch on it.
    """
    if reply.ok:
        return None
    error = reply.error
    message = reply_message(reply)
    code = error.code if error else None
    match reply.status:
        case 400:
            return RegistrationValidationError(message, (error and error.details) or [], code=code)
        case 403:
            return SessionMismatchError(message, code=code)
        case 404:
            return InstanceNotFoundError(message, code=code)
        case 409 if code == ErrorCode.STALE_REQUEST:
            return StaleRequestError(message, code=code)
        case 409:
            return DuplicateInstanceError(
                message,
                reply.existing,
                code=code,
                retry_after=reply.retry_after,
                advice=duplicate_advice(reply.retry_after),
            )
        case 429:
            return LimitExceededError(message, code=code)
        case 503:
            return ServiceUnavailableError(message, code=code, retry_after=reply.retry_after)
        case _:
            return RouterError(message, reply.status, code=code)
