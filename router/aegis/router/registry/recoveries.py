"""Heartbeats whose contact needs a store write, when many do at once: answered at once,
written soon after.

An UNHEALTHY instance whose heartbeat arrives is ONLINE again, and that is a
store write (others read the status there). One at a time the write is made
on the request path, as always. But when many recover at once (a router that
was behind, a network healed), a write per heartbeat on the request path
would hold the replies to the store's pace: heartbeats would time out, more
instances would fall, and the writes would keep the router behind. So while
``crowded`` (that many heartbeat writes already in flight), a recovery is
answered from memory (the contact is kept where the sweep looks, so the
instance cannot expire meanwhile) and its write joins a queue that a
background task drains at the store's pace, one write per instance however
many heartbeats it sends meanwhile.

The periodic refresh of a steady instance's stored contact always takes this
queue: nobody waits on it, and a registration storm makes it fall due for all
its instances together.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog
from aegis.router.domain import InstanceKey

log = structlog.get_logger("aegis.router.registry.recoveries")

# Heartbeat writes in flight on the request path before recoveries are deferred.
INLINE_MAX = 32
# Deferred recovery writes in flight at once.
WRITES_IN_FLIGHT = 64


class Recoveries:
    """Counts heartbeat writes on the request path; queues and writes deferred ones."""

    def __init__(
        self,
        write: Callable[[InstanceKey, str], Awaitable[None]],
        inline_max: int = INLINE_MAX,
    ) -> None:
        self._write = write
        self._inline_max = inline_max
        self.inline = 0  # heartbeat writes in flight on the request path
        self._pending: dict[InstanceKey, str] = {}  # key: its owner's session
        self._task: asyncio.Task[None] | None = None

    @property
    def crowded(self) -> bool:
        """Whether a recovery now should be deferred rather than written inline."""
        return self.inline >= self._inline_max

    @property
    def pending(self) -> int:
        """Deferred recoveries not yet written."""
        return len(self._pending)

    async def drained(self) -> None:
        """Return once every deferred write so far has been made (or failed)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    def defer(self, key: InstanceKey, session_id: str) -> None:
        """Write ``key``'s recovery later (once, however often it is deferred again)."""
        self._pending[key] = session_id
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._drain(), name="aegis-recoveries"
            )

    async def _drain(self) -> None:
        # Refreshes trickle in all the time; a backlog is worth an INFO line.
        say = log.info if len(self._pending) >= WRITES_IN_FLIGHT else log.debug
        say("recoveries_deferred", pending=len(self._pending))
        written = 0
        while self._pending:
            batch: list[tuple[InstanceKey, str]] = []
            while self._pending and len(batch) < WRITES_IN_FLIGHT:
                key = next(iter(self._pending))
                batch.append((key, self._pending.pop(key)))
            results = await asyncio.gather(
                *(self._write(key, session) for key, session in batch), return_exceptions=True
            )
            for (key, _), result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    # Not lost: its next heartbeat finds it UNHEALTHY and recovers it again.
                    log.warning(
                        "recovery_write_failed",
                        service=key.service_name,
                        instance=key.instance_id,
                        error=repr(result),
                    )
            written += len(batch)
        say("recoveries_written", written=written)
