"""aegis.wire.messages: what a register request may hold, and how the models round-trip."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from aegis.wire.messages import (
    ErrorBody,
    ErrorDetail,
    Instance,
    InstanceStatus,
    RegisterRequest,
    Reply,
    error_details,
)
from pydantic import ValidationError


def body(**overrides: Any) -> dict[str, Any]:
    """A valid minimal request body with ``overrides`` applied."""
    return {"service_name": "billing", "instance_id": "billing-1", **overrides}


def validate(data: dict[str, Any], **context: Any) -> RegisterRequest:
    return RegisterRequest.model_validate(data, context=context or None)


def rejected_locs(data: dict[str, Any], **context: Any) -> list[tuple[str | int, ...]]:
    with pytest.raises(ValidationError) as info:
        validate(data, **context)
    return [err["loc"] for err in info.value.errors()]


def nested_map(levels: int) -> dict[str, Any]:
    """A map nested ``levels`` deep, counting itself as level 1."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


def nested_list(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_minimal_body_gets_defaults() -> None:
    request = validate(body())
    assert (request.service_name, request.instance_id) == ("billing", "billing-1")
    assert request.metadata == {}
    assert request.session_id is None
    assert request.timestamp is None


def test_full_body_keeps_every_field() -> None:
    metadata = {
        "version": "1.4",
        "port": 8080,
        "weight": 0.5,
        "tls": True,
        "zone": None,
        "tags": ["a", "b"],
        "limits": {"cpu": 2},
    }
    request = validate(
        body(metadata=metadata, timestamp="2026-01-01T00:00:00Z", session_id="s" * 256)
    )
    assert request.metadata == metadata
    assert request.timestamp == "2026-01-01T00:00:00Z"
    assert request.session_id == "s" * 256


@pytest.mark.parametrize("name", ["a", "A-b_9", "x" * 64])
def test_service_name_accepted(name: str) -> None:
    assert validate(body(service_name=name)).service_name == name


@pytest.mark.parametrize(
    "name",
    ["", "x" * 65, "a.b", "a b", "a*", "a>", "café", "ñ", 42, None],
)
def test_service_name_rejected(name: object) -> None:
    assert rejected_locs(body(service_name=name)) == [("service_name",)]


@pytest.mark.parametrize("instance_id", ["i", "host.example:8080", "a-b_c.d:e", "i" * 128])
def test_instance_id_accepted(instance_id: str) -> None:
    assert validate(body(instance_id=instance_id)).instance_id == instance_id


@pytest.mark.parametrize("instance_id", ["", "i" * 129, "a b", "a/b", "a*", "ü", 7])
def test_instance_id_rejected(instance_id: object) -> None:
    assert rejected_locs(body(instance_id=instance_id)) == [("instance_id",)]


@pytest.mark.parametrize("missing", ["service_name", "instance_id"])
def test_required_fields(missing: str) -> None:
    data = body()
    del data[missing]
    assert rejected_locs(data) == [(missing,)]


def test_metadata_none_becomes_empty_map() -> None:
    assert validate(body(metadata=None)).metadata == {}


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param(["a"], id="list"),
        pytest.param("text", id="str"),
        pytest.param(3, id="int"),
        pytest.param({1: "x"}, id="int-key"),
        pytest.param({"k": {2: "x"}}, id="nested-int-key"),
        pytest.param({"k": b"raw"}, id="bytes"),
        pytest.param({"k": [b"raw"]}, id="bytes-in-list"),
        pytest.param({"k": float("nan")}, id="nan"),
        pytest.param({"k": float("inf")}, id="inf"),
        pytest.param({"k": [float("-inf")]}, id="-inf-in-list"),
        pytest.param({"k": msgpack.ExtType(5, b"x")}, id="ext-type"),
        pytest.param({"k": msgpack.Timestamp(0)}, id="timestamp"),
        pytest.param({"k": {1, 2}}, id="set"),
        pytest.param(nested_map(9), id="map-9-levels"),
        pytest.param({"k": nested_list(8)}, id="list-9-levels"),
        pytest.param({"k": 2**64}, id="int-over-uint64"),
        pytest.param({"k": -(2**63) - 1}, id="int-under-int64"),
    ],
)
def test_metadata_rejected(metadata: object) -> None:
    # A value MessagePack cannot carry must be a validation error, never a crash.
    assert rejected_locs(body(metadata=metadata)) == [("metadata",)]


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param(nested_map(8), id="map-8-levels"),
        pytest.param({"k": nested_list(7)}, id="list-8-levels"),
        pytest.param({"k": [{"a": [1, 2.5, True, None, "s"]}]}, id="mixed"),
        pytest.param({"big": 2**64 - 1, "small": -(2**63)}, id="int-range-ends"),
    ],
)
def test_metadata_accepted(metadata: dict[str, Any]) -> None:
    assert validate(body(metadata=metadata)).metadata == metadata


def test_metadata_size_default_limit_is_16_kib() -> None:
    big = {"blob": "x" * (16 * 1024)}
    assert rejected_locs(body(metadata=big)) == [("metadata",)]
    assert validate(body(metadata=big), max_metadata_bytes=32 * 1024).metadata == big


def test_metadata_size_limit_from_context_is_inclusive() -> None:
    metadata = {"blob": "x" * 300}
    size = len(msgpack.packb(metadata))
    assert validate(body(metadata=metadata), max_metadata_bytes=size).metadata == metadata
    assert rejected_locs(body(metadata=metadata), max_metadata_bytes=size - 1) == [("metadata",)]


@pytest.mark.parametrize(
    ("session_id", "ok"), [("", False), ("s" * 257, False), ("s", True), (5, False)]
)
def test_session_id_bounds(session_id: object, ok: bool) -> None:
    if ok:
        assert validate(body(session_id=session_id)).session_id == session_id
    else:
        assert rejected_locs(body(session_id=session_id)) == [("session_id",)]


def test_extra_fields_ignored() -> None:
    request = validate(body(priority=3, nested={"x": 1}))
    assert "priority" not in request.model_dump()


def test_error_details_are_wire_entries_without_input() -> None:
    secret = "TOPSECRET-value"
    with pytest.raises(ValidationError) as info:
        validate(
            body(
                service_name=f"{secret} !",
                instance_id="",
                session_id="x" * 300 + secret,
                metadata={"k": secret.encode()},
            )
        )
    details = error_details(info.value)
    assert all(isinstance(d, ErrorDetail) for d in details)
    assert {tuple(d.loc) for d in details} == {
        ("service_name",),
        ("instance_id",),
        ("session_id",),
        ("metadata",),
    }
    for detail in details:
        assert set(detail.model_dump()) == {"loc", "msg", "type"}
        assert detail.msg
        assert detail.type
    assert secret not in str([d.model_dump() for d in details])


INSTANCE = Instance(
    service_name="billing",
    instance_id="billing-1",
    status=InstanceStatus.UNHEALTHY,
    metadata={"v": [1, {"x": None}]},
    registered_at="2026-01-01T00:00:00.000Z",
    last_heartbeat_at="2026-01-01T00:00:05.000Z",
)


def test_instance_round_trips_through_json_and_msgpack() -> None:
    dumped = INSTANCE.model_dump(mode="json")
    assert dumped["status"] == "UNHEALTHY"
    assert Instance.model_validate(msgpack.unpackb(msgpack.packb(dumped))) == INSTANCE


@pytest.mark.parametrize(
    "reply",
    [
        Reply(ok=True, status=201, instance=INSTANCE),
        Reply(
            ok=False,
            status=409,
            error=ErrorBody(code="DUPLICATE_INSTANCE", message="taken"),
            existing=INSTANCE,
        ),
        Reply(
            ok=False,
            status=400,
            error=ErrorBody(
                code="VALIDATION_ERROR",
                message="bad",
                details=[ErrorDetail(loc=["metadata", 0], msg="m", type="t")],
            ),
        ),
    ],
)
def test_reply_round_trips(reply: Reply) -> None:
    wire = msgpack.packb(reply.model_dump(mode="json", exclude_none=True))
    assert Reply.model_validate(msgpack.unpackb(wire)) == reply
