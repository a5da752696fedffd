"""Wire contract v1 (now v1.2) over NATS: subjects, the request-id header, request and reply bodies.

Every NATS body is a MessagePack map with string keys; these models are the
single definition of what such a map may hold (``codec`` packs and unpacks them).
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, NamedTuple

import msgpack
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

SERVICE_NAME_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
INSTANCE_ID_PATTERN: Final = r"^[A-Za-z0-9._:-]{1,128}$"
DEFAULT_MAX_METADATA_BYTES: Final = 16 * 1024
MAX_METADATA_DEPTH: Final = 8
_INT_MIN: Final = -(2**63)  # MessagePack integers: int64 ... uint64
_INT_MAX: Final = 2**64 - 1

REGISTER_SUBJECT: Final = "ipc.service.register"
HEARTBEAT_SUBJECT: Final = "ipc.service.heartbeat"
DEREGISTER_SUBJECT: Final = "ipc.service.deregister"
DISCOVER_SUBJECT: Final = "ipc.service.discover"
EVENTS_PREFIX: Final = "ipc.events.service"
ROUTER_PREFIX: Final = "ipc.router"
ROUTER_STARTED_SUBJECT: Final = "ipc.router.started"
"""Each router publishes ``{router}`` here once it serves: followers of the registry reload."""
REQUEST_ID_HEADER: Final = "Aegis-Request-Id"
"""NATS header carrying the client's request id (the same on every retry) into router logs."""


SERVICE_SUBJECT_PREFIX: Final = "ipc.svc"
"""Per-service registry subjects (wire contract v1.2): ``ipc.svc.<service_name>.<verb>``.

The service's name is in the subject, so a NATS permission such as
``publish: "ipc.svc.billing.>"`` limits a credential to its own services, enforced
by the NATS server itself. The router answers them as the shared ``ipc.service.*``
subjects, and refuses (400) a body naming another service than the subject.
"""
REGISTER: Final = "register"
HEARTBEAT: Final = "heartbeat"
DEREGISTER: Final = "deregister"
DISCOVER: Final = "discover"
SHARED_SUBJECTS: Final = {
    REGISTER: REGISTER_SUBJECT,
    HEARTBEAT: HEARTBEAT_SUBJECT,
    DEREGISTER: DEREGISTER_SUBJECT,
    DISCOVER: DISCOVER_SUBJECT,
}
"""The v1 subject of each verb, shared by every service."""
_SERVICE_TOKEN_AT: Final = len(SERVICE_SUBJECT_PREFIX) + 1


def service_subject(service_name: str | None, verb: str) -> str:
    """Where requests of ``verb`` about ``service_name`` go: ``ipc.svc.<service_name>.<verb>``
    (None: the pattern ``ipc.svc.*.<verb>`` a router subscribes to)."""
    return f"{SERVICE_SUBJECT_PREFIX}.{service_name or '*'}.{verb}"


def service_heartbeat_subject(service_name: str | None, router_id: str) -> str:
    """One router's own heartbeat subject for ``service_name`` (None: the pattern), named in
    replies to requests sent on the per-service subjects."""
    return f"{service_subject(service_name, HEARTBEAT)}.{router_id}"


def subject_service(subject: str) -> str | None:
    """The service a per-service subject names; None for any other subject."""
    if not subject.startswith(SERVICE_SUBJECT_PREFIX + "."):
        return None
    end = subject.find(".", _SERVICE_TOKEN_AT)
    return subject[_SERVICE_TOKEN_AT:end] if end > _SERVICE_TOKEN_AT else None


def events_subject(service_name: str | None = None) -> str:
    """Where change events of ``service_name`` are published (None: every service)."""
    return f"{EVENTS_PREFIX}.{service_name or '*'}"


def router_heartbeat_subject(router_id: str) -> str:
    """One router's own heartbeat subject (named in register and heartbeat replies)."""
    return f"{ROUTER_PREFIX}.{router_id}.heartbeat"


def router_forward_subject(router_id: str) -> str:
    """Where other routers forward heartbeats to the router holding their lease."""
    return f"{ROUTER_PREFIX}.{router_id}.forward"


ServiceName = Annotated[str, StringConstraints(pattern=SERVICE_NAME_PATTERN)]
InstanceId = Annotated[str, StringConstraints(pattern=INSTANCE_ID_PATTERN)]
SESSION_ID_MAX: Final = 256
SEQ_MAX: Final = 2**63 - 1
SessionId = Annotated[str, StringConstraints(min_length=1, max_length=SESSION_ID_MAX)]
RequestSeq = Annotated[int, Field(strict=True, ge=0, le=SEQ_MAX)]
"""A session's request order: each request a session sends carries a higher one."""
SEQ_DESCRIPTION: Final = (
    "Optional: the session's request order, higher on each request it sends (the same on "
    "a retry of one request). A request whose seq is lower than that of the last "
    "registration or deregistration the router applied for the same instance and session "
    "was overtaken by it: the router answers 409 STALE_REQUEST and changes nothing. "
    "Requests without one are not ordered (v1 clients)."
)


class InstanceStatus(StrEnum):
    """Where an instance stands in its life cycle."""

    ONLINE = "ONLINE"
    UNHEALTHY = "UNHEALTHY"
    OFFLINE = "OFFLINE"


class ErrorCode(StrEnum):
    """Machine-readable error codes carried in ``error.code``."""

    MALFORMED_PAYLOAD = "MALFORMED_PAYLOAD"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    DUPLICATE_INSTANCE = "DUPLICATE_INSTANCE"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    INSTANCE_NOT_FOUND = "INSTANCE_NOT_FOUND"
    SESSION_MISMATCH = "SESSION_MISMATCH"
    STALE_REQUEST = "STALE_REQUEST"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
    OVERLOADED = "OVERLOADED"


def check_metadata(value: Any, *, max_depth: int = MAX_METADATA_DEPTH) -> None:
    """Raise ``ValueError`` unless ``value`` is JSON-compatible and shallow enough.

    Allowed: str, int, finite float, bool, None, lists and string-keyed maps,
    nested at most ``max_depth`` levels (the top-level map is level 1).
    """
    if _plainly_valid(value, max_depth):
        return
    # Iterative walk: hostile input must not be able to blow the Python stack.
    stack: list[tuple[Any, int, str]] = [(value, 1, "metadata")]
    while stack:
        item, depth, path = stack.pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue  # the common leaves first, by exact type
        if isinstance(item, dict):
            if depth > max_depth:
                raise ValueError(f"{path}: nested deeper than {max_depth} levels")
            for key, child in item.items():
                if not isinstance(key, str):
                    raise ValueError(f"{path}: map keys must be strings, got {type(key).__name__}")
                stack.append((child, depth + 1, f"{path}.{key}"))
        elif isinstance(item, list):
            if depth > max_depth:
                raise ValueError(f"{path}: nested deeper than {max_depth} levels")
            stack.extend((child, depth + 1, f"{path}[{i}]") for i, child in enumerate(item))
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError(f"{path}: NaN and infinity are not allowed")
        elif isinstance(item, int) and not isinstance(item, bool):
            if not _INT_MIN <= item <= _INT_MAX:
                raise ValueError(f"{path}: integer outside MessagePack's 64-bit range")
        elif item is not None and not isinstance(item, str | bool):
            raise ValueError(
                f"{path}: {type(item).__name__} is not a JSON-compatible value "
                "(allowed: str, int, float, bool, nil, arrays, string-keyed maps)"
            )


def _plainly_valid(value: Any, max_depth: int) -> bool:
    """Whether ``value`` passes ``check_metadata`` by the exact types of its members alone.

    The common metadata, checked without making a path for each member; False
    says nothing (a subclass, an error): ``check_metadata``'s walk judges it.
    """
    if type(value) is not dict and type(value) is not list:
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        container, depth = stack.pop()
        if depth > max_depth:
            return False
        children = container
        if type(container) is dict:
            for key in container:
                if type(key) is not str:
                    return False
            children = container.values()
        for child in children:
            kind = type(child)
            if kind is str or kind is bool or child is None:
                continue
            if kind is int:
                if not _INT_MIN <= child <= _INT_MAX:
                    return False
            elif kind is float:
                if not math.isfinite(child):
                    return False
            elif kind is dict or kind is list:
                stack.append((child, depth + 1))
            else:
                return False
    return True


# Longest ``RegisterRequest.timestamp`` accepted (the registrant's clock, kept nowhere).
TIMESTAMP_MAX: Final = 64


class RegisterRequest(BaseModel):
    """Body of a request on ``ipc.service.register``.

    Validate with ``context={"max_metadata_bytes": n}`` to change the
    encoded-size bound on ``metadata`` (default 16 KiB).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    service_name: ServiceName = Field(description="One safe NATS subject token.")
    instance_id: InstanceId
    metadata: dict[str, Any] = Field(default_factory=dict)
    timestamp: Annotated[str, StringConstraints(max_length=TIMESTAMP_MAX)] | None = Field(
        default=None, description="The registrant's clock, for information only."
    )
    session_id: SessionId | None = Field(
        default=None, description="Chosen by the registrant; proves ownership."
    )
    seq: RequestSeq | None = Field(default=None, description=SEQ_DESCRIPTION)

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_is_json_compatible(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise PydanticCustomError("metadata_not_map", "metadata must be a map")
        try:
            check_metadata(value)
        except ValueError as exc:
            raise PydanticCustomError("metadata_invalid", str(exc)) from None
        limit = DEFAULT_MAX_METADATA_BYTES
        if info.context and "max_metadata_bytes" in info.context:
            limit = int(info.context["max_metadata_bytes"])
        size = len(msgpack.packb(value))
        if size > limit:
            raise PydanticCustomError(
                "metadata_too_large",
                "metadata is {size} bytes encoded; the limit is {limit}",
                {"size": size, "limit": limit},
            )
        return value


class RegisterFields(NamedTuple):
    """A registration's fields once valid: what ``RegisterRequest`` holds, as a tuple.

    ``validate_register`` makes one without building the model for a
    well-formed body; the router takes either.
    """

    service_name: str
    instance_id: str
    metadata: dict[str, Any]
    timestamp: str | None
    session_id: str | None
    seq: int | None


# The patterns without anchors, for fullmatch: re's ``$`` also matches before a
# final newline, which pydantic's (Rust) regex does not.
_SERVICE_NAME: Final = re.compile(SERVICE_NAME_PATTERN[1:-1])
_INSTANCE_ID: Final = re.compile(INSTANCE_ID_PATTERN[1:-1])


def well_formed_registration(
    body: dict[str, Any], max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES
) -> RegisterFields | None:
    """``body``'s fields if it is a registration in its common shape, valid; else None.

    Accepts only what ``RegisterRequest`` accepts, with the same result: each
    field of the exact wire type within its bounds (metadata by
    ``check_metadata``'s shortcut). None says nothing about
    validity: anything else (a missing or mistyped field, a value pydantic would
    convert) is for the model to judge, and its errors are the 400's details.
    """
    service = body.get("service_name")
    instance = body.get("instance_id")
    if (
        type(service) is not str
        or type(instance) is not str
        or _SERVICE_NAME.fullmatch(service) is None
        or _INSTANCE_ID.fullmatch(instance) is None
    ):
        return None
    stamp = body.get("timestamp")
    if stamp is not None and (type(stamp) is not str or len(stamp) > TIMESTAMP_MAX):
        return None
    session = body.get("session_id")
    if session is not None and (type(session) is not str or not 0 < len(session) <= SESSION_ID_MAX):
        return None
    seq = body.get("seq")
    if seq is not None and (type(seq) is not int or not 0 <= seq <= SEQ_MAX):
        return None
    metadata = body.get("metadata")
    if metadata is None:
        metadata = {}
    elif type(metadata) is not dict or (
        not _plainly_valid(metadata, MAX_METADATA_DEPTH)
        or len(msgpack.packb(metadata)) > max_metadata_bytes
    ):
        return None
    return RegisterFields(service, instance, metadata, stamp, session, seq)


def validate_register(
    body: dict[str, Any], max_metadata_bytes: int = DEFAULT_MAX_METADATA_BYTES
) -> RegisterFields:
    """A registration body's fields; raises pydantic's ``ValidationError`` as
    ``RegisterRequest.model_validate`` does.

    The common well-formed body skips the model (``well_formed_registration``);
    anything else is the model's to accept or refuse, so a refusal's details
    are always the model's own.
    """
    fields = well_formed_registration(body, max_metadata_bytes)
    if fields is not None:
        return fields
    context = {"max_metadata_bytes": max_metadata_bytes}
    request = RegisterRequest.model_validate(body, context=context)
    return RegisterFields(
        request.service_name,
        request.instance_id,
        request.metadata,
        request.timestamp,
        request.session_id,
        request.seq,
    )


class InstanceRequest(BaseModel):
    """Body of ``ipc.service.heartbeat`` and ``ipc.service.deregister``: the owner speaks."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    service_name: ServiceName
    instance_id: InstanceId
    session_id: SessionId
    seq: RequestSeq | None = Field(default=None, description=SEQ_DESCRIPTION)


MAX_FILTER_KEYS: Final = 16
FilterValue = str | int | float | bool
MetadataFilter = Annotated[
    dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], FilterValue],
    Field(max_length=MAX_FILTER_KEYS),
]


def matches(metadata: dict[str, Any], where: dict[str, FilterValue] | None) -> bool:
    """Whether ``metadata`` has every top-level ``key: value`` of ``where`` (exactly)."""
    if not where:
        return True
    for key, wanted in where.items():
        if key not in metadata:
            return False
        value = metadata[key]
        # 1 == True in Python; on the wire they are different values.
        if value != wanted or isinstance(value, bool) is not isinstance(wanted, bool):
            return False
    return True


class DiscoverRequest(BaseModel):
    """Body of ``ipc.service.discover``; ``status`` is a status name or ``ANY``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    service_name: ServiceName
    status: Literal["ONLINE", "UNHEALTHY", "OFFLINE", "ANY"] = "ONLINE"
    include_maintenance: bool = Field(
        default=False,
        exclude_if=lambda value: not value,  # sent only when asked for
        description="Also instances an operator put in maintenance.",
    )
    metadata: MetadataFilter | None = Field(
        default=None,
        description="Optional filter: only instances whose metadata has each of these "
        "top-level keys with exactly this value (string, number or boolean); at most 16.",
    )

    @field_validator("status", mode="before")
    @classmethod
    def _status_any_case(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class Maintenance(BaseModel):
    """An operator's mark: the instance stays alive but is left out of discovery."""

    model_config = ConfigDict(frozen=True)

    reason: str
    since: str = Field(description="ISO-8601, UTC.")


class Instance(BaseModel):
    """A registered instance as the router reports it (never with its session)."""

    model_config = ConfigDict(frozen=True)

    service_name: str
    instance_id: str
    status: InstanceStatus
    metadata: dict[str, Any]
    registered_at: str = Field(description="ISO-8601, UTC.")
    last_heartbeat_at: str = Field(description="ISO-8601, UTC.")
    version: int | None = Field(
        default=None,
        description="Optional (absent from older routers): grows by one with each change "
        "event of this instance (registered, status changed, deregistered, removed), so a "
        "follower of the events can tell when it missed one.",
    )
    maintenance: Maintenance | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="Optional: present while an operator has put the instance in "
        "maintenance. It keeps its liveness status, but discovery, resolvers and filtered "
        "REST listings leave it out.",
    )


class ErrorDetail(BaseModel):
    """One validation failure: where, what, and its Pydantic error type."""

    loc: list[str | int]
    msg: str
    type: str


def error_details(exc: ValidationError) -> list[ErrorDetail]:
    """Pydantic's errors as wire ``{loc, msg, type}`` entries (no input echoed)."""
    return [
        ErrorDetail(loc=list(err["loc"]), msg=err["msg"], type=err["type"])
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


class ErrorBody(BaseModel):
    """The ``error`` member of a failed reply."""

    code: str
    message: str
    details: list[ErrorDetail] | None = None


class Reply(BaseModel):
    """Envelope of every reply: ``ok`` and ``status`` always, the rest by outcome."""

    ok: bool
    status: int
    instance: Instance | None = None
    instances: list[Instance] | None = Field(default=None, description="discover replies")
    error: ErrorBody | None = None
    existing: Instance | None = None
    retry_after: float | None = Field(
        default=None,
        description="409: seconds until the existing registration goes OFFLINE and can be "
        "taken over, if its owner sends nothing more. 503 OVERLOADED: seconds after which "
        "the router expects to have room; retry then, with jitter.",
    )
    heartbeat_interval: float | None = Field(
        default=None, description="register: seconds between the heartbeats the router wants."
    )
    ttl: float | None = Field(
        default=None, description="register: seconds without contact before UNHEALTHY."
    )
    heartbeat_subject: str | None = Field(
        default=None,
        description="register and heartbeat (optional; v1 clients may ignore it): the "
        "subject of the router holding this instance's lease. Heartbeats sent there skip "
        "a hop; on no responders or a timeout, send them to ipc.service.heartbeat.",
    )


class EventKind(StrEnum):
    """What happened to an instance."""

    REGISTERED = "registered"
    STATUS_CHANGED = "status_changed"
    DEREGISTERED = "deregistered"
    REMOVED = "removed"
    MAINTENANCE = "maintenance"  # put in or taken out of maintenance (see instance)


class ChangeEvent(BaseModel):
    """Published on ``ipc.events.service.<service_name>`` after every change."""

    model_config = ConfigDict(frozen=True)

    event: EventKind
    instance: Instance
    previous_status: InstanceStatus | None = None
    actor: str | None = Field(
        default=None,
        description="Optional (absent from older routers, and from changes no operator "
        "made): the name of the admin API token whose request caused the change "
        "(deregistered or maintenance), never its secret.",
    )
