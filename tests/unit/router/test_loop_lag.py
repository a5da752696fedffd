"""aegis.router.loop_lag: how late the event loop runs, worst of a recent window."""

from __future__ import annotations

import asyncio
import time

from aegis.router.loop_lag import LoopLag
from prometheus_client import REGISTRY

from tests.support import eventually


def test_lag_is_the_worst_of_the_window_and_forgets_older_samples() -> None:
    lag = LoopLag(window=2.0)
    assert lag.lag() == 0.0
    lag.record(10.0, 1.5)
    lag.record(10.5, 0.1)
    assert lag.lag() == 1.5, "one quick turn does not hide a stall"
    lag.record(12.6, 0.2)  # 10.0 and 10.5 are more than 2 s old now
    assert lag.lag() == 0.2
    assert REGISTRY.get_sample_value("aegis_event_loop_lag_seconds") == 0.2


async def test_a_blocked_loop_shows_as_lag() -> None:
    lag = LoopLag(period=0.01)
    lag.start()
    await asyncio.sleep(0.05)
    time.sleep(0.3)  # noqa: ASYNC251 - the loop held, as by a long run of registrations
    await eventually(lambda: lag.lag() >= 0.25, "the stall measured")
    await lag.stop()
    await lag.stop()  # twice is safe
