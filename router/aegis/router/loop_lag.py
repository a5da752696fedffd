"""How far behind the router's event loop runs: the bound on heartbeats it has not read.

NATS messages are read from the socket once per turn of the event loop. A
turn that starts ``lag`` seconds late means a heartbeat that reached the
router's socket may wait up to about that long before the router reads it.
So an instance's deadline may be judged only once it passed more than that
long ago: the router must not blame the fleet for its own lag.

The monitor sleeps ``period`` and measures how late it wakes; ``lag()`` is
the worst lateness of the last ``window`` seconds, so one quick turn after a
long stall does not hide the stall.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from aegis.connect.tasks import cancel
from aegis.router.metrics import LOOP_LAG

PERIOD = 0.1
WINDOW = 2.0


class LoopLag:
    """Measures the event loop's lateness while started."""

    def __init__(
        self,
        period: float = PERIOD,
        window: float = WINDOW,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._period = period
        self._window = window
        self._clock = clock
        self._samples: deque[tuple[float, float]] = deque()  # (when, lateness)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin measuring in the running loop."""
        self._task = asyncio.create_task(self._run(), name="aegis-loop-lag")

    async def stop(self) -> None:
        """Stop measuring."""
        task, self._task = self._task, None
        await cancel(task)

    def record(self, now: float, lateness: float) -> None:
        """One measurement: at ``now`` the loop woke ``lateness`` seconds late."""
        samples = self._samples
        samples.append((now, lateness))
        while samples and samples[0][0] < now - self._window:
            samples.popleft()
        LOOP_LAG.set(lateness)

    def lag(self) -> float:
        """The worst lateness (seconds) measured in the last ``window`` seconds."""
        return max((late for _, late in self._samples), default=0.0)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        clock = self._clock or loop.time
        while True:
            due = clock() + self._period
            await asyncio.sleep(self._period)
            now = clock()
            self.record(now, max(0.0, now - due))
