"""Property-based: whatever arrives on a subject, a well-formed reply and no change.

Hypothesis feeds the NATS handlers arbitrary bytes and arbitrary MessagePack
values (deep nesting, huge strings, wrong types, odd unicode); every request
must get a decodable reply with ``ok``/``status``, and a refused request must
leave the registry exactly as it was.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
from aegis.router.bus.endpoints import endpoints
from aegis.router.registry.operations import Registry
from aegis.router.store.port import MemoryStore
from aegis.wire.messages import RegisterRequest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SUBJECTS = [
    "ipc.service.register",
    "ipc.service.heartbeat",
    "ipc.service.deregister",
    "ipc.service.discover",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=300)
    | st.binary(max_size=64)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=30,
)
field_names = st.sampled_from(
    ["service_name", "instance_id", "metadata", "session_id", "timestamp", "status", "x"]
)
bodies = st.dictionaries(field_names, values, max_size=6) | values


def fresh() -> tuple[Registry, dict[str, Any]]:
    registry = Registry(MemoryStore())
    asyncio.run(
        registry.register(
            RegisterRequest(service_name="held", instance_id="h-1", session_id="owner")
        )
    )
    handlers = endpoints(registry, max_request_bytes=4096, max_metadata_bytes=1024)
    return registry, handlers


def snapshot(registry: Registry) -> list[Any]:
    return asyncio.run(registry.instances())


def check_reply(raw: bytes) -> dict[str, Any]:
    reply = msgpack.unpackb(raw)
    assert isinstance(reply, dict)
    assert isinstance(reply["ok"], bool)
    assert isinstance(reply["status"], int)
    if not reply["ok"]:
        assert set(reply["error"]) >= {"code", "message"}
    assert b"owner" not in raw, "a session id leaked into a reply"
    return reply


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=st.sampled_from(SUBJECTS), data=st.binary(max_size=5000))
def test_arbitrary_bytes_get_a_reply_and_change_nothing(subject: str, data: bytes) -> None:
    registry, handlers = fresh()
    before = snapshot(registry)

    reply = check_reply(asyncio.run(handlers[subject](data)))

    if not reply["ok"]:
        assert snapshot(registry) == before


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=st.sampled_from(SUBJECTS), body=bodies)
def test_arbitrary_messagepack_gets_a_reply_and_refusals_change_nothing(
    subject: str, body: Any
) -> None:
    registry, handlers = fresh()
    before = snapshot(registry)

    reply = check_reply(asyncio.run(handlers[subject](msgpack.packb(body))))

    if not reply["ok"]:
        assert snapshot(registry) == before
        assert 400 <= reply["status"] < 500


def test_deep_nesting_and_huge_strings_are_refused_cleanly() -> None:
    registry, handlers = fresh()
    deep: Any = "leaf"
    for _ in range(500):
        deep = {"d": deep}
    cases = [
        {"service_name": "s", "instance_id": "i", "metadata": deep},
        {"service_name": "s" * 100_000, "instance_id": "i"},
        b"\x91" * 100_000,
    ]
    for case in cases:
        data = case if isinstance(case, bytes) else msgpack.packb(case)
        reply = check_reply(asyncio.run(handlers["ipc.service.register"](data)))
        assert reply["status"] in (400, 413)
    assert [r.instance_id for r in snapshot(registry)] == ["h-1"]
