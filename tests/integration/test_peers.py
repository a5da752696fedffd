"""Routers that met no one at start meet later on the bus, and say so."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import nats
import pytest
from aegis.router.bus.peers import HINT, PeerCheck, RouterMismatchError, Shape
from structlog.testing import capture_logs

from tests.support import eventually
from tests.support.procs import NatsServer

SHAPE = Shape("jetstream", "aegis_registry", 5.0, 15.0, 30.0, 60.0)


async def test_routers_that_started_together_meet_at_the_next_announcement(
    nats_server: NatsServer,
) -> None:
    # Two routers start at once (neither survey waits long enough to hear the
    # other), as on two halves of a NATS cluster that heals later.
    a_nc, b_nc = await nats.connect(nats_server.url), await nats.connect(nats_server.url)
    a = PeerCheck("a", SHAPE, window=0.0, announce_every=0.1)
    b = PeerCheck("b", replace(SHAPE, unhealthy_after=20.0), window=0.0, announce_every=0.1)
    try:
        with capture_logs() as logs:
            await asyncio.gather(a.start(a_nc), b.start(b_nc))

            def both_said_so() -> bool:
                said = {e["other_router"] for e in logs if e["event"] == "router_config_mismatch"}
                return said == {"a", "b"}

            await eventually(both_said_so, "both routers log the mismatch", within=5.0)
            await asyncio.sleep(0.5)  # five more announcements each
        mismatches = [e for e in logs if e["event"] == "router_config_mismatch"]
        assert len(mismatches) == 2, "once per router and shape, not every announcement"
        assert all(e["log_level"] == "error" and e["hint"] == HINT for e in mismatches)
        of_b = next(e for e in mismatches if e["other_router"] == "b")
        assert "unhealthy after 20 s" in of_b["theirs"]
        # A third router starting now hears them at its survey, and refuses.
        c_nc = await nats.connect(nats_server.url)
        try:
            with pytest.raises(RouterMismatchError, match="router b on this NATS keeps"):
                await PeerCheck("c", SHAPE).start(c_nc)
        finally:
            await c_nc.close()
    finally:
        await a.stop()
        await b.stop()
        await a_nc.close()
        await b_nc.close()


async def test_routers_that_agree_announce_and_log_nothing(nats_server: NatsServer) -> None:
    a_nc, b_nc = await nats.connect(nats_server.url), await nats.connect(nats_server.url)
    a = PeerCheck("a", SHAPE, window=0.0, announce_every=0.05)
    b = PeerCheck("b", SHAPE, window=0.0, announce_every=0.05)
    try:
        with capture_logs() as logs:
            await asyncio.gather(a.start(a_nc), b.start(b_nc))
            await asyncio.sleep(0.5)
        assert [e for e in logs if e["event"] == "router_config_mismatch"] == []
    finally:
        await a.stop()
        await b.stop()
        await a_nc.close()
        await b_nc.close()
