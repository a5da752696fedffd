"""AegisIPC SDK: register service instances with an AegisIPC router over NATS.

>>> async with ServiceClient(nats_url="nats://127.0.0.1:4222") as client:
...     instance = await client.register("billing", "billing-1", {"version": "1.4"})
"""

from aegis.connect.auth import NatsAuth
from aegis.wire.messages import (
    ChangeEvent,
    ErrorBody,
    ErrorDetail,
    EventKind,
    Instance,
    InstanceStatus,
    RegisterRequest,
    Reply,
)

from .client import ServiceClient
from .config import ClientConfig
from .errors import (
    AegisError,
    CircuitOpenError,
    DuplicateInstanceError,
    InstanceNotFoundError,
    LimitExceededError,
    PermissionDeniedError,
    RegistrationValidationError,
    RequestTimeoutError,
    RouterError,
    ServiceUnavailableError,
    SessionMismatchError,
    StaleRequestError,
)
from .registrations import RegisteredInstance, RegistrationState
from .resolver import NoHealthyInstanceError, Resolver
from .watch import EventStream

__all__ = [
    "AegisError",
    "ChangeEvent",
    "CircuitOpenError",
    "ClientConfig",
    "DuplicateInstanceError",
    "ErrorBody",
    "ErrorDetail",
    "EventKind",
    "EventStream",
    "Instance",
    "InstanceNotFoundError",
    "InstanceStatus",
    "LimitExceededError",
    "NatsAuth",
    "NoHealthyInstanceError",
    "PermissionDeniedError",
    "RegisterRequest",
    "RegisteredInstance",
    "RegistrationState",
    "RegistrationValidationError",
    "Reply",
    "RequestTimeoutError",
    "Resolver",
    "RouterError",
    "ServiceClient",
    "ServiceUnavailableError",
    "SessionMismatchError",
    "StaleRequestError",
]
