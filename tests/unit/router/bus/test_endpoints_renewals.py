"""A fleet re-registering after a restart is one INFO line, not one per instance."""

from __future__ import annotations

import asyncio

import msgpack
from aegis.router.bus.endpoints import RenewalSummary, endpoints
from aegis.wire.messages import REGISTER_SUBJECT
from structlog.testing import capture_logs

from tests.unit.router.bus.test_endpoints_answer_now import registration, router


async def test_renewed_registrations_are_summed_into_one_info_line() -> None:
    summary = RenewalSummary(window=0.05)
    with capture_logs() as logs:
        for _ in range(3):
            summary.add()
        await asyncio.sleep(0.1)
        summary.add()
        await asyncio.sleep(0.1)
    assert [(e["event"], e["count"]) for e in logs] == [
        ("registrations_renewed", 3),
        ("registrations_renewed", 1),
    ]


async def test_a_renewal_is_logged_at_debug_by_the_endpoint() -> None:
    registry, _ = router()
    register = endpoints(registry, max_request_bytes=65536, max_metadata_bytes=1024)[
        REGISTER_SUBJECT
    ]
    await register(registration())
    with capture_logs() as logs:
        reply = msgpack.unpackb(await register(registration(seq=2)))  # a re-registration
    assert reply["status"] == 200
    assert [(e["event"], e["log_level"]) for e in logs if e.get("result") == "renewed"] == [
        ("registration", "debug")
    ]
