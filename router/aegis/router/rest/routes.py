"""The admin REST API: thin routes over the registry, JSON in and out."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import structlog
from aegis.router.metrics import render
from aegis.router.registry.operations import PageQuery, Registry
from aegis.router.request_tally import fold_all
from aegis.router.rest.auth import actor
from aegis.router.rest.conditional import (
    VERSION_HEADER,
    entity_tag,
    listing_headers,
    matches,
    not_modified,
)
from aegis.router.rest.contract import ADMIN_PREFIX, instance_key, ref
from aegis.router.rest.cursor import encode_cursor
from aegis.router.rest.errors import (
    FORBIDDEN,
    INTERNAL,
    UNAUTHORIZED,
    ApiException,
    instance_not_found,
    quoted,
)
from aegis.router.rest.instance_json import InstanceTexts
from aegis.router.rest.listing import (
    CURSOR_HELP,
    ID_PREFIX_HELP,
    LIMIT_HELP,
    MAX_ID_FILTER,
    MAX_LIMIT,
    META_HELP,
    PAGING_HELP,
    Q_HELP,
    STATUS_HELP,
    StatusFilter,
    caught_up,
    listing_change,
    listing_version,
    page_query,
)
from aegis.router.rest.ports import NatsSide
from aegis.wire.messages import Instance, InstanceStatus
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
from sanic.response import json_dumps
from sanic_ext import openapi
from sanic_ext.extensions.openapi.types import Integer, String

log = structlog.get_logger("aegis.router.rest.routes")

T = TypeVar("T")

LISTING_HEADERS_HELP = (
    f" Headers: `ETag`, this listing's validator (strong; send it back in "
    f"`If-None-Match`), and `{VERSION_HEADER}`, the event stream's id the listing reflects."
)
IF_NONE_HELP = "The `ETag` of a copy held: 304 with no body while the listing is unchanged."
NOT_MODIFIED_HELP = (
    "Not modified: the copy whose `ETag` was sent is current (no body; `ETag` and "
    f"`{VERSION_HEADER}` as on a 200). A contact time (`last_heartbeat_at`) alone is no change."
)
LISTING_ERRORS = "INVALID_STATUS, INVALID_FILTER, INVALID_LIMIT or INVALID_CURSOR."

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


def _json(model: BaseModel, status: int = 200) -> HTTPResponse:
    return json(model.model_dump(mode="json"), status=status)


def _service_size(request: Request, name: str) -> int:
    """How many instances ``name`` has; 404 ``SERVICE_NOT_FOUND`` if none at all."""
    size = _registry(request).service_size(name)
    if not size:
        raise ApiException(
            404, "SERVICE_NOT_FOUND", f"no service named {quoted(name)} is registered"
        )
    return size


def _conditional(
    request: Request, *parts: str | int
) -> tuple[str, dict[str, str], HTTPResponse | None]:
    """The listing's version and headers, and a 304 if the client's copy is current.

    Read with no await before the listing itself: both show the same moment.
    """
    registry = _registry(request)
    version = listing_version(request, registry)
    change = listing_change(request, version)
    tag = entity_tag(change, registry.changes, request.path, request.query_string, *parts)
    if matches(request.headers.get("if-none-match"), tag):
        return version, {}, not_modified(tag, version)
    return version, listing_headers(tag, version), None


def _instances_page(request: Request, query: PageQuery) -> HTTPResponse:
    """One page of instances as an ``InstancesResponse``, or 304."""
    version, headers, unchanged = _conditional(request)
    if unchanged is not None:
        return unchanged
    page = _registry(request).page(query)
    last = page.last
    body = _texts(request).instances_response(
        page.records, page.total, None if last is None else encode_cursor(last), version
    )
    return HTTPResponse(body, content_type="application/json", headers=headers)


def listing_responses(model: type[BaseModel], what: str) -> Callable[[T], T]:
    """The OpenAPI parts every listing shares: ``If-None-Match``, 200 with its headers, 304.

    sanic-ext keeps no response headers: they are told in the descriptions.
    """

    def decorate(handler: T) -> T:
        handler = openapi.parameter("If-None-Match", str, "header", description=IF_NONE_HELP)(
            handler
        )
        handler = openapi.response(200, ref(model), what + LISTING_HEADERS_HELP)(handler)
        return openapi.response(304, {}, NOT_MODIFIED_HELP)(handler)

    return decorate


def paging(handler: T) -> T:
    """The OpenAPI parameters of a paged instance listing."""
    for name, schema, text in (
        ("q", String(maxLength=MAX_ID_FILTER), Q_HELP),  # type: ignore[no-untyped-call]
        ("id_prefix", String(maxLength=MAX_ID_FILTER), ID_PREFIX_HELP),  # type: ignore[no-untyped-call]
        ("cursor", str, CURSOR_HELP),
        ("limit", Integer(minimum=1, maximum=MAX_LIMIT), LIMIT_HELP),  # type: ignore[no-untyped-call]
    ):
        handler = openapi.parameter(name, schema, "query", description=text)(handler)
    return handler


@admin.get("/services")
@openapi.response(401, ref(ErrorResponse), UNAUTHORIZED)
@openapi.summary("List services")
@openapi.description(
    "Every registered service with its instance counts by status, and the event stream's "
    "`version` they reflect; the `ETag` answers `If-None-Match` with 304 while unchanged."
)
@listing_responses(ServicesResponse, "The services, sorted by name.")
@openapi.response(500, ref(ErrorResponse), INTERNAL)
async def list_services(request: Request) -> HTTPResponse:
    """Every service with instance counts by status.

    The services' text is rebuilt only when a count changed since the last
    request: consoles poll this far more often than the fleet changes.
    """
    await caught_up(request)
    registry = _registry(request)
    version, headers, unchanged = _conditional(request, registry.version)
    if unchanged is not None:
        return unchanged
    cached: tuple[Registry, int, str] | None = getattr(request.app.ctx, "services", None)
    if cached is None or cached[0] is not registry or cached[1] != registry.version:
        counted = registry.version
        summaries = await registry.services()
        services = [
            ServiceSummary(
                name=s.name,
                instance_count=s.instance_count,
                statuses=StatusCounts(**{st.value: n for st, n in s.statuses.items()}),
            )
            for s in summaries
        ]
        text = ServicesResponse(services=services, total=len(services)).model_dump_json(
            exclude={"version"}
        )
        cached = (registry, counted, text)
        request.app.ctx.services = cached
    # The model's last field, written in: the services' text stays as long as the counts.
    body = f'{cached[2][:-1]},"version":{json_dumps(version)}}}'
    return HTTPResponse(body.encode(), content_type="application/json", headers=headers)


@admin.get("/services/<name:str>")
@openapi.response(401, ref(ErrorResponse), UNAUTHORIZED)
@openapi.summary("Show one service")
@openapi.description(
    "The service's instances, sorted by instance id; `status` keeps only those in it, "
    "`id_prefix` and `q` those whose id starts with or contains a text. It sends an `ETag` "
    "(304 to a matching `If-None-Match`) and `X-Aegis-Version`." + META_HELP
)
@openapi.parameter("status", StatusFilter, "query", description=STATUS_HELP)
@openapi.parameter("id_prefix", str, "query", description=ID_PREFIX_HELP)
@openapi.parameter("q", str, "query", description=Q_HELP)
@listing_responses(ServiceDetail, "The service and its instances.")
@openapi.response(400, ref(ErrorResponse), "INVALID_STATUS or INVALID_FILTER.")
@openapi.response(404, ref(ErrorResponse), "SERVICE_NOT_FOUND: no such service is registered.")
@openapi.response(500, ref(ErrorResponse), INTERNAL)
async def get_service(request: Request, name: str) -> HTTPResponse:
    """One service and its instances; 404 ``SERVICE_NOT_FOUND`` if none is registered."""
    query = page_query(request, name, paged=False)
    await caught_up(request)
    _service_size(request, name)
    _, headers, unchanged = _conditional(request)
    if unchanged is not None:
        return unchanged
    shown = _registry(request).page(query).records
    body = _texts(request).service_detail(name, shown)
    return HTTPResponse(body, content_type="application/json", headers=headers)


@admin.get("/services/<name:str>/instances")
@openapi.response(401, ref(ErrorResponse), UNAUTHORIZED)
@openapi.summary("List one service's instances")
@openapi.description(
    "The service's instances, sorted by instance id, with their count; `status` keeps "
    "only those in it." + META_HELP + PAGING_HELP
)
@openapi.parameter("status", StatusFilter, "query", description=STATUS_HELP)
@paging
@listing_responses(InstancesResponse, "The matching instances (one page of them).")
@openapi.response(400, ref(ErrorResponse), LISTING_ERRORS)
@openapi.response(404, ref(ErrorResponse), "SERVICE_NOT_FOUND: no such service is registered.")
@openapi.response(500, ref(ErrorResponse), INTERNAL)
async def service_instances(request: Request, name: str) -> HTTPResponse:
    """One page of a service's instances, filtered; 404 ``SERVICE_NOT_FOUND`` if it has none."""
    query = page_query(request, name)
    await caught_up(request)
    _service_size(request, name)
    return _instances_page(request, query)


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
    "Instances of every service, sorted by service then instance id. Filter with "
    "`service` (exact name) and `status` (ONLINE, UNHEALTHY or OFFLINE)." + META_HELP + PAGING_HELP
)
@openapi.parameter("service", str, "query", description="Only this service.")
@openapi.parameter("status", StatusFilter, "query", description=STATUS_HELP)
@paging
@listing_responses(InstancesResponse, "The matching instances (one page of them).")
@openapi.response(400, ref(ErrorResponse), LISTING_ERRORS)
@openapi.response(500, ref(ErrorResponse), INTERNAL)
async def list_instances(request: Request) -> HTTPResponse:
    """One page of all instances, or of one service, status, metadata or id."""
    query = page_query(request, request.args.get("service") or None)
    await caught_up(request)
    return _instances_page(request, query)


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
