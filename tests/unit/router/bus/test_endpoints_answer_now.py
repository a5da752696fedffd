"""A steady heartbeat, and a registration repeated as is, are answered at once, in the
responder's callback or before the registration lane (``Endpoint.answer_now``).

The fast lane must answer exactly as the endpoint itself would, and leave
every other request to the endpoint, which goes on from what the fast lane
did: nothing is decoded or asked twice.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from aegis.router.bus import endpoints as endpoints_module
from aegis.router.bus.endpoints import Endpoint, endpoints
from aegis.router.domain import InstanceKey
from aegis.router.leases.contacts import Leases
from aegis.router.leases.membership import Membership
from aegis.router.registry.operations import Registry
from aegis.router.store.port import MemoryStore
from aegis.wire.messages import HEARTBEAT_SUBJECT, REGISTER_SUBJECT, router_forward_subject
from structlog.testing import capture_logs

from tests.support import T0, FakeClock
from tests.unit.router.fakes import OTHER_SESSION, SESSION, TIMINGS, ListSink


def router(*others: str) -> tuple[Registry, FakeClock]:
    clock = FakeClock()
    membership = Membership("me", 3.0, 0.0)
    for other in others:
        membership.seen(other, T0.timestamp())
    membership.heard_self_at = T0.timestamp()
    leases = Leases(membership, clock=lambda: clock.now.timestamp())
    return Registry(MemoryStore(), TIMINGS, ListSink(), clock, leases=leases), clock


def held_by(registry: Registry, router_id: str) -> str:
    """An instance id of ``billing`` whose lease ``router_id`` holds."""
    membership = registry.leases.membership
    return next(
        f"b-{n}"
        for n in range(100)
        if membership.owner(InstanceKey("billing", f"b-{n}")) == router_id
    )


async def registered() -> tuple[Registry, Endpoint[Any]]:
    """A router holding b-1, and its heartbeat endpoint, a second later."""
    registry, clock = router()
    handlers = endpoints(registry, max_request_bytes=65536, max_metadata_bytes=1024)
    await handlers[REGISTER_SUBJECT](body())
    clock.at(1.0)
    return registry, handlers[HEARTBEAT_SUBJECT]


def body(instance: str = "b-1", session: str = SESSION) -> bytes:
    fields = {"service_name": "billing", "instance_id": instance, "session_id": session}
    return msgpack.packb(fields)


def at_once(endpoint: Endpoint[Any], data: bytes, request_id: str | None = None) -> bool:
    """Whether ``endpoint`` answers ``data`` in the callback, without a wait."""
    return isinstance(endpoint.answer_now(data, request_id), bytes)


async def test_a_steady_heartbeat_is_answered_at_once_with_the_endpoints_bytes() -> None:
    _, beat = await registered()
    now = beat.answer_now(body())
    assert isinstance(now, bytes)
    assert now == await beat(body())  # same instant on the fake clock: same reply
    reply = msgpack.unpackb(now)
    assert (reply["status"], reply["instance"]["status"]) == (200, "ONLINE")
    assert reply["heartbeat_subject"] == "ipc.router.me.heartbeat"


async def test_anything_but_a_steady_heartbeat_is_left_to_the_endpoint() -> None:
    registry, clock = router("other")
    handlers = endpoints(registry, max_request_bytes=65536, max_metadata_bytes=1024)
    beat = handlers[HEARTBEAT_SUBJECT]
    mine, theirs = held_by(registry, "me"), held_by(registry, "other")
    for instance in (mine, theirs):
        await handlers[REGISTER_SUBJECT](body(instance))
    clock.at(1.0)
    assert at_once(beat, body(mine))
    assert not at_once(beat, b"\xc1")  # garbage: the endpoint's 400
    assert not at_once(beat, body("unknown"))  # 404
    assert not at_once(beat, body(mine, OTHER_SESSION))  # 403
    assert not at_once(beat, body(theirs))  # another router's lease: forwarded
    assert not at_once(handlers[REGISTER_SUBJECT], body("unknown"))  # new: the lane's
    # A heartbeat forwarded here by another router: steady, so answered from memory.
    assert at_once(handlers[router_forward_subject("me")], body(mine))
    assert not at_once(handlers[router_forward_subject("me")], body("unknown"))
    registry.leases.membership.heard_self_at = T0.timestamp() - 60  # deaf to itself
    assert not at_once(beat, body(mine))  # the contact must go to the store


async def test_what_misses_the_fast_lane_goes_on_from_there_and_answers_as_the_endpoint() -> None:
    _, beat = await registered()
    for data in (body("unknown"), body("b-1", OTHER_SESSION), b"\xc1"):
        later = beat.answer_now(data)
        assert not isinstance(later, bytes)
        assert await later(data) == await beat(data)


async def test_a_heartbeat_that_misses_the_fast_lane_is_decoded_and_asked_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry, clock = router()
    counts = {"decoded": 0, "hashed": 0, "leases asked": 0, "steadiness asked": 0}

    def counting(name: str, real: Any) -> Any:
        def count(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return real(*args, **kwargs)

        return count

    monkeypatch.setattr(endpoints_module, "unpack", counting("decoded", endpoints_module.unpack))
    monkeypatch.setattr(
        endpoints_module, "partition_of", counting("hashed", endpoints_module.partition_of)
    )
    membership, liveness = registry.leases.membership, registry.liveness
    asked = counting("leases asked", membership.may_answer_from_memory)
    monkeypatch.setattr(membership, "may_answer_from_memory", asked)
    monkeypatch.setattr(liveness, "heard", counting("steadiness asked", liveness.heard))
    handlers = endpoints(registry, max_request_bytes=65536, max_metadata_bytes=1024)
    await handlers[REGISTER_SUBJECT](body())
    beat = handlers[HEARTBEAT_SUBJECT]
    clock.at(TIMINGS.unhealthy_after + 1)  # UNHEALTHY by age: its recovery is a write
    membership.heard_self_at = clock.now.timestamp()  # hearing itself all along
    counts.update(dict.fromkeys(counts, 0))
    later = beat.answer_now(body())
    assert not isinstance(later, bytes)
    reply = msgpack.unpackb(await later(body()))
    assert (reply["status"], reply["instance"]["status"]) == (200, "ONLINE")
    assert counts == {"decoded": 1, "hashed": 1, "leases asked": 1, "steadiness asked": 1}


async def test_the_request_id_joins_the_debug_line() -> None:
    registry, _ = router()
    handlers = endpoints(registry, max_request_bytes=65536, max_metadata_bytes=1024)
    await handlers[REGISTER_SUBJECT](body())
    with capture_logs() as logs:
        assert at_once(handlers[HEARTBEAT_SUBJECT], body(), "req-7")
    assert [(e["event"], e.get("request_id"), e["instance"]) for e in logs] == [
        ("heartbeat", "req-7", "b-1")
    ]


async def test_just_after_hearing_itself_again_a_router_answers_through_the_store() -> None:
    # Found by the chaos run: a router back from a frozen NATS node heard itself
    # again before its copy of the bucket caught up, and answered a steady 200
    # for an instance another session had taken over meanwhile.
    registry, clock = router()
    handlers = endpoints(registry, max_request_bytes=65536, max_metadata_bytes=1024)
    await handlers[REGISTER_SUBJECT](body())
    beat = handlers[HEARTBEAT_SUBJECT]
    membership = registry.leases.membership
    clock.at(1.0)
    membership.seen_all(clock.now.timestamp())  # hearing again after a gap
    assert not at_once(beat, body())  # not from memory: through the store
    reply = msgpack.unpackb(await beat(body()))
    assert reply["status"] == 200  # still answered, by the store's compare-and-set
    clock.at(1.0 + 4.0)
    membership.heard_self_at = clock.now.timestamp()
    assert at_once(beat, body())  # settled: from memory again


async def test_a_steady_heartbeat_is_checked_against_what_was_registered() -> None:
    # The fast lane does not validate: it answers only a body naming an instance
    # held ONLINE under exactly its session. Anything else goes to the endpoint.
    registry, beat = await registered()
    fields = {"service_name": "billing", "instance_id": "b-1", "session_id": SESSION}
    extra = msgpack.packb({**fields, "note": "ignored, as the model ignores it"})
    assert beat.answer_now(extra) == await beat(extra)
    for wrong in (
        {**fields, "session_id": 7},
        {**fields, "instance_id": b"b-1"},  # bytes the model would read as text
        {"service_name": "billing", "instance_id": "b-1"},
        [fields["service_name"], fields["instance_id"], SESSION],
    ):
        assert not at_once(beat, msgpack.packb(wrong, use_bin_type=True))
    small = endpoints(registry, max_request_bytes=16, max_metadata_bytes=1024)
    assert not at_once(small[HEARTBEAT_SUBJECT], body())  # the endpoint's 413


def registration(**changes: Any) -> bytes:
    fields = {
        "service_name": "billing",
        "instance_id": "b-1",
        "session_id": SESSION,
        "seq": 1,
        "metadata": {"zone": "eu-1", "port": 8080},
    }
    fields.update(changes)
    return msgpack.packb({k: v for k, v in fields.items() if v is not None})


async def test_a_registration_already_applied_is_answered_at_once_as_the_endpoint_would() -> None:
    # A registration that timed out at its client was applied; the retry must not
    # wait behind an overloaded lane (its instance would fall silent meanwhile).
    registry, clock = router()
    handlers = endpoints(registry, max_request_bytes=65536, max_metadata_bytes=1024)
    register = handlers[REGISTER_SUBJECT]
    assert not at_once(register, registration())  # not held yet: the lane's
    first = msgpack.unpackb(await register(registration()))
    clock.at(2.0)
    writes = registry.version

    now = register.answer_now(registration())

    assert isinstance(now, bytes)
    assert registry.version == writes, "answered from memory: nothing written"
    assert msgpack.unpackb(now) == msgpack.unpackb(await register(registration()))
    reply = msgpack.unpackb(now)
    assert (first["status"], reply["status"], reply["instance"]["status"]) == (201, 200, "ONLINE")
    assert reply["instance"]["last_heartbeat_at"] > first["instance"]["last_heartbeat_at"]


async def test_a_registration_that_changes_or_refuses_anything_is_left_to_the_lane() -> None:
    registry, _ = router()
    handlers = endpoints(registry, max_request_bytes=65536, max_metadata_bytes=1024)
    register = handlers[REGISTER_SUBJECT]
    await register(registration())
    for different in (
        registration(seq=2),  # a later registration of the session: may change things
        registration(seq=None),
        registration(session_id=OTHER_SESSION),  # 409
        registration(metadata={"zone": "eu-2", "port": 8080}),
        registration(metadata={"zone": "eu-1", "port": 8080.0}),  # equal in Python only
        registration(timestamp="x" * 65),  # the model's 400
        registration(timestamp=7),
        registration(instance_id="b-2"),
    ):
        assert not at_once(register, different)
    small = endpoints(registry, max_request_bytes=65536, max_metadata_bytes=8)
    assert not at_once(small[REGISTER_SUBJECT], registration())  # metadata too large


async def test_a_registration_for_another_routers_lease_is_left_to_the_lane() -> None:
    registry, _ = router("other")
    handlers = endpoints(registry, max_request_bytes=65536, max_metadata_bytes=1024)
    register = handlers[REGISTER_SUBJECT]
    theirs = held_by(registry, "other")
    await register(registration(instance_id=theirs))
    assert not at_once(register, registration(instance_id=theirs))
