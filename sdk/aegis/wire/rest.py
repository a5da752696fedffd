"""Wire contract v1 over HTTP: the JSON bodies of the admin REST API.

The router serves them (and registers them as OpenAPI components); the
console parses the router's replies with the same models.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from .messages import Instance


class StatusCounts(BaseModel):
    """Instances of a service by status."""

    ONLINE: int
    UNHEALTHY: int
    OFFLINE: int


class ServiceSummary(BaseModel):
    """One service in the services list."""

    name: str
    instance_count: int
    statuses: StatusCounts


VERSION_HELP = (
    "The event stream's id this listing reflects: resume `GET /api/v1/admin/events` "
    "with `Last-Event-ID` set to it for exactly the changes after the listing. "
    "Absent from routers older than it."
)


class ServicesResponse(BaseModel):
    """``GET /services``: every service; ``total`` counts services."""

    services: list[ServiceSummary]
    total: int
    version: str | None = Field(default=None, description=VERSION_HELP)


class ServiceDetail(BaseModel):
    """``GET /services/{name}``: one service with its instances."""

    name: str
    instances: list[Instance]


class InstancesResponse(BaseModel):
    """``GET /instances``: one page of instances across services; ``total`` counts every
    match, on every page."""

    instances: list[Instance]
    total: int
    next_cursor: str | None = Field(
        default=None,
        description="Give it back as `cursor` for the next page; null on the last page.",
    )
    version: str | None = Field(default=None, description=VERSION_HELP)


class MaintenanceRequest(BaseModel):
    """``PUT .../maintenance``: why the instance (or service) is being drained."""

    reason: str = Field(min_length=1, max_length=256, examples=["kernel upgrade"])


class WhoAmI(BaseModel):
    """``GET /whoami``: the token a request carried, by name, and its role."""

    name: str = Field(
        examples=["ci-dashboard"],
        description="The token's name in the tokens file (`admin`: AEGIS_ADMIN_TOKEN; "
        "`anonymous`: the router takes no token).",
    )
    role: Literal["read", "operator"] = Field(
        description="`read`: listings, detail, events. `operator`: also deregister and maintenance."
    )


class ApiError(BaseModel):
    """What went wrong: a stable code, a sentence, and details where useful."""

    code: str = Field(examples=["SERVICE_NOT_FOUND"])
    message: str
    details: Any | None = None


class ErrorResponse(BaseModel):
    """Every error of the REST API has this shape."""

    error: ApiError


class Health(BaseModel):
    """Liveness: the process is up and serving HTTP."""

    status: str = Field(examples=["ok"])
