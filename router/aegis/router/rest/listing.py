"""What an instance listing asks for: its filters, page size and cursor, as a ``PageQuery``;
and which change of the event stream a listing reflects (its version)."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

from aegis.router.domain import InstanceKey, InstanceRecord
from aegis.router.registry.operations import PageQuery, Registry
from aegis.router.rest.cursor import CursorError, decode_cursor
from aegis.router.rest.errors import ApiException, quoted
from aegis.router.rest.ports import NatsSide
from aegis.wire.messages import MAX_FILTER_KEYS, InstanceStatus
from sanic import Request
from sanic.request import RequestParameters

ANY_STATUS = "ANY"
MAX_LIMIT = 1000
MAX_ID_FILTER = 128  # an instance id's length
META_PREFIX = "meta."


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
ID_PREFIX_HELP = "Only instances whose id starts with this (case-sensitive)."
Q_HELP = "Only instances whose id contains this, in any case."
LIMIT_HELP = (
    f"At most this many instances (1 to {MAX_LIMIT}), and `next_cursor` to ask for the next "
    "page; absent: every match, in one page."
)
CURSOR_HELP = (
    "Start after the last instance of a previous page: its `next_cursor`, given back as it "
    "came (opaque). A cursor this router did not make gets 400 `INVALID_CURSOR`."
)
PAGING_HELP = (
    " Pages: `limit` and `cursor` (keyset: instances that come and go do not shift the "
    "next page); `total` counts every match. Filters `id_prefix` and `q` (id substring, "
    "any case) combine with the others. `version` (also the `X-Aegis-Version` header) is "
    "the event stream's id this listing reflects: follow `GET /api/v1/admin/events` with "
    "`Last-Event-ID: <version>` for exactly the changes after it. The `ETag` answers "
    "`If-None-Match` with 304 while the listing is unchanged."
)


def _status_filter(args: RequestParameters) -> InstanceStatus | None:
    """The ``status`` query argument, or None; 400 ``INVALID_STATUS`` if unknown."""
    text = args.get("status")
    if text is None or text.upper() == ANY_STATUS:
        return None  # ANY: every status, as NATS discover takes it
    try:
        return InstanceStatus(text.upper())
    except ValueError:
        allowed = ", ".join([*(s.value for s in InstanceStatus), ANY_STATUS])
        raise ApiException(
            400, "INVALID_STATUS", f"status must be one of {allowed}, got {quoted(text)}"
        ) from None


def _metadata_filter(args: RequestParameters) -> dict[str, str]:
    """The ``meta.<key>=<value>`` query arguments; 400 ``INVALID_FILTER`` if malformed."""
    where: dict[str, str] = {}
    for name, values in args.items():
        if not name.startswith(META_PREFIX):
            continue
        key = name[len(META_PREFIX) :]
        if not 0 < len(key) <= 64:
            raise ApiException(
                400, "INVALID_FILTER", f"{quoted(name)}: a metadata key is 1 to 64 characters"
            )
        if len(values) > 1:
            raise ApiException(
                400, "INVALID_FILTER", f"{quoted(name)} is given {len(values)} times"
            )
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


def _id_filter(args: RequestParameters, name: str) -> str:
    """An id filter's text ('' if absent); 400 ``INVALID_FILTER`` if longer than an id."""
    text = args.get(name) or ""
    if len(text) > MAX_ID_FILTER:
        raise ApiException(
            400, "INVALID_FILTER", f"{name} is {len(text)} characters; an id has {MAX_ID_FILTER}"
        )
    return text


def _limit(args: RequestParameters) -> int | None:
    """The ``limit`` query argument, or None; 400 ``INVALID_LIMIT`` unless 1 to MAX_LIMIT."""
    text = args.get("limit")
    if text is None:
        return None
    if not (text.isascii() and text.isdecimal()) or not 0 < int(text) <= MAX_LIMIT:
        raise ApiException(
            400, "INVALID_LIMIT", f"limit must be a whole number, 1 to {MAX_LIMIT}: {quoted(text)}"
        )
    return int(text)


def _cursor(args: RequestParameters, service: str | None) -> InstanceKey | None:
    """The key the ``cursor`` argument names, or None; 400 ``INVALID_CURSOR`` if it is
    none of this router's, or another service's than the listing's."""
    text = args.get("cursor")
    if text is None:
        return None
    try:
        key = decode_cursor(text)
    except CursorError:
        raise ApiException(
            400, "INVALID_CURSOR", "cursor is not a next_cursor this API gave; list afresh"
        ) from None
    if service is not None and key.service_name != service:
        raise ApiException(
            400, "INVALID_CURSOR", f"cursor is of another listing than service {quoted(service)}'s"
        )
    return key


def _record_filter(
    status: InstanceStatus | None, where: dict[str, str], mode: str
) -> Callable[[InstanceRecord], bool] | None:
    if status is None and not where and mode == "include":
        return None
    excluded = mode == "exclude"

    def keep(r: InstanceRecord) -> bool:
        return (
            (status is None or r.status is status)
            and all(k in r.metadata and _as_text(r.metadata[k]) == v for k, v in where.items())
            and (mode == "include" or (r.maintenance is None) == excluded)
        )

    return keep


def page_query(request: Request, service: str | None, *, paged: bool = True) -> PageQuery:
    """The request's filters (and, if ``paged``, its ``limit`` and ``cursor``) over
    ``service`` (None: every service); 400 for any that is malformed."""
    if not request.query_string:  # no filter, no page: every record (maintenance=include)
        return PageQuery(service=service)
    args = request.get_args(keep_blank_values=True)
    status, where = _status_filter(args), _metadata_filter(args)
    mode = args.get("maintenance") or ("exclude" if status or where else "include")
    if mode not in ("include", "exclude", "only"):
        raise ApiException(
            400,
            "INVALID_FILTER",
            f"maintenance must be include, exclude or only, got {quoted(mode)}",
        )
    id_prefix, needle = _id_filter(args, "id_prefix"), _id_filter(args, "q").lower()
    return PageQuery(
        service=service,
        id_prefix=id_prefix,
        key_filter=(lambda k: needle in k.instance_id.lower()) if needle else None,
        record_filter=_record_filter(status, where, mode),
        after=_cursor(args, service) if paged else None,
        limit=_limit(args) if paged else None,
    )


async def caught_up(request: Request) -> None:
    """Before a listing: wait until its version will cover this router's own changes."""
    runtime: NatsSide | None = request.app.ctx.runtime
    feed = runtime.feed if runtime is not None else None
    if feed is not None:
        await feed.caught_up()


def listing_change(request: Request, version: str) -> str:
    """What a listing's entity tag is made from: the last change event's id, which
    writes that are no change (lease refreshes) do not move; ``version`` without a feed."""
    runtime: NatsSide | None = request.app.ctx.runtime
    feed = runtime.feed if runtime is not None else None
    return version if feed is None else feed.changed


def listing_version(request: Request, registry: Registry) -> str:
    """The event stream's id a listing read now reflects (read it with no await between
    it and the listing); a router not following events yet counts its own changes."""
    runtime: NatsSide | None = request.app.ctx.runtime
    feed = runtime.feed if runtime is not None else None
    if feed is None:
        return f"local:{registry.changes}"
    return feed.version
