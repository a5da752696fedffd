"""The admin REST API: thin routes over the registry, JSON in and out."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import structlog
from aegis.router.domain import InstanceRecord
from aegis.router.metrics import render
from aegis.router.registry.operations import Registry
from aegis.router.request_tally import fold_all
from aegis.router.rest.auth import actor
from aegis.router.rest.contract import ADMIN_PREFIX, instance_key, ref
from aegis.router.rest.errors import (
    FORBIDDEN,
    INTERNAL,
    UNAUTHORIZED,
    ApiException,
    instance_not_found,
)
from aegis.router.rest.instance_json import InstanceTexts
from aegis.router.rest.ports import NatsSide
from aegis.wire.messages import (
    MAX_FILTER_KEYS,
    Instance,
    InstanceStatus,
)
from aegis.wire.rest import (
    ErrorResponse,
    Health,
    InstancesResponse,
    ServiceDetail,
    ServicesResponse,
    ServiceSummary,
    StatusCounts,
)
from pydantic import BaseModel
from sanic import Blueprint, HTTPResponse, Request, json
from sanic_ext import openapi

log = structlog.get_logger("aegis.router.rest.routes")

ANY_STATUS = "ANY"


class StatusFilter(StrEnum):
    """The ``status`` query argument's values (the OpenAPI enum)."""

    ONLINE = "ONLINE"
    UNHEALTHY = "UNHEALTHY"
    OFFLINE = "OFFLINE"
    ANY = ANY_STATUS


STATUS_HELP = "Only instances in this status: ONLINE, UNHEALTHY or OFFLINE (ANY: every status)."
META_HELP = (
    " Metadata filters: `meta.<key>=<value>` keeps instances whose top-level metadata "
    "`key` has that value (a string equal to it, or a number or boolean written so in "
    "JSON: `meta.port=8080`, `meta.canary=true`); several are ANDed, at most 16. "
    "A bad filter gets 400 `INVALID_FILTER`. `maintenance=include|exclude|only` chooses "
    "what to do with instances an operator put in maintenance: by default they are "
    "listed (marked) without filters and left out with `status` or `meta.*` filters."
)
META_PREFIX = "meta."

# The admin API and the operator's endpoints (health, readiness, metrics). A
# blueprint may serve many apps (tests build many): what belongs to one app or
# one registry is reached through ``request.app.ctx``, set by ``app.build_app``.
admin = Blueprint("admin", url_prefix=ADMIN_PREFIX)
ops = Blueprint("ops")


def _registry(request: Request) -> Registry:
    registry: Registry = request.app.ctx.registry
    return registry


def _texts(request: Request) -> InstanceTexts:
    """The instance listings' texts, kept between requests (one app, one registry)."""
    texts: InstanceTexts = request.app.ctx.texts
    return texts


def _status_filter(request: Request) -> InstanceStatus | None:
    """The ``status`` query argument, or None; 400 ``INVALID_STATUS`` if unknown."""
    text = request.get_args(keep_blank_values=True).get("status")
    if text is None or text.upper() == ANY_STATUS:
        return None  # ANY: every status, as NATS discover takes it
    try:
        return InstanceStatus(text.upper())
    except ValueError:
        allowed = ", ".join([*(s.value for s in InstanceStatus), ANY_STATUS])
        raise ApiException(
            400, "INVALID_STATUS", f"status must be one of {allowed}, got {text!r}"
        ) from None


def _metadata_filter(request: Request) -> dict[str, str]:
    """The ``meta.<key>=<value>`` query arguments; 400 ``INVALID_FILTER`` if malformed."""
    where: dict[str, str] = {}
    for name, values in request.get_args(keep_blank_values=True).items():
        if not name.startswith(META_PREFIX):
            continue
        key = name[len(META_PREFIX) :]
        if not 0 < len(key) <= 64:
            raise ApiException(
                400, "INVALID_FILTER", f"{name!r}: a metadata key is 1 to 64 characters"
            )
        if len(values) > 1:
            raise ApiException(400, "INVALID_FILTER", f"{name!r} is given {len(values)} times")
        where[key] = values[0]
    if len(where) > MAX_FILTER_KEYS:
        raise ApiException(
            400, "INVALID_FILTER", f"{len(where)} metadata filters; at most {MAX_FILTER_KEYS}"
        )
    return where


def _as_text(value: Any) -> str | None:
    """A metadata value as a query string would spell it; None for maps and lists."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value)
    return None


def _filtered(request: Request, records: list[InstanceRecord]) -> list[InstanceRecord]:
    """``records`` through the request's ``status``, ``meta.*`` and ``maintenance`` filters."""
    if not request.query_string:  # no filter: every record (maintenance=include)
        return records
    status, where = _status_filter(request), _metadata_filter(request)
    mode = request.args.get("maintenance") or ("exclude" if status or where else "include")
    if mode not in ("include", "exclude", "only"):
        raise ApiException(
            400, "INVALID_FILTER", f"maintenance must be include, exclude or only, got {mode!r}"
        )
    return [
        r
        for r in records
        if (status is None or r.status is status)
        and all(k in r.metadata and _as_text(r.metadata[k]) == v for k, v in where.items())
        and (mode == "include" or (r.maintenance is None) == (mode == "exclude"))
    ]


def _json(model: BaseModel, status: int = 200) -> HTTPResponse:
    return json(model.model_dump(mode="json"), status=status)


async def _service_instances(request: Request, name: str) -> list[InstanceRecord]:
    """The service's instances through the request's filters; 404 if it has none at all."""
    records = await _registry(request).instances(name)
    if not records:
        raise ApiException(404, "SERVICE_NOT_FOUND", f"no service named {name!r} is registered")
    return _filtered(request, records)


def _json_body(body: bytes) -> HTTPResponse:
    """A 200 with a JSON body already written (what ``json()`` would send for it)."""
    return HTTPResponse(body, content_type="application/json")


@admin.get("/services")
@openapi.response(401, ref(ErrorResponse), UNAUTHORIZED)
@openapi.summary("List services")
@openapi.description("Every registered service with its instance counts by status.")
@openapi.response(200, ref(ServicesResponse), "The services, sorted by name.")
@openapi.response(500, ref(ErrorResponse), INTERNAL)
async def list_services(request: Request) -> HTTPResponse:
    """Every service with instance counts by status.

    The body is rebuilt only when a count changed since the last request:
    consoles poll this far more often than the fleet changes.
    """
    registry = _registry(request)
    cached: tuple[Registry, int, bytes] | None = getattr(request.app.ctx, "services", None)
    if cached is None or cached[0] is not registry or cached[1] != registry.version:
        version = registry.version
        summaries = await registry.services()
        services = [
            ServiceSummary(
                name=s.name,
                instance_count=s.instance_count,
                statuses=StatusCounts(**{st.value: n for st, n in s.statuses.items()}),
            )
            for s in summaries
        ]
        body = ServicesResponse(services=services, total=len(services)).model_dump_json()
        cached = (registry, version, body.encode())
        request.app.ctx.services = cached
    return _json_body(cached[2])


@admin.get("/services/<name:str>")
@openapi.response(401, ref(ErrorResponse), UNAUTHORIZED)
@openapi.summary("Show one service")
@openapi.description(
    "The service's instances, sorted by instance id; `status` keeps only those in it." + META_HELP
)
@openapi.parameter("status", StatusFilter, "query", description=STATUS_HELP)
@openapi.response(200, ref(ServiceDetail), "The service and its instances.")
@openapi.response(400, ref(ErrorResponse), "INVALID_STATUS or INVALID_FILTER.")
@openapi.response(404, ref(ErrorResponse), "SERVICE_NOT_FOUND: no such service is registered.")
@openapi.response(500, ref(ErrorResponse), INTERNAL)
async def get_service(request: Request, name: str) -> HTTPResponse:
    """One service and its instances; 404 ``SERVICE_NOT_FOUND`` if none is registered."""
    shown = await _service_instances(request, name)
    return _json_body(_texts(request).service_detail(name, shown))


@admin.get("/services/<name:str>/instances")
@openapi.response(401, ref(ErrorResponse), UNAUTHORIZED)
@openapi.summary("List one service's instances")
@openapi.description(
    "The service's instances, sorted by instance id, with their count; `status` keeps "
    "only those in it." + META_HELP
)
@openapi.parameter("status", StatusFilter, "query", description=STATUS_HELP)
@openapi.response(200, ref(InstancesResponse), "The matching instances.")
@openapi.response(400, ref(ErrorResponse), "INVALID_STATUS or INVALID_FILTER.")
@openapi.response(404, ref(ErrorResponse), "SERVICE_NOT_FOUND: no such service is registered.")
@openapi.response(500, ref(ErrorResponse), INTERNAL)
async def service_instances(request: Request, name: str) -> HTTPResponse:
    """One service's instances, filtered; 404 ``SERVICE_NOT_FOUND`` if none is registered."""
    shown = await _service_instances(request, name)
    return _json_body(_texts(request).instances_response(shown))


@admin.get("/services/<name:str>/instances/<instance_id:str>")
@openapi.response(401, ref(ErrorResponse), UNAUTHORIZED)
@openapi.summary("Get one instance")
@openapi.description("One instance, whatever its status, with its maintenance mark if any.")
@openapi.response(200, ref(Instance), "The instance.")
@openapi.response(404, ref(ErrorResponse), "INSTANCE_NOT_FOUND: no such instance.")
@openapi.response(500, ref(ErrorResponse), INTERNAL)
async def get_instance(request: Request, name: str, instance_id: str) -> HTTPResponse:
    """One instance; 404 ``INSTANCE_NOT_FOUND`` if none has that id in that service."""
    key = instance_key(name, instance_id)
    record = None if key is None else _registry(request).instance(key)
    if record is None:
        raise instance_not_found(name, instance_id)
    return _json(record.to_public())


@admin.delete("/services/<name:str>/instances/<instance_id:str>")
@openapi.response(401, ref(ErrorResponse), UNAUTHORIZED)
@openapi.summary("Force-deregister an instance")
@openapi.description(
    "An operator action: the instance goes OFFLINE at once whatever its session, "
    "and is removed after the removal deadline. Its owner's next heartbeat gets 404 "
    "and re-registers it, so stop the service first to keep it out."
)
@openapi.response(200, ref(Instance), "The instance, now OFFLINE.")
@openapi.response(403, ref(ErrorResponse), FORBIDDEN)
@openapi.response(404, ref(ErrorResponse), "INSTANCE_NOT_FOUND: no such instance.")
@openapi.response(500, ref(ErrorResponse), INTERNAL)
async def force_deregister(request: Request, name: str, instance_id: str) -> HTTPResponse:
    """Take one instance OFFLINE as an operator (audited by ``auth.audit``)."""
    key = instance_key(name, instance_id)
    record = None if key is None else await _registry(request).force_deregister(key, actor(request))
    if record is None:
        raise instance_not_found(name, instance_id)
    return _json(record.to_public())


@admin.get("/instances")
@openapi.response(401, ref(ErrorResponse), UNAUTHORIZED)
@openapi.summary("List instances")
@openapi.description(
    "Instances of every service in one request, sorted by service then instance id. "
    "Filter with `service` (exact name) and `status` (ONLINE, UNHEALTHY or OFFLINE)." + META_HELP
)
@openapi.parameter("service", str, "query", description="Only this service.")
@openapi.parameter("status", StatusFilter, "query", description=STATUS_HELP)
@openapi.response(200, ref(InstancesResponse), "The matching instances.")
@openapi.response(400, ref(ErrorResponse), "INVALID_STATUS or INVALID_FILTER.")
@openapi.response(500, ref(ErrorResponse), INTERNAL)
async def list_instances(request: Request) -> HTTPResponse:
    """All instances, or those of one service and/or one status and metadata."""
    records = await _registry(request).instances(request.args.get("service") or None)
    return _json_body(_texts(request).instances_response(_filtered(request, records)))


@ops.get("/healthz")
@openapi.summary("Liveness")
@openapi.response(200, ref(Health), "The process is up.")
async def healthz(request: Request) -> HTTPResponse:
    """200 while the process serves HTTP."""
    return _json(Health(status="ok"))


@ops.get("/metrics")
@openapi.summary("Prometheus metrics")
@openapi.response(200, {"text/plain": str}, "Prometheus text exposition format.")
async def metrics(request: Request) -> HTTPResponse:
    """Requests by kind and result, latencies, instances by status, reconnects."""
    registry = _registry(request)
    counts: dict[InstanceStatus, int] = {}
    for summary in await registry.services():
        for status, n in summary.statuses.items():
            counts[status] = counts.get(status, 0) + n
    routers = len(registry.leases.membership.member_ids)
    fold_all()  # the requests counted without locks since the last fold
    body, content_type = render(counts, registry.held, routers)
    return HTTPResponse(body, content_type=content_type)


@ops.get("/readyz")
@openapi.summary("Readiness")
@openapi.response(200, ref(Health), "Connected to NATS, store ready: send traffic.")
@openapi.response(503, ref(ErrorResponse), "NOT_READY: starting, or NATS is unreachable.")
async def readyz(request: Request) -> HTTPResponse:
    """200 when this router can serve registrations, else 503 ``NOT_READY``."""
    runtime: NatsSide | None = request.app.ctx.runtime
    if runtime is None:
        raise ApiException(503, "NOT_READY", "this router has no NATS side")
    if not runtime.ready:
        raise ApiException(503, "NOT_READY", runtime.not_ready_reason())
    return _json(Health(status="ready"))
