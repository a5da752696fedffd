"""Keeps the event loop's garbage-collection pauses short with a large registry.

CPython's full collection scans every tracked object; at 100,000 instances
the records and a router's caches take long enough that ``/healthz`` stalls
for hundreds of milliseconds while no request is answered (docs/performance.md,
"Registration storms"). The records hold no reference cycles: reference
counting frees them, and the cyclic collector only has to look at what is
young. So every minute the long-lived heap is frozen (``gc.freeze``: moved
out of the collector's view, at no cost) after a collection of the young
generations, and full collections see only what came since.

The price of freezing: a reference cycle that is already garbage but has
reached the old generation is not collected while frozen. To bound that, once
every half hour the heap is unfrozen and collected in full (one pause of that
size), then frozen again.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable

import structlog
from aegis.connect.tasks import cancel

log = structlog.get_logger("aegis.router.heap")

FREEZE_EVERY = 60.0
FULL_EVERY = 1800.0


class HeapKeeper:
    """Freezes the long-lived heap each minute; a full collection each half hour."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._frozen_at = self._full_at = clock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin in the running loop."""
        self._task = asyncio.create_task(self._run(), name="aegis-heap")

    async def stop(self) -> None:
        """Stop; what is frozen stays so (the process is ending)."""
        task, self._task = self._task, None
        await cancel(task)

    def tick(self) -> None:
        """Freeze, or collect in full, if it is time."""
        now = self._clock()
        if now - self._full_at >= FULL_EVERY:
            started = time.perf_counter()
            gc.unfreeze()
            found = gc.collect()
            gc.freeze()
            self._full_at = self._frozen_at = now
            log.info(
                "heap_collected",
                unreachable=found,
                ms=round((time.perf_counter() - started) * 1000, 1),
                frozen=gc.get_freeze_count(),
            )
        elif now - self._frozen_at >= FREEZE_EVERY:
            gc.collect(1)  # the young cycles first: a frozen cycle is never collected
            gc.freeze()
            self._frozen_at = now

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FREEZE_EVERY / 4)
            self.tick()
