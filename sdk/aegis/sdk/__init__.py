"""AegisIPC SDK: register service instances with an AegisIPC router over NATS.

>>> async with ServiceClient(nats_url="nats://127.0.0.1:4222") as client:
...     instance = await client.register("billing", "billing-1", {"version": "1.4"})
"""

from .client import ServiceClient
from .config import ClientConfig
from .errors import (
    AegisError,
    CircuitOpenError,
    DuplicateInstanceError,
    RegistrationValidationError,
    RequestTimeoutError,
    RouterError,
    ServiceUnavailableError,
)
from .models import ErrorBody, ErrorDetail, Instance, InstanceStatus, RegisterRequest, Reply

__all__ = [
    "AegisError",
    "CircuitOpenError",
    "ClientConfig",
    "DuplicateInstanceError",
    "ErrorBody",
    "ErrorDetail",
    "Instance",
    "InstanceStatus",
    "RegisterRequest",
    "RegistrationValidationError",
    "Reply",
    "RequestTimeoutError",
    "RouterError",
    "ServiceClient",
    "ServiceUnavailableError",
]
