"""What many tests share: waiting on a condition instead of sleeping, and one fake clock.

The rest of the shared helpers live beside this one: ``procs`` (real nats-server
and aegis-router processes), ``wire`` (wire-contract facts and a raw request),
``prometheus`` (reading /metrics), ``sse`` (reading the event stream), ``pki``
(throwaway TLS certificates) and ``proxy`` (fault-injecting TCP proxies).
Fixtures are in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def eventually(check: Callable[[], object], what: str = "", within: float = 15.0) -> float:
    """Return as soon as ``check()`` is truthy; fail naming ``what`` after ``within`` s.

    ``check`` may be a coroutine function, to poll over the network without
    blocking the event loop. Returns the ``time.monotonic()`` at which it held.
    """
    deadline = time.monotonic() + within
    while True:
        held = check()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what or 'true'} within {within}s")
        await asyncio.sleep(0.02)


class FakeClock:
    """Time that moves only when a test says so.

    Calling it gives the wall time (a UTC ``datetime``, as the registry and the
    console read it); ``monotonic()`` gives seconds (as the breaker reads
    them); ``sleep()`` is an ``asyncio.sleep`` stand-in that moves time on at
    once and records how long it was asked to wait.
    """

    def __init__(self, start: datetime = T0) -> None:
        self.start = start
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    @property
    def now(self) -> datetime:
        """The wall time."""
        return self.start + timedelta(seconds=self.elapsed)

    @now.setter
    def now(self, value: datetime) -> None:
        self.elapsed = (value - self.start).total_seconds()

    def monotonic(self) -> float:
        """Seconds, for code that measures intervals."""
        return 1000.0 + self.elapsed

    def advance(self, seconds: float) -> None:
        """Move time on by ``seconds``."""
        self.elapsed += seconds

    def at(self, seconds: float) -> None:
        """Set the time to ``seconds`` after the start."""
        self.elapsed = seconds

    async def sleep(self, seconds: float) -> None:
        """Record the wait, move time on, and let other tasks run once."""
        self.sleeps.append(seconds)
        self.advance(seconds)
        await asyncio.sleep(0)
