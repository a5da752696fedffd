"""NATS request handlers: raw bytes in, one MessagePack reply out, one log event.

Pure of NATS (the responder moves the bytes) and never raising, so every
request gets an answer whatever it holds.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import structlog
from aegis.router.domain import InstanceKey, InstanceRecord, Outcome, OwnerCheck, iso
from aegis.router.leases.membership import partition_of
from aegis.router.logging_setup import debug_enabled
from aegis.router.registry.operations import LimitExceededError, OwnerResult, Registry
from aegis.router.request_tally import request_tally
from aegis.router.store.port import StoreError
from aegis.wire.codec import pack, pack_map, pack_map_around, pack_value, unpack
from aegis.wire.messages import (
    DEREGISTER,
    DISCOVER,
    HEARTBEAT,
    REGISTER,
    SHARED_SUBJECTS,
    TIMESTAMP_MAX,
    DiscoverRequest,
    ErrorBody,
    ErrorCode,
    ErrorDetail,
    InstanceRequest,
    InstanceStatus,
    RegisterFields,
    Reply,
    error_details,
    router_forward_subject,
    router_heartbeat_subject,
    service_heartbeat_subject,
    service_subject,
    subject_service,
    validate_register,
)
from pydantic import ValidationError

# Seconds over which renewed registrations are summed into one INFO line.
RENEWAL_WINDOW = 5.0

log = structlog.get_logger("aegis.router.bus.endpoints")

M = TypeVar("M")

_STATUS_BY_OUTCOME = {
    Outcome.CREATED: 201,
    Outcome.RENEWED: 200,
    Outcome.DUPLICATE: 409,
    Outcome.STALE: 409,
}


ReplyMap = dict[str, Any]
"""A reply already in wire form, as ``pack`` would see it after ``model_dump``.

The hot successes (heartbeat, register, deregister) are built as
such maps: building and dumping the ``Reply`` model cost more than the rest
of a steady heartbeat. Keys follow ``Reply``'s field order and None members
are left out, so the bytes are those of the model (tests/unit/router/bus/
test_endpoints_reply_maps.py checks it).
"""


def encode(reply: Reply | ReplyMap | bytes) -> bytes:
    """MessagePack bytes of a reply (as is, if it is bytes already); absent members
    are left out."""
    if isinstance(reply, bytes):
        return reply
    return pack_map(reply) if isinstance(reply, dict) else pack(reply)


# A steady heartbeat's reply, {ok, status, instance, heartbeat_subject}, cut
# around the instance: the record packs itself (InstanceRecord.packed_with_contact).
_STEADY_HEAD, _ = pack_map_around(
    {"ok": True, "status": 200, "instance": None, "heartbeat_subject": ""}, "instance"
)


# One entry per heartbeat subject named in replies: with the per-service subjects,
# one per service (and router holding leases).
@functools.lru_cache(maxsize=4096)
def _steady_tail(subject: str) -> bytes:
    return pack_value("heartbeat_subject") + pack_value(subject)


def steady_heartbeat_reply(record: InstanceRecord, contact: datetime, subject: str) -> bytes:
    """The bytes of ``_owner_reply``'s 200 for ``record`` heard at ``contact``, cheaper."""
    return record.packed_with_contact(contact, _STEADY_HEAD, _steady_tail(subject))


def error_reply(
    status: int,
    code: ErrorCode,
    message: str,
    details: list[ErrorDetail] | None = None,
    **extra: Any,
) -> Reply:
    """A failed reply with the standard error body."""
    error = ErrorBody(code=code, message=message, details=details)
    return Reply(ok=False, status=status, error=error, **extra)


def subject_mismatch_reply(named: object, subject: str | None) -> Reply:
    """400: the body of a request on a per-service subject names another service; nothing
    changed. Both names are said, as far as they can be shown."""
    body_name = _loggable(named)
    subject_name = subject_service(subject or "")
    message = (
        f"service_name {body_name!r} in the body differs from {subject_name!r} in the "
        f"subject {(subject or '')[:200]}: a request on ipc.svc.<service>.* must name that "
        "service; nothing changed"
    )
    detail = ErrorDetail(loc=["service_name"], msg=message, type="subject_mismatch")
    return error_reply(400, ErrorCode.VALIDATION_ERROR, message, [detail])


def decode_request(data: bytes, max_request_bytes: int) -> dict[str, Any] | Reply:
    """The request's map, or the error reply that explains why there is none."""
    if len(data) > max_request_bytes:
        return error_reply(
            413,
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"request is {len(data)} bytes; the limit is {max_request_bytes}",
        )
    try:
        body = unpack(data)
    except Exception as exc:  # msgpack raises many types for bad input
        # Some carry no message (FormatError: a byte no MessagePack type starts with).
        reason = str(exc) or (type(exc).__doc__ or type(exc).__name__).strip()
        return error_reply(
            400, ErrorCode.MALFORMED_PAYLOAD, f"body is not valid MessagePack: {reason:.200}"
        )
    if not isinstance(body, dict):
        return error_reply(
            400,
            ErrorCode.MALFORMED_PAYLOAD,
            f"body must be a MessagePack map, got {type(body).__name__}",
        )
    return body


# Not frozen: a frozen dataclass sets each field through object.__setattr__,
# a cost on every request for no safety gained (each is built and used once).
@dataclass(slots=True)
class Handled:
    """A reply and how to log it: ``result`` names the outcome."""

    reply: Reply | ReplyMap | bytes
    result: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    quiet: bool = False  # hot-path successes (heartbeats) log at debug
    request: object = None  # its service and instance join the log line


Validate = Callable[[dict[str, Any]], M]
"""A decoded body as its endpoint's request; raises pydantic's ``ValidationError``."""

Action = Callable[[M], Awaitable[Handled]]
"""What an endpoint does with a validated request."""

AtOnce = Callable[[Mapping[str, Any]], bytes | Action[Any] | None]
"""An endpoint's fast lane, on a decoded, unvalidated body: the reply, if it needs no
wait; else the action that goes on from what it found out (None: the endpoint's own)."""

Handler = Callable[[bytes], Awaitable[bytes]]
"""The reply to a request's bytes, when it is ready."""


class Endpoint(Generic[M]):
    """One subject: decode, ``validate``, run ``action``, encode.

    ``scoped``: it serves the per-service subjects (``ipc.svc.<service>.*``), is given
    the subject of each request, and refuses a body naming another service (400,
    ``subject_mismatch_reply``) before anything else is done with it.
    """

    def __init__(
        self,
        event: str,
        validate: Validate[M],
        action: Action[M],
        *,
        max_request_bytes: int,
        at_once: AtOnce | None = None,
        at_once_result: str = "ok",
        scoped: bool = False,
    ) -> None:
        self.event = event
        self.scoped = scoped
        self._at_once = at_once
        self._at_once_result = at_once_result
        self._action = action
        self._max_request_bytes = max_request_bytes
        self._validate = validate
        self._answered = request_tally(event, at_once_result)

    async def __call__(
        self,
        data: bytes,
        *,
        subject: str | None = None,
        body: dict[str, Any] | None = None,
        action: Action[M] | None = None,
    ) -> bytes:
        """The reply to one request body. Never raises.

        ``subject``: where it came, read by a scoped endpoint only. ``body`` (``data``
        decoded) and ``action`` come from ``answer_now``, when its fast lane went part of
        the way: the request goes on from there.
        """
        started = time.perf_counter()
        request: M | None = None
        # One coroutine for the whole request: decoding and validating are
        # plain calls, and only the action is awaited (every coroutine level
        # costs time on every request).
        try:
            parsed = self._parse(data, body, subject)
            if isinstance(parsed, Handled):
                handled = parsed
            else:
                request = parsed
                handled = await (action or self._action)(request)
                handled.request = request
        except Exception as exc:
            handled = self._failed(exc, request)
        return self._finish(handled, started)

    def answer_now(
        self, data: bytes, request_id: str | None = None, subject: str | None = None
    ) -> bytes | Handler:
        """The reply, if the request can be answered without waiting for anything (a
        steady heartbeat, a registration repeated as is); else what to await for it.

        Lets the responder answer in its callback with no task of its own. The
        body is decoded but not validated here: ``at_once`` answers only a
        request naming what the registry already holds, whose values passed the
        same checks when they were registered (see
        ``RegistryActions.heartbeat_at_once``). Anything else (a refusal, an
        error, a request that must wait) is validated in full by ``__call__``,
        which goes on from the decoded body and what ``at_once`` found out, so
        nothing is done twice. A body that did not decode to a map, or (on a scoped
        endpoint) that names another service than ``subject``, is left whole to
        ``__call__``, which says why.
        """
        at_once = self._at_once
        if at_once is None or len(data) > self._max_request_bytes:
            return self
        started = time.perf_counter()
        try:
            body = unpack(data)
            if type(body) is not dict:
                return self
            # The one check a per-service subject adds to a steady heartbeat: a token
            # compare, before anything is looked up.
            if self.scoped and body.get("service_name") != subject_service(subject or ""):
                return self
            reply = at_once(body)
        except Exception:
            return self  # __call__ meets it again, and answers and reports it
        if not isinstance(reply, bytes):
            return functools.partial(self.__call__, body=body, action=reply)
        if debug_enabled():  # no task of its own: no bound request id
            fields = {"service": body["service_name"], "instance": body["instance_id"]}
            if request_id is not None:
                fields["request_id"] = request_id
            log.debug(self.event, result=self._at_once_result, **fields)
        self._answered.add(time.perf_counter() - started)
        return reply

    def _finish(self, handled: Handled, started: float) -> bytes:
        """Log, count and encode a handled request."""
        # A quiet success at INFO logs nothing: skip building its fields too.
        if not handled.quiet or debug_enabled():
            emit = log.debug if handled.quiet else log.info
            emit(self.event, result=handled.result, **_log_fields(handled))
        request_tally(self.event, handled.result).add(time.perf_counter() - started)
        return encode(handled.reply)

    def _parse(
        self, data: bytes, body: dict[str, Any] | None = None, subject: str | None = None
    ) -> M | Handled:
        """The validated request, or the reply refusing it; ``body``: ``data`` decoded
        already."""
        if body is None:
            decoded = decode_request(data, self._max_request_bytes)
            if isinstance(decoded, Reply):
                return Handled(decoded, "too_large" if decoded.status == 413 else "malformed")
            body = decoded
        if self.scoped:
            named = body.get("service_name")
            if type(named) is str and named != subject_service(subject or ""):
                mismatch: dict[str, Any] = {
                    "service": _loggable(named),
                    "subject": (subject or "")[:200],
                    "instance": _loggable(body.get("instance_id")),
                }
                reply = subject_mismatch_reply(named, subject)
                return Handled(reply, "subject_mismatch", mismatch)
        try:
            return self._validate(body)
        except ValidationError as exc:
            details = error_details(exc)
            fields = {
                "service": _loggable(body.get("service_name")),
                "instance": _loggable(body.get("instance_id")),
                "errors": [{"loc": d.loc, "type": d.type} for d in details],
            }
            reply = error_reply(
                400, ErrorCode.VALIDATION_ERROR, "request failed validation", details
            )
            return Handled(reply, "invalid", fields)

    def _failed(self, exc: Exception, request: M | None) -> Handled:
        """The reply to a request whose handling raised ``exc``."""
        if request is None:  # decoding or validating itself failed: a bug
            log.exception(self.event, result="error")
            return Handled(_internal_error(), "error")
        where = _where(request)
        if isinstance(exc, StoreError):
            reply = error_reply(503, ErrorCode.STORE_UNAVAILABLE, "registry store unavailable")
            return Handled(reply, "store_unavailable", {**where, "reason": str(exc)})
        if isinstance(exc, LimitExceededError):
            reply = error_reply(429, ErrorCode.LIMIT_EXCEEDED, str(exc))
            return Handled(reply, "limit_exceeded", where)
        log.exception(f"{self.event}_failed", **where)
        return Handled(_internal_error(), "error", where)


def _where(request: object) -> dict[str, Any]:
    """The service and instance a request names, for its log line."""
    return {
        "service": getattr(request, "service_name", None),
        "instance": getattr(request, "instance_id", None),
    }


def _log_fields(handled: Handled) -> Mapping[str, Any]:
    if handled.request is None:
        return handled.fields
    return {**_where(handled.request), **handled.fields}


def _internal_error() -> Reply:
    return error_reply(500, ErrorCode.INTERNAL_ERROR, "internal router error")


def _loggable(value: object) -> str | None:
    """A request field as it may appear in a log line: short strings only."""
    return value[:128] if isinstance(value, str) else None


Forward = Callable[[str, InstanceRequest], Awaitable[Reply | None]]
"""Passes a heartbeat to the router holding its lease; None if that router did not answer."""


# Not frozen, as Handled: built once per heartbeat that misses the fast lane.
@dataclass(slots=True)
class Asked:
    """What was asked of a heartbeat as it arrived (``RegistryActions._ask``), so the rest
    of its way asks none of it again."""

    partition: int  # its key's, hashed once
    from_memory: bool  # Membership.may_answer_from_memory said yes (and it was not steady)


class RenewalSummary:
    """Counts renewed registrations (debug lines each) and says how many at INFO once
    per ``window`` seconds in which any came: a whole fleet re-registering after a
    restart is one line, not one per instance."""

    def __init__(self, window: float = RENEWAL_WINDOW) -> None:
        self._window = window
        self._count = 0

    def add(self) -> None:
        """One more renewal; the first of a window schedules the summary."""
        self._count += 1
        if self._count == 1:
            asyncio.get_running_loop().call_later(self._window, self._say)

    def _say(self) -> None:
        log.info("registrations_renewed", count=self._count, window_s=self._window)
        self._count = 0


class RegistryActions:
    """What each subject does with a validated request.

    With ``forward``, a heartbeat whose lease another router holds goes there;
    without, every heartbeat is answered here (the forward subject's actions).
    With ``per_service``, the actions of the per-service subjects: the heartbeat subject
    their replies name is the holder's per-service one (``ipc.svc.<service>.heartbeat.
    <router>``), which a credential limited to its services may publish on.
    """

    def __init__(
        self, registry: Registry, forward: Forward | None = None, *, per_service: bool = False
    ) -> None:
        self._registry = registry
        self._per_service = per_service
        # Bound once, asked of every heartbeat.
        self._now = registry.now
        self._may_answer_from_memory = registry.leases.membership.may_answer_from_memory
        self._heard = registry.liveness.heard
        self._membership = registry.leases.membership
        self._self_id = self._membership.self_id
        self._own_subject = router_heartbeat_subject(self._self_id)
        self._forward = forward
        self._renewals = RenewalSummary()

    def _holder_subject(self, key: InstanceKey) -> str:
        return self._heartbeat_subject(key.service_name, self._membership.owner(key))

    def _heartbeat_subject(self, service_name: str, router_id: str) -> str:
        """The subject replies name for heartbeats of ``service_name`` to ``router_id``."""
        if self._per_service:
            return _service_heartbeat_subject(service_name, router_id)
        return router_heartbeat_subject(router_id)

    def _own_subject_of(self, service_name: str) -> str:
        """``_heartbeat_subject`` for this router (the shared one computed once)."""
        if self._per_service:
            return _service_heartbeat_subject(service_name, self._self_id)
        return self._own_subject

    async def register(self, request: RegisterFields) -> Handled:
        """201 new / 200 renewed / 409 taken, with the router's liveness timings."""
        decision = await self._registry.register(request)
        status = _STATUS_BY_OUTCOME[decision.outcome]
        timings = self._registry.timings
        reply: Reply | ReplyMap
        if decision.outcome is Outcome.STALE:
            reply = stale_reply(request, decision.record)
        elif decision.outcome is Outcome.DUPLICATE:
            instance = decision.record.to_public()
            free_at = self._registry.offline_at(decision.record)
            wait = max(0.0, (free_at - self._registry.now()) / timedelta(seconds=1))
            reply = error_reply(
                409,
                ErrorCode.DUPLICATE_INSTANCE,
                f"instance {request.instance_id!r} of {request.service_name!r} is registered "
                f"by another session; unless its owner keeps heartbeating it goes OFFLINE "
                f"and can be taken over at {iso(free_at)} (in {wait:.1f}s)",
                existing=instance,
                retry_after=round(wait, 3),
            )
        else:
            # Reply's float fields: an int setting must still go out as a float.
            reply = {
                "ok": True,
                "status": status,
                "instance": decision.record.to_public_map(),
                "heartbeat_interval": float(timings.heartbeat_interval),
                "ttl": float(timings.unhealthy_after),
                "heartbeat_subject": self._holder_subject(decision.record.key),
            }
        # A new instance is logged once, by the registry's instance_registered
        # event (with the same request id); the request's own line is detail.
        created = decision.outcome is Outcome.CREATED
        renewed = decision.outcome is Outcome.RENEWED
        if renewed:
            self._renewals.add()  # a fleet re-registering after a restart: one INFO line
        return Handled(reply, decision.outcome.value, {"status": status}, quiet=created or renewed)

    def heartbeat_at_once(self, body: Mapping[str, Any]) -> bytes | Action[InstanceRequest] | None:
        """A steady heartbeat's 200 from its decoded, unvalidated ``body``, from memory with
        nothing to wait for; else how its validated request goes on (``heartbeat`` with
        what was asked here), or None when ``body`` names no instance.

        Validation by identity: the reply comes only for an instance the
        registry holds ONLINE under exactly this session, so the three strings
        equal ones that passed ``InstanceRequest``'s checks at registration,
        and validating them again could not refuse them (it transforms
        nothing). Anything else is validated in full by the endpoint. Saves
        the model, most of a steady heartbeat's own cost. It trusts the store:
        routers only write what they validated (micro-discovered instances have
        no session, so never match), and a record put in the bucket by hand with
        names outside the contract would be answered here where the full path
        refuses the request.
        """
        owner = _owner_fields(body)
        if owner is None:
            return None
        asked = self._ask(*owner)
        if isinstance(asked, bytes):
            return asked
        return functools.partial(self.heartbeat, asked=asked)

    def repeated_registration_reply(
        self, body: Mapping[str, Any], max_metadata_bytes: int
    ) -> bytes | None:
        """The 200 ``renewed`` for a registration this router holds already applied, as
        is (same session, ``seq`` and metadata), from memory; None for anything else.

        Such a request is a retry whose first reply its client missed, or a v1
        client renewing. Its only effect on the full path would be a contact, which
        this keeps where the sweep looks, as for a steady heartbeat. Validation by
        identity, as in ``heartbeat_at_once``: the names and metadata equal what
        passed the checks at registration (metadata compared packed, so ``1`` and
        ``True`` differ); only ``timestamp``, which the record does not keep, is
        checked here.
        """
        owner = _owner_fields(body)
        if owner is None:
            return None
        key, session, seq = owner
        # Most registrations are of an instance not held yet, or another session's: a
        # look-up settles those before the metadata is packed.
        held = self._registry.instance(key)
        if held is None or held.session_id != session:
            return None
        stamp = body.get("timestamp")
        if stamp is not None and (type(stamp) is not str or len(stamp) > TIMESTAMP_MAX):
            return None
        metadata = body.get("metadata")
        packed = pack_value({} if metadata is None else metadata)
        if len(packed) > max_metadata_bytes:
            return None
        partition = partition_of(key)
        now = self._now()
        at = now.timestamp()
        if not self._may_answer_from_memory(partition, at):
            return None
        stored = self._heard(key, session, at, partition, seq=seq)
        if stored is None or stored.seq != seq or pack_value(stored.metadata) != packed:
            return None
        timings = self._registry.timings
        return encode(
            {
                "ok": True,
                "status": 200,
                "instance": replace(stored, last_heartbeat_at=now).to_public_map(),
                "heartbeat_interval": float(timings.heartbeat_interval),
                "ttl": float(timings.unhealthy_after),
                "heartbeat_subject": self._own_subject_of(key.service_name),
            }
        )

    def _ask(self, key: InstanceKey, session_id: str, seq: int | None) -> bytes | Asked:
        """What a heartbeat's way depends on, asked once: whether this router may answer it
        from memory (the leases' question) and, if so, whether it is steady; the reply
        then, else what was asked."""
        partition = partition_of(key)
        now = self._now()
        at = now.timestamp()
        if not self._may_answer_from_memory(partition, at):
            return Asked(partition, from_memory=False)
        stored = self._heard(key, session_id, at, partition, seq=seq)
        if stored is None:
            return Asked(partition, from_memory=True)
        return steady_heartbeat_reply(stored, now, self._own_subject_of(key.service_name))

    async def heartbeat(self, request: InstanceRequest, asked: Asked | None = None) -> Handled:
        """200 with the instance (ONLINE again), or 404 / 403 / 409; from the lease holder.

        ``asked``: what the fast lane asked of it already (``heartbeat_at_once``).
        """
        key = _key(request)
        if asked is None:
            first = self._ask(key, request.session_id, request.seq)
            if isinstance(first, bytes):
                return Handled(first, "ok", quiet=True)
            asked = first
        holder = self._membership.holder_of(asked.partition)
        if self._forward is not None and holder != self._self_id:
            forwarded = await self._forward(holder, request)
            if forwarded is not None:
                if self._per_service:
                    forwarded = self._per_service_reply(forwarded, request.service_name)
                return Handled(forwarded, "forwarded", {"router": holder}, quiet=True)
        # Not steady, or not this router's to keep in memory (a holder that did not
        # answer the forward may be dead, and the lease with someone else by now).
        result = await self._registry.write_heartbeat(
            key, request.session_id, store=not asked.from_memory, seq=request.seq
        )
        ok = result.check is OwnerCheck.OK
        # The holder as it is now: the lease may have moved meanwhile.
        holder = self._membership.holder_of(asked.partition)
        subject = self._heartbeat_subject(request.service_name, holder)
        return _owner_reply(result, request, quiet=ok, subject=subject)

    def _per_service_reply(self, reply: Reply, service_name: str) -> Reply:
        """A forwarded heartbeat's reply (the holder names its shared subject, as for any
        forward) naming the holder's per-service subject instead."""
        router_id = _router_of(reply.heartbeat_subject)
        if router_id is None:
            return reply
        subject = _service_heartbeat_subject(service_name, router_id)
        return reply.model_copy(update={"heartbeat_subject": subject})

    async def deregister(self, request: InstanceRequest) -> Handled:
        """200 with the instance (OFFLINE now), or 404 / 403."""
        result = await self._registry.deregister(_key(request), request.session_id, request.seq)
        return _owner_reply(result, request, quiet=False)

    async def discover(self, request: DiscoverRequest) -> Handled:
        """200 with the instances of one service in one status (or ANY)."""
        status = None if request.status == "ANY" else InstanceStatus(request.status)
        records = await self._registry.instances(request.service_name, status, request.metadata)
        if not request.include_maintenance:
            records = [r for r in records if r.maintenance is None]
        reply = Reply(ok=True, status=200, instances=[r.to_public() for r in records])
        return Handled(reply, "ok", {"count": len(records)}, quiet=True)


@functools.lru_cache(maxsize=4096)
def _service_heartbeat_subject(service_name: str, router_id: str) -> str:
    return service_heartbeat_subject(service_name, router_id)


def _router_of(subject: str | None) -> str | None:
    """The router a shared heartbeat subject (``ipc.router.<id>.heartbeat``) names."""
    if subject is None:
        return None
    prefix, suffix = router_heartbeat_subject("|").split("|")
    if not (subject.startswith(prefix) and subject.endswith(suffix)):
        return None
    return subject[len(prefix) : len(subject) - len(suffix)] or None


def _owner_fields(body: Mapping[str, Any]) -> tuple[InstanceKey, str, int | None] | None:
    """The instance, session and ``seq`` an unvalidated body names, if each has the
    wire type; None otherwise (the full path says why)."""
    service = body.get("service_name")
    instance = body.get("instance_id")
    session = body.get("session_id")
    if type(service) is not str or type(instance) is not str or type(session) is not str:
        return None
    seq = body.get("seq")
    if seq is not None and (type(seq) is not int or seq < 0):
        return None
    return InstanceKey(service, instance), session, seq


def _key(request: InstanceRequest) -> InstanceKey:
    return InstanceKey(request.service_name, request.instance_id)


def _owner_reply(
    result: OwnerResult, request: InstanceRequest, *, quiet: bool, subject: str | None = None
) -> Handled:
    if result.check is OwnerCheck.NOT_FOUND:
        reply = error_reply(
            404,
            ErrorCode.INSTANCE_NOT_FOUND,
            f"instance {request.instance_id!r} of {request.service_name!r} is not registered "
            "(or is OFFLINE); register it again",
        )
        return Handled(reply, "not_found")
    if result.check is OwnerCheck.SESSION_MISMATCH:
        reply = error_reply(403, ErrorCode.SESSION_MISMATCH, _mismatch_message(result, request))
        return Handled(reply, "session_mismatch")
    if result.check is OwnerCheck.STALE:
        assert result.record is not None
        return Handled(stale_reply(request, result.record), "stale")
    assert result.record is not None
    done: ReplyMap = {"ok": True, "status": 200, "instance": result.record.to_public_map()}
    if subject is not None:
        done["heartbeat_subject"] = subject
    return Handled(done, "ok", quiet=quiet)


def stale_reply(request: RegisterFields | InstanceRequest, record: InstanceRecord) -> Reply:
    """409: a later registration or deregistration of the same session overtook this
    request; nothing changed."""
    return error_reply(
        409,
        ErrorCode.STALE_REQUEST,
        f"request seq {request.seq} for instance {request.instance_id!r} of "
        f"{request.service_name!r} was overtaken by this session's own request seq "
        f"{record.seq}; nothing changed",
        instance=record.to_public(),
    )


def _mismatch_message(result: OwnerResult, request: InstanceRequest) -> str:
    instance = f"instance {request.instance_id!r} of {request.service_name!r}"
    if result.record is not None and result.record.metadata.get("source") == "micro":
        return (
            f"{instance} is a NATS micro service the router found on the bus and tracks by "
            "polling $SRV.INFO; it cannot be heartbeated or deregistered over the registry "
            "subjects (it goes UNHEALTHY, then OFFLINE, when it stops answering)"
        )
    return f"{instance} belongs to another session"


def endpoints(
    registry: Registry,
    *,
    max_request_bytes: int,
    max_metadata_bytes: int,
    forward: Forward | None = None,
    shared_subjects: bool = True,
) -> dict[str, Endpoint[Any]]:
    """Every NATS subject the router answers, with its endpoint.

    The per-service subjects (``ipc.svc.*.<verb>``, one wildcard subscription
    each) and this router's own per-service heartbeat subject; with
    ``shared_subjects``, the v1 shared subjects and this router's own shared
    heartbeat subject too (which replies name to SDKs); and the forward subject
    (for other routers).
    """
    self_id = registry.leases.membership.self_id
    limits: dict[str, Any] = {"max_request_bytes": max_request_bytes}
    local = RegistryActions(registry)
    # Answered here whatever the membership says (never forwarded again); a steady
    # one from memory in the callback, as on the router's own heartbeat subject.
    forward_endpoint = Endpoint(
        "heartbeat",
        InstanceRequest.model_validate,
        local.heartbeat,
        at_once=local.heartbeat_at_once,
        **limits,
    )
    served: dict[str, Endpoint[Any]] = {}
    if shared_subjects:
        shared = _verbs(RegistryActions(registry, forward), max_metadata_bytes, limits)
        served[router_heartbeat_subject(self_id)] = shared[HEARTBEAT]
        served[router_forward_subject(self_id)] = forward_endpoint
        served |= {SHARED_SUBJECTS[verb]: endpoint for verb, endpoint in shared.items()}
    served[router_forward_subject(self_id)] = forward_endpoint  # kept in place if there
    scoped = RegistryActions(registry, forward, per_service=True)
    per_service = _verbs(scoped, max_metadata_bytes, {**limits, "scoped": True})
    served[service_heartbeat_subject(None, self_id)] = per_service[HEARTBEAT]
    served |= {service_subject(None, verb): endpoint for verb, endpoint in per_service.items()}
    return served


def _verbs(
    actions: RegistryActions, max_metadata_bytes: int, options: dict[str, Any]
) -> dict[str, Endpoint[Any]]:
    """The register, heartbeat, deregister and discover endpoints over ``actions``."""
    return {
        REGISTER: Endpoint(
            "registration",
            functools.partial(validate_register, max_metadata_bytes=max_metadata_bytes),
            actions.register,
            at_once=functools.partial(
                actions.repeated_registration_reply, max_metadata_bytes=max_metadata_bytes
            ),
            at_once_result="renewed",
            **options,
        ),
        HEARTBEAT: Endpoint(
            "heartbeat",
            InstanceRequest.model_validate,
            actions.heartbeat,
            at_once=actions.heartbeat_at_once,
            **options,
        ),
        DEREGISTER: Endpoint(
            "deregistration", InstanceRequest.model_validate, actions.deregister, **options
        ),
        DISCOVER: Endpoint(
            "discovery", DiscoverRequest.model_validate, actions.discover, **options
        ),
    }
