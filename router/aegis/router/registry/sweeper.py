"""Runs the registry's liveness sweep on a short, steady tick."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from aegis.connect.tasks import cancel
from aegis.router.registry.liveness import Liveness

log = structlog.get_logger("aegis.router.registry.sweeper")

MAX_TICK = 1.0
NOT_HEARING = "not_hearing_itself"
BEHIND = "router_behind"
# Loop lag past which the router counts itself behind: unread heartbeats may be
# this old, so no deadline is judged until it has caught up.
BEHIND_LAG = 0.5


def tick_for(unhealthy_after: float) -> float:
    """At most 1 s, and short enough to resolve the shortest deadline well."""
    return min(MAX_TICK, unhealthy_after / 10)


class Sweeper:
    """A background task calling ``liveness.sweep()`` every ``tick`` seconds (or at
    once after a sweep that took longer).

    While the router is cut off from NATS it cannot hear any heartbeat, so it
    must not expire anyone: ``pause`` stops the sweeps (and says so), ``resume``
    starts them again after a grace period in which every live client can
    reach the router again. A connection can also go silent without dropping
    (its NATS server frozen, or this process paused and continued): with
    ``hearing``, a tick on which the router cannot hear itself pauses the
    sweeps for the reason ``not_hearing_itself``, and the first tick on which
    it hears itself again resumes them after ``hearing_grace``.

    The router can also fall behind its own socket (a storm of requests, a
    long pause of the loop): with ``lag``, a tick on which the event loop runs
    more than ``BEHIND_LAG`` late pauses the sweeps for the reason
    ``router_behind`` (heartbeats may be waiting unread), and once it is back
    under, they resume after the worst lag seen plus ``hearing_grace``.
    """

    def __init__(
        self,
        liveness: Liveness,
        tick: float,
        *,
        hearing: Callable[[], bool] | None = None,
        hearing_grace: float = 0.0,
        lag: Callable[[], float] | None = None,
    ) -> None:
        self._liveness = liveness
        self._tick = tick
        self._hearing = hearing
        self._hearing_grace = hearing_grace
        self._lag = lag
        self._worst_lag = 0.0  # of the current episode of being behind
        self._task: asyncio.Task[None] | None = None
        self._paused: set[str] = set()  # the reasons, each said once
        self._resume_at = 0.0

    def pause(self, reason: str) -> None:
        """Stop expiring instances until ``resume`` for the same reason."""
        if reason not in self._paused:
            self._paused.add(reason)
            log.warning("sweep_paused", reason=reason)

    def resume(self, grace: float, reason: str = "nats_disconnected") -> None:
        """``reason`` is over: expire again ``grace`` seconds from now (or later)."""
        if reason in self._paused:
            self._paused.discard(reason)
            resume_at = asyncio.get_running_loop().time() + grace
            self._resume_at = max(self._resume_at, resume_at)
            log.info("sweep_resumed", grace=grace, reason=reason)

    def holding_back(self) -> bool:
        """Whether no deadline is judged now: paused for any reason, or within the
        grace after (``Leases.holding_back`` asks, for deadlines judged on a read)."""
        if self._paused:
            return True
        try:
            return asyncio.get_running_loop().time() < self._resume_at
        except RuntimeError:  # no loop: not started
            return False

    def start(self) -> None:
        """Begin sweeping in the running loop."""
        self._task = asyncio.create_task(self._run(), name="aegis-sweeper")

    async def stop(self) -> None:
        """Stop after the current sweep."""
        task, self._task = self._task, None
        await cancel(task)

    def _judge_lag(self, lag: float) -> None:
        """Pause while the loop lags past ``BEHIND_LAG``; resume once it caught up, after
        the worst lag of the episode (every heartbeat then waiting has been read) plus
        ``hearing_grace``."""
        if lag > BEHIND_LAG:
            self._worst_lag = max(self._worst_lag, lag)
            self.pause(BEHIND)
        elif BEHIND in self._paused:
            self.resume(self._worst_lag + self._hearing_grace, BEHIND)
            self._worst_lag = 0.0

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            # One sweep a tick, counted from when the last began: after a sweep that
            # ran past its tick (a mass expiry), what fell due meanwhile is swept at
            # once rather than a whole tick later.
            await asyncio.sleep(max(0.0, started + self._tick - loop.time()))
            started = loop.time()
            if self._hearing is not None:
                # Judged on each tick, before sweeping: a router continued after a
                # pause sweeps on its first tick, before it has read the heartbeats
                # waiting in its socket.
                if self._hearing():
                    self.resume(self._hearing_grace, NOT_HEARING)
                else:
                    self.pause(NOT_HEARING)
            if self._lag is not None:
                self._judge_lag(self._lag())
            if self._paused or loop.time() < self._resume_at:
                continue
            try:
                await self._liveness.sweep()
            except Exception:  # a bad tick must not end liveness tracking
                log.exception("sweep_crashed")
