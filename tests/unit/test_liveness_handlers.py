"""The heartbeat, deregister and discover subjects (and register's liveness fields), as bytes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgpack
import pytest
from aegis.router.domain import iso
from aegis.router.handlers import Endpoint, endpoints
from aegis.wire.messages import (
    DEREGISTER_SUBJECT,
    DISCOVER_SUBJECT,
    HEARTBEAT_SUBJECT,
    REGISTER_SUBJECT,
    InstanceStatus,
)
from structlog.testing import capture_logs

from tests.unit.liveness_fakes import (
    LATE,
    OTHER_SESSION,
    SESSION,
    T0,
    make_registry,
    stored,
)

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
    await router.registry.sweep()  # may make it UNHEALTHY: still taken until OFFLINE

    reply = await router.send(REGISTER_SUBJECT, session_id=OTHER_SESSION)

    assert_error(reply, 409, "DUPLICATE_INSTANCE")
    assert reply["retry_after"] == pytest.approx(retry_after)
    assert iso(T0 + timedelta(seconds=20)) in reply["error"]["message"]
    assert shown in reply["error"]["message"]


async def test_heartbeat_returns_the_instance_online_again(router: Router) -> None:
    await router.send(REGISTER_SUBJECT)
    router.clock.at(10 + LATE)
    await router.registry.sweep()
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
