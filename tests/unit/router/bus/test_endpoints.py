"""aegis.router.bus.endpoints: raw bytes in, one MessagePack reply out, one log line.

Every subject (register, heartbeat, deregister, discover) over a registry on a
fake clock, and the instance limits a registration can run into.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import msgpack
import pytest
from aegis.router.bus.endpoints import Endpoint, endpoints
from aegis.router.domain import iso
from aegis.router.leases.contacts import Leases
from aegis.router.leases.membership import Membership
from aegis.router.registry.operations import InstanceLimits, Registry, utc_now
from aegis.router.store.port import MemoryStore, StoreError
from aegis.sdk import LimitExceededError
from aegis.wire.messages import (
    DEREGISTER_SUBJECT,
    DISCOVER_SUBJECT,
    HEARTBEAT_SUBJECT,
    REGISTER_SUBJECT,
    InstanceStatus,
)
from structlog.testing import capture_logs

from tests.support import T0
from tests.support.wire import INSTANCE_KEYS
from tests.unit.router.fakes import (
    LATE,
    OTHER_SESSION,
    SESSION,
    make_registry,
    register_body,
    stored,
)
from tests.unit.sdk.fakes import FakeNats, make_client

# -- ipc.service.register -------------------------------------------------------------


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
    """A registry whose registrations raise ``exc``; it holds nothing."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc
        self.leases = Leases(Membership("solo", ttl=1.0, now=0.0))
        self.liveness = Registry(MemoryStore()).liveness
        self.now = utc_now

    async def register(self, request: Any) -> Any:
        raise self.exc


async def test_created_reply_shape() -> None:
    reply, _ = await call(handler(), body())
    assert set(reply) == {
        "ok",
        "status",
        "instance",
        "heartbeat_interval",
        "ttl",
        "heartbeat_subject",
    }
    assert reply["heartbeat_subject"] == "ipc.router.solo.heartbeat"
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


async def test_a_new_registration_is_one_info_event() -> None:
    with capture_logs() as logs:
        await call(handler(), body())

    assert [e["event"] for e in logs if e["log_level"] != "debug"] == ["instance_registered"]


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


# -- heartbeat, deregister, discover ---------------------------------------------------

OWNER_SUBJECTS = [HEARTBEAT_SUBJECT, DEREGISTER_SUBJECT]
ALL_SUBJECTS = [REGISTER_SUBJECT, *OWNER_SUBJECTS, DISCOVER_SUBJECT]


class Router:
    """The endpoints over a registry on a fake clock, plus every reply's raw bytes."""

    def __init__(self) -> None:
        self.registry, self.clock, self.sink, self.store = make_registry()
        self._endpoints: dict[str, Endpoint[Any]] = endpoints(
            self.registry, max_request_bytes=64 * 1024, max_metadata_bytes=1024
        )
        self.raw: list[bytes] = []

    async def call(self, subject: str, body: dict[str, Any] | bytes) -> dict[str, Any]:
        data = body if isinstance(body, bytes) else msgpack.packb(body)
        raw = await self._endpoints[subject](data)
        self.raw.append(raw)
        reply: dict[str, Any] = msgpack.unpackb(raw)
        return reply

    async def send(self, subject: str, **overrides: Any) -> dict[str, Any]:
        body = {"service_name": "billing", "instance_id": "b-1", "session_id": SESSION}
        return await self.call(subject, {**body, **overrides})


@pytest.fixture
async def router() -> Router:
    return Router()


def assert_error(reply: dict[str, Any], status: int, code: str) -> None:
    assert (reply["ok"], reply["status"], reply["error"]["code"]) == (False, status, code)
    assert reply["error"]["message"]


async def test_register_reply_carries_the_registry_timings(router: Router) -> None:
    reply = await router.send(REGISTER_SUBJECT)
    assert reply["status"] == 201
    assert (reply["heartbeat_interval"], reply["ttl"]) == (2.5, 10.0)


@pytest.mark.parametrize(
    ("at", "retry_after", "shown"),
    [(0, 20.0, "20.0s"), (7.5, 12.5, "12.5s"), (10 + LATE, 9.9, "9.9s"), (19.5, 0.5, "0.5s")],
)
async def test_duplicate_says_when_the_stale_one_goes_offline(
    router: Router, at: float, retry_after: float, shown: str
) -> None:
    await router.send(REGISTER_SUBJECT)
    router.clock.at(at)
    await router.registry.liveness.sweep()  # may make it UNHEALTHY: still taken until OFFLINE

    reply = await router.send(REGISTER_SUBJECT, session_id=OTHER_SESSION)

    assert_error(reply, 409, "DUPLICATE_INSTANCE")
    assert reply["retry_after"] == pytest.approx(retry_after)
    assert iso(T0 + timedelta(seconds=20)) in reply["error"]["message"]
    assert shown in reply["error"]["message"]


async def test_heartbeat_returns_the_instance_online_again(router: Router) -> None:
    await router.send(REGISTER_SUBJECT)
    router.clock.at(10 + LATE)
    await router.registry.liveness.sweep()
    router.clock.at(12)

    reply = await router.send(HEARTBEAT_SUBJECT)

    assert (reply["ok"], reply["status"]) == (True, 200)
    instance = reply["instance"]
    assert (instance["instance_id"], instance["status"]) == ("b-1", "ONLINE")
    assert instance["last_heartbeat_at"] == iso(router.clock.now)
    assert instance["registered_at"] == iso(T0)


async def test_deregister_returns_the_instance_offline(router: Router) -> None:
    await router.send(REGISTER_SUBJECT)
    reply = await router.send(DEREGISTER_SUBJECT)
    assert (reply["ok"], reply["status"], reply["instance"]["status"]) == (True, 200, "OFFLINE")
    assert_error(await router.send(HEARTBEAT_SUBJECT), 404, "INSTANCE_NOT_FOUND")


@pytest.mark.parametrize("subject", OWNER_SUBJECTS)
@pytest.mark.parametrize("registered", [False, True], ids=["unknown", "deregistered"])
async def test_not_found(router: Router, subject: str, registered: bool) -> None:
    if registered:
        await router.send(REGISTER_SUBJECT)
        await router.send(DEREGISTER_SUBJECT)
    assert_error(await router.send(subject), 404, "INSTANCE_NOT_FOUND")
    assert_error(await router.send(subject, session_id=OTHER_SESSION), 404, "INSTANCE_NOT_FOUND")


@pytest.mark.parametrize("subject", OWNER_SUBJECTS)
@pytest.mark.parametrize("owner", [OTHER_SESSION, None])
async def test_session_mismatch_changes_nothing(
    router: Router, subject: str, owner: str | None
) -> None:
    await router.send(REGISTER_SUBJECT, session_id=owner)
    before = await router.store.list_all()
    assert_error(await router.send(subject), 403, "SESSION_MISMATCH")
    assert await router.store.list_all() == before


@pytest.mark.parametrize("subject", OWNER_SUBJECTS)
@pytest.mark.parametrize("session", [None, "", "x" * 257], ids=["missing", "empty", "too-long"])
async def test_session_is_required(router: Router, subject: str, session: str | None) -> None:
    await router.send(REGISTER_SUBJECT)
    body = {"service_name": "billing", "instance_id": "b-1"}
    reply = await router.call(subject, body if session is None else {**body, "session_id": session})
    assert_error(reply, 400, "VALIDATION_ERROR")
    assert [d["loc"] for d in reply["error"]["details"]] == [["session_id"]]


async def fill(router: Router) -> None:
    for name, status in [("b-3", InstanceStatus.OFFLINE), ("b-2", InstanceStatus.UNHEALTHY)]:
        await router.store.create(stored(name, status))
    for name in ("b-1", "b-0"):
        await router.store.create(stored(name, InstanceStatus.ONLINE))
    await router.store.create(stored("p-1", InstanceStatus.ONLINE, service="payments"))


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, ["b-0", "b-1"]),
        ({"status": "ONLINE"}, ["b-0", "b-1"]),
        ({"status": "UNHEALTHY"}, ["b-2"]),
        ({"status": "OFFLINE"}, ["b-3"]),
        ({"status": "ANY"}, ["b-0", "b-1", "b-2", "b-3"]),
        ({"service_name": "nope"}, []),
        ({"service_name": "nope", "status": "ANY"}, []),
    ],
)
async def test_discover(router: Router, extra: dict[str, str], expected: list[str]) -> None:
    await fill(router)
    reply = await router.call(DISCOVER_SUBJECT, {"service_name": "billing", **extra})
    assert (reply["ok"], reply["status"]) == (True, 200)
    assert [i["instance_id"] for i in reply["instances"]] == expected
    assert all(
        i["service_name"] == extra.get("service_name", "billing") for i in reply["instances"]
    )


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"zone": "eu-1"}, ["z-0", "z-1"]),
        ({"zone": "eu-1", "port": 8081}, ["z-1"]),
        ({"canary": True}, ["z-0"]),
        ({"port": 1}, []),  # 1 is not True, and no port is 1
        ({"zone": "mars"}, []),
    ],
)
async def test_discover_filters_on_metadata(
    router: Router, where: dict[str, object], expected: list[str]
) -> None:
    for n, metadata in enumerate(
        [{"zone": "eu-1", "port": 8080, "canary": True}, {"zone": "eu-1", "port": 8081}, {}]
    ):
        await router.store.create(
            replace(stored(f"z-{n}", InstanceStatus.ONLINE), metadata=metadata)
        )
    reply = await router.call(DISCOVER_SUBJECT, {"service_name": "billing", "metadata": where})
    assert [i["instance_id"] for i in reply["instances"]] == expected


@pytest.mark.parametrize(
    "where", [{"zone": ["eu-1"]}, {"": "x"}, {f"k{n}": n for n in range(17)}, "zone=eu-1"]
)
async def test_discover_bad_filter_is_a_400_with_details(router: Router, where: object) -> None:
    reply = await router.call(DISCOVER_SUBJECT, {"service_name": "billing", "metadata": where})
    assert_error(reply, 400, "VALIDATION_ERROR")
    assert all(d["loc"][0] == "metadata" for d in reply["error"]["details"])


@pytest.mark.parametrize("status", ["DEAD", "", 1, None])
async def test_discover_invalid_status(router: Router, status: object) -> None:
    reply = await router.call(DISCOVER_SUBJECT, {"service_name": "billing", "status": status})
    assert_error(reply, 400, "VALIDATION_ERROR")
    assert [d["loc"] for d in reply["error"]["details"]] == [["status"]]


@pytest.mark.parametrize("subject", ALL_SUBJECTS)
@pytest.mark.parametrize(
    "raw", [b"\xc1garbage", b"", msgpack.packb(["billing", "b-1"]), msgpack.packb("billing")]
)
async def test_garbage_on_every_subject(router: Router, subject: str, raw: bytes) -> None:
    assert_error(await router.call(subject, raw), 400, "MALFORMED_PAYLOAD")


async def test_session_never_in_any_reply(router: Router) -> None:
    await router.send(REGISTER_SUBJECT)
    await router.send(REGISTER_SUBJECT, session_id=OTHER_SESSION)  # 409 with `existing`
    for subject in OWNER_SUBJECTS:
        await router.send(subject, session_id=OTHER_SESSION)
        await router.send(subject)
    await router.send(HEARTBEAT_SUBJECT, instance_id="bad id")
    await router.call(DISCOVER_SUBJECT, {"service_name": "billing", "status": "ANY"})

    assert [msgpack.unpackb(raw)["status"] for raw in router.raw] == [
        201,
        409,
        403,
        200,
        403,
        200,
        400,
        200,
    ]
    for raw in router.raw:
        assert SESSION.encode() not in raw
        assert OTHER_SESSION.encode() not in raw


LOG_EVENT = {HEARTBEAT_SUBJECT: "heartbeat", DEREGISTER_SUBJECT: "deregistration"}


@pytest.mark.parametrize(
    ("subject", "registered", "session", "result", "level"),
    [
        (HEARTBEAT_SUBJECT, True, SESSION, "ok", "debug"),  # the hot path stays quiet
        (HEARTBEAT_SUBJECT, True, OTHER_SESSION, "session_mismatch", "info"),
        (HEARTBEAT_SUBJECT, False, SESSION, "not_found", "info"),
        (DEREGISTER_SUBJECT, True, SESSION, "ok", "info"),
        (DEREGISTER_SUBJECT, True, OTHER_SESSION, "session_mismatch", "info"),
        (DEREGISTER_SUBJECT, False, SESSION, "not_found", "info"),
    ],
)
async def test_log_level_by_outcome(
    router: Router, subject: str, registered: bool, session: str, result: str, level: str
) -> None:
    if registered:
        await router.send(REGISTER_SUBJECT)
    with capture_logs() as logs:
        await router.send(subject, session_id=session)
    [line] = [e for e in logs if e["event"] == LOG_EVENT[subject]]
    assert (line["result"], line["log_level"]) == (result, level)
    assert (line["service"], line["instance"]) == ("billing", "b-1")
    assert SESSION not in repr(logs)
    assert OTHER_SESSION not in repr(logs)


# -- instance limits -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "blocked"),
    [
        (InstanceLimits(per_service=2, total=100), ("a", "a-3")),
        (InstanceLimits(per_service=100, total=3), ("b", "b-1")),
    ],
)
async def test_over_a_limit_is_429_and_nothing_is_stored(
    limits: InstanceLimits, blocked: tuple[str, str]
) -> None:
    registry = Registry(MemoryStore(), limits=limits)
    register = endpoints(registry, max_request_bytes=4096, max_metadata_bytes=1024)[
        "ipc.service.register"
    ]
    for instance in ("a-1", "a-2"):
        await register(register_body("a", instance))
    if limits.total == 3:
        await register(register_body("c", "c-1"))
    before = await registry.instances()

    reply = msgpack.unpackb(await register(register_body(*blocked)))
    after = await registry.instances()
    renewal = msgpack.unpackb(await register(register_body("a", "a-1")))

    assert reply["status"] == 429
    assert reply["error"]["code"] == "LIMIT_EXCEEDED"
    assert "AEGIS_MAX_INSTANCES" in reply["error"]["message"]
    assert after == before
    assert renewal["status"] == 200, "a known instance is not a new one"


async def test_the_sdk_raises_limit_exceeded_on_the_routers_429() -> None:
    registry = Registry(MemoryStore(), limits=InstanceLimits(per_service=1, total=100))
    register = endpoints(registry, max_request_bytes=4096, max_metadata_bytes=1024)[
        "ipc.service.register"
    ]
    await register(register_body("a", "a-1"))
    full = await register(register_body("a", "a-2"))
    client = make_client(FakeNats().answer("ipc.service.register", full), retries=3)

    async with client:
        with pytest.raises(LimitExceededError) as caught:
            await client.register("a", "b")

    assert caught.value.status_code == 429
