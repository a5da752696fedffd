"""``GET /api/v1/admin/events``: change events as server-sent events, for callers without NATS."""

from __future__ import annotations

import json

import structlog
from aegis.router.rest.contract import ADMIN_PREFIX, SERVICE_NAME, ref
from aegis.router.rest.errors import UNAUTHORIZED, ApiException, quoted
from aegis.router.rest.event_feed import (
    EventFeed,
    Reset,
    Stream,
    StreamEndedError,
    TooManyStreamsError,
)
from aegis.router.rest.ports import NatsSide
from aegis.wire.rest import ErrorResponse
from sanic import Blueprint, Request
from sanic.response import BaseHTTPResponse
from sanic_ext import openapi

log = structlog.get_logger("aegis.router.rest.event_stream")

# Shared by every app (tests build many); the feed is ``request.app.ctx``'s runtime's.
bp = Blueprint("admin_events", url_prefix=ADMIN_PREFIX)

KEEP_ALIVE_SECONDS = 15.0  # proxies close connections that stay quiet for long (often 60 s)
RETRY_AFTER_SECONDS = 5
SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx would otherwise hold events back in its buffer
}
DESCRIPTION = (
    "Server-sent events (`text/event-stream`): every change event of every router, as "
    "on NATS. Each event has `event:` its kind (`registered`, `status_changed`, "
    "`deregistered`, `removed`, `maintenance`), `data:` the change event as JSON "
    "(`event`, `instance`, `previous_status`, and `actor`, the token name of the operator "
    "whose request caused it), and `id:`: on the JetStream store `<bucket>:<revision>`, "
    "the same on every router of the bucket (resume on any of them); on the memory "
    "store `<router-id>:<sequence>`. Reconnect with "
    "`Last-Event-ID` (or `last_event_id`) to get every retained event after it. An "
    "event `reset` (data: `{reason, message}`) says changes may have been missed: "
    "the id is another router's (or bucket's) or too old, NATS or the bucket watch was "
    "lost, or the client fell too far "
    "behind (the stream then closes): reload the snapshot. A comment line every 15 s "
    "keeps the connection open."
)


def _frame(feed: EventFeed, reset: Reset) -> bytes:
    body = json.dumps({"reason": reset.reason, "message": reset.message}, separators=(",", ":"))
    return f"id: {feed.event_id(reset.sequence)}\nevent: reset\ndata: {body}\n\n".encode()


def _feed(request: Request) -> EventFeed:
    """This router's feed; 503 ``NOT_READY`` before its NATS side is up."""
    runtime: NatsSide | None = request.app.ctx.runtime
    feed = runtime.feed if runtime is not None else None
    if feed is None:
        raise ApiException(503, "NOT_READY", "this router does not follow change events yet")
    return feed


def _last_event_id(request: Request) -> str | None:
    # The header wins: a browser's EventSource resends its first URL with a newer header.
    given: str | None = request.headers.get("last-event-id") or request.args.get("last_event_id")
    return given or None


def _open(request: Request, feed: EventFeed, last_event_id: str | None) -> Stream:
    service = request.args.get("service") or None
    if service is not None and not SERVICE_NAME.fullmatch(service):
        raise ApiException(
            400,
            "INVALID_SERVICE",
            f"{quoted(service)} is not a service name (letters, digits, _ -)",
        )
    try:
        return feed.open(service, last_event_id)
    except TooManyStreamsError as exc:
        raise ApiException(
            503,
            "TOO_MANY_STREAMS",
            f"{exc} (AEGIS_MAX_EVENT_STREAMS); retry later",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        ) from None
    except StreamEndedError:
        raise ApiException(503, "NOT_READY", "shutting down") from None


async def _pump(response: BaseHTTPResponse, feed: EventFeed, stream: Stream) -> str:
    """Send the stream until it ends; returns why it ended."""
    # Sanic sends the headers with the first bytes: a client should not wait for an event.
    await response.send(f": events of router {feed.router_id}\n\n".encode())
    if stream.reset is not None:
        await response.send(_frame(feed, stream.reset))
        stream.reset = None
    for entry in stream.backlog:
        await response.send(entry.frame)
    stream.backlog = []
    while True:
        try:
            item = await stream.next(KEEP_ALIVE_SECONDS)
        except StreamEndedError as ended:
            if ended.reset is not None:
                await response.send(_frame(feed, ended.reset))
            return ended.reason
        if item is None:
            await response.send(b": keep-alive\n\n")
        elif isinstance(item, Reset):
            await response.send(_frame(feed, item))
        else:
            await response.send(item.frame)


@bp.get("/events")
@openapi.summary("Follow change events")
@openapi.description(DESCRIPTION)
@openapi.parameter("service", str, "query", description="Only this service's events.")
@openapi.parameter(
    "last_event_id", str, "query", description="Resume after this id (as Last-Event-ID)."
)
@openapi.parameter(
    "Last-Event-ID", str, "header", description="Resume after this id (wins over the query)."
)
@openapi.response(200, {"text/event-stream": str}, "The stream; it stays open.")
@openapi.response(400, ref(ErrorResponse), "INVALID_SERVICE: not a service name.")
@openapi.response(401, ref(ErrorResponse), UNAUTHORIZED)
@openapi.response(
    503,
    ref(ErrorResponse),
    "TOO_MANY_STREAMS: AEGIS_MAX_EVENT_STREAMS are open (see Retry-After); "
    "NOT_READY: starting or shutting down.",
)
async def follow_events(request: Request) -> None:
    """Stream change events until the client leaves, falls behind, or the router stops."""
    feed = _feed(request)
    last_event_id = _last_event_id(request)
    stream = _open(request, feed, last_event_id)
    reason = "client_gone"  # a client hanging up cancels this handler
    log.info(
        "event_stream_opened",
        service=stream.service,
        last_event_id=last_event_id,
        replayed=len(stream.backlog),
        reset=stream.reset.reason if stream.reset else None,
        streams=feed.open_streams,
        origin=request.remote_addr or request.ip,
    )
    try:
        response = await request.respond(content_type="text/event-stream", headers=SSE_HEADERS)
        reason = await _pump(response, feed, stream)
        await response.eof()
    finally:
        stream.close()
        log.info(
            "event_stream_closed",
            service=stream.service,
            reason=reason,
            streams=feed.open_streams,
        )
