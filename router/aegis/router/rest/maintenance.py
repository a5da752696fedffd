"""Maintenance (drain) routes of the admin REST API.

An operator marks an instance, or every live instance of a service, with a
reason; it keeps its liveness status (heartbeats keep it alive, and do not
clear the mark), but discovery, resolvers and filtered REST listings leave it
out until the mark is taken off. The mark is in the store, so it survives a
router restart, and each change is a ``maintenance`` change event.
"""

from __future__ import annotations

from aegis.router.registry.operations import Registry
from aegis.router.rest.auth import actor
from aegis.router.rest.contract import ADMIN_PREFIX, SERVICE_NAME, instance_key, ref
from aegis.router.rest.errors import (
    FORBIDDEN,
    INTERNAL,
    UNAUTHORIZED,
    ApiException,
    instance_not_found,
    quoted,
)
from aegis.wire.messages import Instance
from aegis.wire.rest import ErrorResponse, InstancesResponse, MaintenanceRequest
from pydantic import BaseModel, ValidationError
from sanic import Blueprint, HTTPResponse, Request, json
from sanic_ext import openapi

# Shared by every app (tests build many); the registry is ``request.app.ctx``'s.
bp = Blueprint("maintenance", url_prefix=ADMIN_PREFIX)

PUT_HELP = (
    "Puts it in maintenance with a reason: it keeps its liveness status (and its "
    "heartbeats keep it alive) but discovery, resolvers and filtered REST listings leave "
    "it out until the mark is taken off. Survives a router restart."
)


def _reason(request: Request) -> str:
    """The body's ``reason``; 400 ``VALIDATION_ERROR`` with details if it has none."""
    try:
        return MaintenanceRequest.model_validate(request.json or {}).reason
    except ValidationError as exc:
        # In JSON terms: the field's path and pydantic's message, no Python reprs; of
        # the body itself pydantic would say "a valid dictionary or instance of" the model.
        details = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            if error["loc"]
            else "body: must be a JSON object"
            for error in exc.errors(include_url=False)
        )
        raise ApiException(
            400,
            "VALIDATION_ERROR",
            f'body must be {{"reason": "..."}} (1-256 characters): {details}',
        ) from None
    except Exception:  # not JSON at all
        raise ApiException(400, "VALIDATION_ERROR", 'body must be JSON {"reason": "..."}') from None


def _dump(model: BaseModel) -> HTTPResponse:
    return json(model.model_dump(mode="json"))


async def _on_instance(
    request: Request, name: str, instance_id: str, reason: str | None
) -> HTTPResponse:
    registry: Registry = request.app.ctx.registry
    key = instance_key(name, instance_id)
    record = None if key is None else await registry.set_maintenance(key, reason, actor(request))
    if record is None:
        raise instance_not_found(name, instance_id, "live ")
    return _dump(record.to_public())


async def _on_service(request: Request, name: str, reason: str | None) -> HTTPResponse:
    registry: Registry = request.app.ctx.registry
    records = None
    if SERVICE_NAME.fullmatch(name):
        records = await registry.set_service_maintenance(name, reason, actor(request))
    if records is None:
        raise ApiException(404, "SERVICE_NOT_FOUND", f"service {quoted(name)} has no live instance")
    instances = [r.to_public() for r in records]
    return _dump(InstancesResponse(instances=instances, total=len(instances)))


@bp.put("/services/<name:str>/instances/<instance_id:str>/maintenance")
@openapi.summary("Put an instance in maintenance")
@openapi.description(PUT_HELP)
@openapi.body(ref(MaintenanceRequest), required=True)
@openapi.response(200, ref(Instance), "The instance, marked.")
@openapi.response(400, ref(ErrorResponse), "VALIDATION_ERROR: no reason given.")
@openapi.response(401, ref(ErrorResponse), UNAUTHORIZED)
@openapi.response(403, ref(ErrorResponse), FORBIDDEN)
@openapi.response(404, ref(ErrorResponse), "INSTANCE_NOT_FOUND: no such live instance.")
@openapi.response(500, ref(ErrorResponse), INTERNAL)
async def put_instance(request: Request, name: str, instance_id: str) -> HTTPResponse:
    """Mark one live instance."""
    return await _on_instance(request, name, instance_id, _reason(request))


@bp.delete("/services/<name:str>/instances/<instance_id:str>/maintenance")
@openapi.summary("Take an instance out of maintenance")
@openapi.response(200, ref(Instance), "The instance, unmarked.")
@openapi.response(401, ref(ErrorResponse), UNAUTHORIZED)
@openapi.response(403, ref(ErrorResponse), FORBIDDEN)
@openapi.response(
    404, ref(ErrorResponse), "INSTANCE_NOT_FOUND: no such live instance, nor a marked one."
)
@openapi.response(500, ref(ErrorResponse), INTERNAL)
async def delete_instance(request: Request, name: str, instance_id: str) -> HTTPResponse:
    """Unmark one instance, live or kept OFFLINE by its mark (a no-op if not marked)."""
    return await _on_instance(request, name, instance_id, None)


@bp.put("/services/<name:str>/maintenance")
@openapi.summary("Put every live instance of a service in maintenance")
@openapi.description(PUT_HELP)
@openapi.body(ref(MaintenanceRequest), required=True)
@openapi.response(200, ref(InstancesResponse), "The instances, marked.")
@openapi.response(400, ref(ErrorResponse), "VALIDATION_ERROR: no reason given.")
@openapi.response(401, ref(ErrorResponse), UNAUTHORIZED)
@openapi.response(403, ref(ErrorResponse), FORBIDDEN)
@openapi.response(404, ref(ErrorResponse), "SERVICE_NOT_FOUND: no live instance.")
@openapi.response(500, ref(ErrorResponse), INTERNAL)
async def put_service(request: Request, name: str) -> HTTPResponse:
    """Mark every live instance of one service."""
    return await _on_service(request, name, _reason(request))


@bp.delete("/services/<name:str>/maintenance")
@openapi.summary("Take every instance of a service out of maintenance")
@openapi.response(200, ref(InstancesResponse), "The instances, unmarked.")
@openapi.response(401, ref(ErrorResponse), UNAUTHORIZED)
@openapi.response(403, ref(ErrorResponse), FORBIDDEN)
@openapi.response(404, ref(ErrorResponse), "SERVICE_NOT_FOUND: no live instance, nor a marked one.")
@openapi.response(500, ref(ErrorResponse), INTERNAL)
async def delete_service(request: Request, name: str) -> HTTPResponse:
    """Unmark every instance of one service (live, or kept OFFLINE by its mark)."""
    return await _on_service(request, name, None)
