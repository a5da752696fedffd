"""The ``ipc.service.register`` handler: raw bytes in, one MessagePack reply out, one log line."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from aegis.router.handlers import Endpoint, endpoints
from aegis.router.registry import Registry
from aegis.router.store import MemoryStore, StoreError
from structlog.testing import capture_logs

from tests.support.wire import INSTANCE_KEYS

SESSION = "sess-Zq81xLw0"
OTHER_SESSION = "sess-Other9kK"


def body(**overrides: Any) -> dict[str, Any]:
    return {
        "service_name": "billing",
        "instance_id": "b-1",
        "metadata": {"v": "1"},
        "session_id": SESSION,
        **overrides,
    }


def handler(registry: Any = None, max_request_bytes: int = 64 * 1024) -> Endpoint[Any]:
    handlers = endpoints(
        registry or Registry(MemoryStore()),
        max_request_bytes=max_request_bytes,
        max_metadata_bytes=1024,
    )
    return handlers["ipc.service.register"]


async def call(h: Endpoint[Any], data: dict[str, Any] | bytes) -> tuple[dict[str, Any], bytes]:
    raw = await h(data if isinstance(data, bytes) else msgpack.packb(data))
    assert isinstance(raw, bytes)
    return msgpack.unpackb(raw), raw


class FailingRegistry:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def register(self, request: Any) -> Any:
        raise self.exc


async def test_created_reply_shape() -> None:
    reply, _ = await call(handler(), body())
    assert set(reply) == {"ok", "status", "instance", "heartbeat_interval", "ttl"}
    assert (reply["ok"], reply["status"]) == (True, 201)
    assert (reply["heartbeat_interval"], reply["ttl"]) == (5.0, 15.0)
    instance = reply["instance"]
    assert set(instance) == INSTANCE_KEYS
    assert (instance["service_name"], instance["instance_id"]) == ("billing", "b-1")
    assert (instance["status"], instance["metadata"]) == ("ONLINE", {"v": "1"})
    assert instance["registered_at"] == instance["last_heartbeat_at"]
    assert instance["registered_at"].endswith("Z")


async def test_same_session_renews_with_200_and_keeps_metadata() -> None:
    h = handler()
    first, _ = await call(h, body())
    reply, _ = await call(h, body(metadata={"v": "2"}))
    assert (reply["ok"], reply["status"]) == (True, 200)
    assert reply["instance"]["metadata"] == {"v": "1"}
    assert reply["instance"]["registered_at"] == first["instance"]["registered_at"]


async def test_other_session_is_409_with_existing() -> None:
    h = handler()
    first, _ = await call(h, body())
    reply, _ = await call(h, body(session_id=OTHER_SESSION, metadata={"v": "2"}))
    assert (reply["ok"], reply["status"]) == (False, 409)
    assert reply["error"]["code"] == "DUPLICATE_INSTANCE"
    assert reply["error"]["message"]
    assert reply["existing"] == first["instance"]
    assert "instance" not in reply


async def test_validation_error_has_one_detail_per_invalid_field() -> None:
    bad = body(service_name="no spaces", instance_id="", metadata=[1], session_id="")
    reply, _ = await call(handler(), bad)
    assert (reply["ok"], reply["status"]) == (False, 400)
    assert reply["error"]["code"] == "VALIDATION_ERROR"
    details = reply["error"]["details"]
    assert sorted(d["loc"] for d in details) == [
        ["instance_id"],
        ["metadata"],
        ["service_name"],
        ["session_id"],
    ]
    assert all(set(d) == {"loc", "msg", "type"} for d in details)


async def test_metadata_limit_comes_from_handler() -> None:
    reply, _ = await call(handler(), body(metadata={"blob": "x" * 2000}))
    assert reply["error"]["details"][0]["loc"] == ["metadata"]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"\xc1garbage", id="garbage"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\x82\xa1a", id="truncated-map"),
        pytest.param(msgpack.packb(["billing", "b-1"]), id="array"),
        pytest.param(msgpack.packb(42), id="int"),
        pytest.param(b"\xa3\xff\xfe\xfd", id="invalid-utf8-str"),
        pytest.param(b"\x81\xa2\xff\xfe\x01", id="invalid-utf8-key"),
    ],
)
async def test_malformed_payload(raw: bytes) -> None:
    reply, _ = await call(handler(), raw)
    assert (reply["ok"], reply["status"]) == (False, 400)
    assert reply["error"]["code"] == "MALFORMED_PAYLOAD"
    assert reply["error"]["message"].split(":")[-1].strip(), "the message gives no reason"


async def test_request_size_limit_is_inclusive() -> None:
    raw = msgpack.packb(body(metadata={"pad": "x" * 200}))
    ok, _ = await call(handler(max_request_bytes=len(raw)), raw)
    assert ok["status"] == 201
    reply, _ = await call(handler(max_request_bytes=len(raw) - 1), raw)
    assert (reply["ok"], reply["status"]) == (False, 413)
    assert reply["error"]["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (RuntimeError(f"boom {SESSION}"), 500, "INTERNAL_ERROR"),
        (StoreError(f"down {SESSION}"), 503, "STORE_UNAVAILABLE"),
    ],
)
async def test_registry_failure_still_gets_a_reply(exc: Exception, status: int, code: str) -> None:
    reply, raw = await call(handler(FailingRegistry(exc)), body())
    assert (reply["ok"], reply["status"]) == (False, status)
    assert reply["error"]["code"] == code
    assert SESSION.encode() not in raw


# (request bodies in order, expected log result of the last one); SESSION must never leak.
SCENARIOS: dict[str, tuple[list[dict[str, Any] | bytes], str]] = {
    "created": ([body()], "created"),
    "renewed": ([body(), body()], "renewed"),
    "duplicate": ([body(session_id=OTHER_SESSION), body()], "duplicate"),
    "duplicate-of-this": ([body(), body(session_id=OTHER_SESSION)], "duplicate"),
    "invalid-field": ([body(instance_id="bad id")], "invalid"),
    "invalid-session": ([body(session_id=SESSION * 30)], "invalid"),
    "invalid-metadata": ([body(metadata={"k": b"x"})], "invalid"),
    "malformed": ([msgpack.packb([SESSION])], "malformed"),
}


@pytest.mark.parametrize(("requests", "result"), SCENARIOS.values(), ids=SCENARIOS.keys())
async def test_session_never_in_reply_and_one_log_event(
    requests: list[dict[str, Any] | bytes], result: str
) -> None:
    h = handler()
    for data in requests[:-1]:
        await call(h, data)
    with capture_logs() as logs:
        _, raw = await call(h, requests[-1])
    assert SESSION.encode() not in raw
    events = [e for e in logs if e["event"] == "registration"]
    assert len(events) == 1
    assert events[0]["result"] == result
    last = requests[-1]
    if isinstance(last, dict):
        assert (events[0]["service"], events[0]["instance"]) == ("billing", last["instance_id"])
    assert SESSION not in repr(logs)


@pytest.mark.parametrize(
    ("exc", "result"),
    [(RuntimeError("boom"), "error"), (StoreError("down"), "store_unavailable")],
)
async def test_failure_is_logged_once_without_session(exc: Exception, result: str) -> None:
    with capture_logs() as logs:
        await call(handler(FailingRegistry(exc)), body())
    events = [e for e in logs if e["event"] == "registration"]
    assert [e["result"] for e in events] == [result]
    # An operator reading a failure must see which instance it was about.
    assert (events[0].get("service"), events[0].get("instance")) == ("billing", "b-1")
    assert SESSION not in repr(logs)
