"""Runs the registry's liveness sweep on a short, steady tick."""

from __future__ import annotations

import asyncio

import structlog

from .registry import Registry
from .tasks import cancel

log = structlog.get_logger("aegis.router.sweeper")

MAX_TICK = 1.0


def tick_for(unhealthy_after: float) -> float:
    """At most 1 s, and short enough to resolve the shortest deadline well."""
    return min(MAX_TICK, unhealthy_after / 10)


class Sweeper:
    """A background task calling ``registry.sweep()`` every ``tick`` seconds.

    While the router is cut off from NATS it cannot hear any heartbeat, so it
    must not expire anyone: ``pause`` stops the sweeps (and says so), ``resume``
    starts them again after a grace period in which every live client can
    reach the router again.
    """

    def __init__(self, registry: Registry, tick: float) -> None:
        self._registry = registry
        self._tick = tick
        self._task: asyncio.Task[None] | None = None
        self._paused = False
        self._resume_at = 0.0

    def pause(self, reason: str) -> None:
        """Stop expiring instances until ``resume``."""
        if not self._paused:
            self._paused = True
            log.warning("sweep_paused", reason=reason)

    def resume(self, grace: float) -> None:
        """Expire again ``grace`` seconds from now."""
        if self._paused:
            self._paused = False
            self._resume_at = asyncio.get_running_loop().time() + grace
            log.info("sweep_resumed", grace=grace)

    def start(self) -> None:
        """Begin sweeping in the running loop."""
        self._task = asyncio.create_task(self._run(), name="aegis-sweeper")

    async def stop(self) -> None:
        """Stop after the current sweep."""
        task, self._task = self._task, None
        await cancel(task)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._tick)
            if self._paused or loop.time() < self._resume_at:
                continue
            try:
                await self._registry.sweep()
            except Exception:  # a bad tick must not end liveness tracking
                log.exception("sweep_crashed")
