"""The SDK's exceptions: one hierarchy, each with the HTTP-style ``status_code``."""

from __future__ import annotations

from aegis.wire.messages import ErrorDetail, Instance


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
    """

    status_code = 409

    def __init__(
        self,
        message: str,
        existing: Instance | None,
        *,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.existing = existing
        self.retry_after = retry_after


class SessionMismatchError(AegisError):
    """The instance is live but owned by another session (403); nothing changed."""

    status_code = 403


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
    """No connection to NATS or no router answering, after every retry (503)."""

    status_code = 503


class CircuitOpenError(ServiceUnavailableError):
    """Failing fast: recent calls failed, so the breaker is open (503)."""


class RouterError(AegisError):
    """The router answered with an error this SDK has no finer type for."""

    def __init__(self, message: str, status_code: int, *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.status_code = status_code
