"""The harness's own stalls: moments when one of its event loops ran late.

Every request a client makes and every reply it gets passes through the
harness twice: its own event loop (the clients, the SDK's included) sends
and reads it, and the proxies' loop (a thread of the same process) relays it.
When other processes hold the machine's cores, either loop can fall behind
by tenths of a second, and a request with a short budget (the SDK's 0.25 s
heartbeat to the holder's own subject) then times out in the harness, not in
the registry: a reply that waits unread in a socket while the loop is late
loses the race to the timer that ends the wait.

``LoopStalls`` sleeps ``TICK`` seconds over and over on the loop it runs on
and measures how late it wakes. A wake-up ``THRESHOLD`` or more late is a
stall, kept as a ``stall`` record: the loop ran nothing from the moment the
tick was due (``start``) to the moment it ran (``end``); then it works
through what piled up meanwhile, and only its next tick on time (``tick``
later) shows it caught up. The records are written to the history once the
run is over (``records``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

Record = dict[str, Any]  # a history record (tests/chaos/history.py)

TICK = 0.05  # seconds between two wake-ups
THRESHOLD = 0.1  # a wake-up at least this late is a stall


class LoopStalls:
    """Measures one event loop's stalls while ``run`` runs on it."""

    def __init__(self, loop_name: str, *, tick: float = TICK, threshold: float = THRESHOLD) -> None:
        self.loop_name = loop_name  # "harness" or "proxies", in the records
        self.tick = tick
        self.threshold = threshold
        # Appended on the measured loop's thread, read once it has stopped (or
        # read while it runs: a list's append is atomic).
        self.found: list[Record] = []

    async def run(self) -> None:
        """Measure until cancelled."""
        due = time.monotonic() + self.tick
        while True:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            woke, now = time.monotonic(), time.time()
            late = woke - due
            if late >= self.threshold:
                self.found.append(
                    {
                        "type": "stall",
                        "t": now,
                        "loop": self.loop_name,
                        "start": now - late,
                        "end": now,
                        "late": round(late, 4),
                        "tick": self.tick,
                    }
                )
            due = woke + self.tick

    def records(self) -> list[Record]:
        """The stalls found so far, as history records."""
        return list(self.found)
