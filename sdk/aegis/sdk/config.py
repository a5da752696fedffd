"""Client configuration."""

from __future__ import annotations

from aegis.connect.auth import NatsAuth
from pydantic import BaseModel, ConfigDict, Field


class ClientConfig(BaseModel):
    """How a ``ServiceClient`` signs in, waits, retries and fails fast. Times in seconds."""

    model_config = ConfigDict(frozen=True)

    timeout: float = Field(5.0, gt=0, description="Wait for one reply this long.")
    connect_timeout: float = Field(2.0, gt=0, description="One TCP+NATS handshake attempt.")
    retries: int = Field(3, ge=0, description="Further attempts after the first.")
    backoff_base: float = Field(0.1, ge=0, description="Delay before the first retry.")
    backoff_max: float = Field(2.0, ge=0, description="Cap of any one delay.")
    jitter: bool = Field(True, description="Randomise delays (full jitter).")
    breaker_threshold: int = Field(5, ge=1, description="Failed calls in a row that open it.")
    breaker_cooldown: float = Field(30.0, ge=0, description="Open this long, then one trial.")
    auth: NatsAuth | None = Field(
        None, description="NATS credentials and TLS settings; none: connect anonymously."
    )
    shared_subjects: bool = Field(
        False,
        description="Send requests on the v1 shared subjects ipc.service.* instead of the "
        "per-service ipc.svc.<service>.* ones (wire contract v1.2): only for a router that "
        "predates them, and only where NATS lets this client publish on ipc.service.*.",
    )
