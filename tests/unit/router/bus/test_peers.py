"""aegis.router.bus.peers: what routers on one bus must agree on, on the wire."""

from __future__ import annotations

from dataclasses import replace

import msgpack
from aegis.router.bus.peers import HINT, MEMORY_HINT, Shape, _pack, _unpack

SHAPE = Shape("jetstream", "aegis_registry", 5.0, 15.0, 30.0, 60.0)


def test_a_shape_goes_and_comes_back_with_its_router() -> None:
    assert _unpack(_pack("r-1", SHAPE)) == ("r-1", SHAPE)
    assert _unpack(_pack("r-1", replace(SHAPE, store="memory", bucket=None))) != ("r-1", SHAPE)


def test_anything_that_is_not_a_routers_answer_is_not_judged() -> None:
    for data in (b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"router": "r"}), b""):
        assert _unpack(data) is None
    newer = msgpack.packb({"router": "r", **SHAPE.__dict__, "zone": "eu"})
    assert _unpack(newer) is None  # a field this router does not know: not a mismatch


def test_the_text_names_store_bucket_and_timings() -> None:
    assert SHAPE.text() == (
        "jetstream bucket aegis_registry, heartbeat 5 s, unhealthy after 15 s, "
        "offline after 30 s, removed after 60 s"
    )
    assert replace(SHAPE, store="memory", bucket=None).text().startswith("memory, heartbeat")


def test_routers_share_a_bus_only_in_one_shape_and_a_store_both_see() -> None:
    memory = replace(SHAPE, store="memory", bucket=None)
    assert SHAPE.conflict(SHAPE) is None
    assert SHAPE.conflict(replace(SHAPE, unhealthy_after=20.0)) == HINT
    assert SHAPE.conflict(memory) == memory.conflict(SHAPE) == HINT
    # Two memory stores, however alike, are two registries.
    assert memory.conflict(memory) == MEMORY_HINT
