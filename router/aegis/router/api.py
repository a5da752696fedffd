"""The admin REST API: thin routes over the registry, JSON in and out."""

from __future__ import annotations

from aegis.sdk.models import InstanceStatus
from pydantic import BaseModel
from sanic import Blueprint, HTTPResponse, Request, json
from sanic.exceptions import SanicException
from sanic_ext import openapi

from .api_models import (
    ErrorResponse,
    Health,
    InstancesResponse,
    ServiceDetail,
    ServicesResponse,
    ServiceSummary,
    StatusCounts,
    ref,
)
from .registry import Registry


class ApiException(SanicException):
    """An error with a stable ``code`` rendered as the standard JSON error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, status_code=status)
        self.code = code


INTERNAL = "INTERNAL_ERROR: the router failed; details are in its log."


def _registry(request: Request) -> Registry:
    registry: Registry = request.app.ctx.registry
    return registry


def _json(model: BaseModel, status: int = 200) -> HTTPResponse:
    return json(model.model_dump(mode="json"), status=status)


def blueprints() -> list[Blueprint]:
    """Fresh blueprints (a Sanic blueprint belongs to one app): admin API and health."""
    admin = Blueprint("admin", url_prefix="/api/v1/admin")
    ops = Blueprint("ops")

    @admin.get("/services")
    @openapi.summary("List services")
    @openapi.description("Every registered service with its instance counts by status.")
    @openapi.response(200, ref(ServicesResponse), "The services, sorted by name.")
    @openapi.response(500, ref(ErrorResponse), INTERNAL)
    async def list_services(request: Request) -> HTTPResponse:
        """Every service with instance counts by status."""
        summaries = await _registry(request).services()
        services = [
            ServiceSummary(
                name=s.name,
                instance_count=s.instance_count,
                statuses=StatusCounts(**{status.value: n for status, n in s.statuses.items()}),
            )
            for s in summaries
        ]
        return _json(ServicesResponse(services=services, total=len(services)))

    @admin.get("/services/<name:str>")
    @openapi.summary("Show one service")
    @openapi.description("The service's instances, sorted by instance id.")
    @openapi.response(200, ref(ServiceDetail), "The service and its instances.")
    @openapi.response(404, ref(ErrorResponse), "SERVICE_NOT_FOUND: no such service is registered.")
    @openapi.response(500, ref(ErrorResponse), INTERNAL)
    async def get_service(request: Request, name: str) -> HTTPResponse:
        """One service and its instances; 404 ``SERVICE_NOT_FOUND`` if none is registered."""
        records = await _registry(request).instances(name)
        if not records:
            raise ApiException(404, "SERVICE_NOT_FOUND", f"no service named {name!r} is registered")
        return _json(ServiceDetail(name=name, instances=[r.to_public() for r in records]))

    @admin.get("/instances")
    @openapi.summary("List instances")
    @openapi.description(
        "Instances of every service in one request, sorted by service then instance id. "
        "Filter with `service` (exact name) and `status` (ONLINE, UNHEALTHY or OFFLINE)."
    )
    @openapi.parameter("service", str, "query", description="Only this service.")
    @openapi.parameter("status", str, "query", description="ONLINE, UNHEALTHY or OFFLINE.")
    @openapi.response(200, ref(InstancesResponse), "The matching instances.")
    @openapi.response(400, ref(ErrorResponse), "INVALID_STATUS: unknown status filter.")
    @openapi.response(500, ref(ErrorResponse), INTERNAL)
    async def list_instances(request: Request) -> HTTPResponse:
        """All instances, or those of one service and/or one status."""
        status_text = request.args.get("status")
        status: InstanceStatus | None = None
        if status_text:
            try:
                status = InstanceStatus(status_text.upper())
            except ValueError:
                allowed = ", ".join(s.value for s in InstanceStatus)
                raise ApiException(
                    400, "INVALID_STATUS", f"status must be one of {allowed}, got {status_text!r}"
                ) from None
        records = await _registry(request).instances(request.args.get("service") or None, status)
        instances = [r.to_public() for r in records]
        return _json(InstancesResponse(instances=instances, total=len(instances)))

    @ops.get("/healthz")
    @openapi.summary("Liveness")
    @openapi.response(200, ref(Health), "The process is up.")
    async def healthz(request: Request) -> HTTPResponse:
        """200 while the process serves HTTP."""
        return _json(Health(status="ok"))

    return [admin, ops]
