"""A session's requests in its own order (wire ``seq``): none undoes a later one.

The history behind it (CI, bdb981d): a deregister timed out at the client
behind a frozen NATS node; the client registered again under the same
session and got 200; the delayed deregister then reached the router, took the
instance OFFLINE, and another session took it over with 201 while the first
still believed it owned it. Each test below replays one such overtaking
through the registry and through the wire handlers.
"""

from __future__ import annotations

from typing import Any

import msgpack
from aegis.router.bus.endpoints import Endpoint, endpoints
from aegis.router.domain import InstanceKey, Outcome, OwnerCheck
from aegis.router.registry.operations import Registry
from aegis.wire.messages import (
    DEREGISTER_SUBJECT,
    HEARTBEAT_SUBJECT,
    REGISTER_SUBJECT,
    InstanceStatus,
    RegisterRequest,
)

from tests.unit.router.fakes import OTHER_SESSION, SESSION, make_registry

KEY = InstanceKey("billing", "b-1")


def register(seq: int | None, session: str = SESSION) -> RegisterRequest:
    return RegisterRequest(
        service_name="billing", instance_id="b-1", session_id=session, metadata={}, seq=seq
    )


async def test_a_delayed_deregister_cannot_undo_a_later_registration() -> None:
    registry, _, sink, _ = make_registry()
    assert (await registry.register(register(1))).outcome is Outcome.CREATED
    # seq 2: the deregister, sent and delayed; seq 3: the registration sent after it.
    renewed = await registry.register(register(3))
    late = await registry.deregister(KEY, SESSION, seq=2)
    taker = await registry.register(register(1, session=OTHER_SESSION))

    assert renewed.outcome is Outcome.RENEWED
    assert late.check is OwnerCheck.STALE
    assert late.record is not None
    assert late.record.status is InstanceStatus.ONLINE
    assert taker.outcome is Outcome.DUPLICATE, "still owned by the first session"
    assert [e.event.value for e in sink.events] == ["registered"], "nothing changed"


async def test_a_delayed_registration_cannot_revive_a_later_deregistration() -> None:
    registry, _, _, store = make_registry()
    await registry.register(register(1))
    gone = await registry.deregister(KEY, SESSION, seq=3)
    late = await registry.register(register(2))

    assert gone.check is OwnerCheck.OK
    assert late.outcome is Outcome.STALE
    current = store.peek(KEY)
    assert current is not None
    assert current.record.status is InstanceStatus.OFFLINE


async def test_a_later_request_and_a_retry_of_the_last_one_still_act() -> None:
    registry, _, _, _ = make_registry()
    await registry.register(register(5))
    retried = await registry.register(register(5))  # a retry carries its request's seq
    beat = await registry.heartbeat(KEY, SESSION, seq=6)
    gone = await registry.deregister(KEY, SESSION, seq=7)
    back = await registry.register(register(8))

    assert retried.outcome is Outcome.RENEWED
    assert beat.check is OwnerCheck.OK
    assert gone.check is OwnerCheck.OK
    assert back.outcome is Outcome.CREATED


async def test_order_is_per_session_and_requests_without_seq_are_not_ordered() -> None:
    registry, _, _, _ = make_registry()
    await registry.register(register(100))
    v1 = await registry.deregister(KEY, SESSION)  # a v1 client: acts as before
    other = await registry.register(register(1, session=OTHER_SESSION))
    other_beat = await registry.heartbeat(KEY, OTHER_SESSION, seq=2)

    assert v1.check is OwnerCheck.OK
    assert other.outcome is Outcome.CREATED, "another session's seq starts afresh"
    assert other_beat.check is OwnerCheck.OK


async def test_a_stale_heartbeat_is_refused_even_where_the_fast_lane_would_answer() -> None:
    registry, _, _, _ = make_registry()
    await registry.register(register(4))
    assert registry.liveness.heard(KEY, SESSION, 0.0, seq=3) is None
    result = await registry.heartbeat(KEY, SESSION, seq=3)
    assert result.check is OwnerCheck.STALE


# -- on the wire ----------------------------------------------------------------------


def wire(registry: Registry) -> dict[str, Endpoint[Any]]:
    return endpoints(registry, max_request_bytes=64 * 1024, max_metadata_bytes=1024)


async def send(endpoint: Endpoint[Any], seq: int, session: str = SESSION) -> dict[str, Any]:
    body = {"service_name": "billing", "instance_id": "b-1", "session_id": session, "seq": seq}
    data = msgpack.packb(body)
    fast = endpoint.answer_now(data)
    reply: dict[str, Any] = msgpack.unpackb(fast if isinstance(fast, bytes) else await fast(data))
    return reply


async def test_the_bdb981d_history_on_the_wire() -> None:
    registry, _, _, _ = make_registry()
    subjects = wire(registry)
    assert (await send(subjects[REGISTER_SUBJECT], 1))["status"] == 201
    assert (await send(subjects[HEARTBEAT_SUBJECT], 2))["status"] == 200
    # seq 3, the deregister, is delayed; the client registers again with seq 4.
    assert (await send(subjects[REGISTER_SUBJECT], 4))["status"] == 200
    late = await send(subjects[DEREGISTER_SUBJECT], 3)
    taker = await send(subjects[REGISTER_SUBJECT], 1, session=OTHER_SESSION)
    beat = await send(subjects[HEARTBEAT_SUBJECT], 5)

    assert (late["ok"], late["status"], late["error"]["code"]) == (False, 409, "STALE_REQUEST")
    assert "seq 3" in late["error"]["message"]
    assert "seq 4" in late["error"]["message"]
    assert late["instance"]["status"] == "ONLINE"
    assert SESSION not in str(late), "a session never leaves the router"
    assert (taker["status"], taker["error"]["code"]) == (409, "DUPLICATE_INSTANCE")
    assert (beat["status"], beat["instance"]["status"]) == (200, "ONLINE")


async def test_a_stale_heartbeat_on_the_wire_is_409_and_changes_nothing() -> None:
    registry, _, sink, _ = make_registry()
    subjects = wire(registry)
    await send(subjects[REGISTER_SUBJECT], 7)
    stale = await send(subjects[HEARTBEAT_SUBJECT], 6)

    assert (stale["status"], stale["error"]["code"]) == (409, "STALE_REQUEST")
    assert [e.event.value for e in sink.events] == ["registered"]


async def test_a_seq_that_is_not_a_whole_number_is_a_validation_error() -> None:
    registry, _, _, _ = make_registry()
    subjects = wire(registry)
    for bad in ("3", -1, 1.5, True):
        data = msgpack.packb(
            {"service_name": "billing", "instance_id": "b-1", "session_id": SESSION, "seq": bad}
        )
        for subject in (REGISTER_SUBJECT, HEARTBEAT_SUBJECT):
            reply = msgpack.unpackb(await subjects[subject](data))
            assert (reply["status"], reply["error"]["code"]) == (400, "VALIDATION_ERROR"), bad
            assert [d["loc"] for d in reply["error"]["details"]] == [["seq"]]
