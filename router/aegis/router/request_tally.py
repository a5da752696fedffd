"""Counts requests in plain numbers, and adds them to Prometheus once per loop turn.

prometheus-client takes a lock on every update, and a request makes three
(the request counter, the latency histogram's sum and bucket): a sizeable
share of a steady heartbeat (docs/performance.md). A tally counts the same
requests with no lock,
since the router's event loop is one thread, and adds what it counted to the
same series in one go, from a callback the first request of a burst
schedules for the loop's next turn. That callback usually runs before the
burst's replies are written (nats-py's flusher is woken by the first reply,
after it), and at worst right after them, so a request is in Prometheus
(with ``--workers N``, in its worker's files) by the time its client reads
the reply, give or take one turn of the loop; a scrape folds too.

It reaches into the histogram's buckets, which prometheus-client has no bulk
public call for; tests/unit/router/test_request_tally.py checks that a fold
gives the very samples that ``observe`` would have.
"""

from __future__ import annotations

import asyncio
import functools
from bisect import bisect_left

import structlog
from aegis.router.metrics import latency_histogram, requests_counter
from prometheus_client import Counter, Histogram

log = structlog.get_logger("aegis.router.metrics")

_TALLIES: list[RequestTally] = []


@functools.cache
def request_tally(kind: str, result: str) -> RequestTally:
    """The tally of ``aegis_requests_total{kind, result}`` and ``kind``'s latencies."""
    return RequestTally(requests_counter(kind, result), latency_histogram(kind))


class RequestTally:
    """Requests of one kind and result, and their latencies, not yet in Prometheus."""

    __slots__ = (
        "_bounds",
        "_buckets",
        "_count",
        "_counter",
        "_due",
        "_histogram",
        "_loop",
        "_sum",
    )

    def __init__(self, counter: Counter, histogram: Histogram) -> None:
        self._counter = counter
        self._histogram = histogram
        self._bounds: list[float] = list(histogram._upper_bounds)  # ends with +Inf
        self._buckets = [0] * len(self._bounds)
        self._count = 0
        self._sum = 0.0
        self._due = False  # a fold is scheduled, on _loop
        self._loop: asyncio.AbstractEventLoop | None = None
        _TALLIES.append(self)

    def add(self, seconds: float) -> None:
        """One request answered in ``seconds``. Never raises."""
        self._count += 1
        self._sum += seconds
        # The first bound at or above: the bucket Histogram.observe would pick.
        self._buckets[bisect_left(self._bounds, seconds)] += 1
        # A loop closed with the fold still pending never runs it: schedule anew.
        if not self._due or self._loop is None or self._loop.is_closed():
            self._schedule()

    def _schedule(self) -> None:
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a plain call): nothing would come back for it
            self._loop = None
            self.fold()
            return
        self._due = True
        self._loop.call_soon(self.fold)

    def fold(self) -> None:
        """Add what was counted since the last fold to the Prometheus metrics. Never
        raises: a failed update is logged, and its counts are not added twice."""
        self._due = False
        if not self._count:
            return
        count, total, counted = self._count, self._sum, self._buckets
        self._count, self._sum, self._buckets = 0, 0.0, [0] * len(counted)
        try:
            self._counter.inc(count)
            self._histogram._sum.inc(total)
            buckets = self._histogram._buckets
            for index, n in enumerate(counted):
                if n:
                    buckets[index].inc(n)
        except Exception:  # a file of --workers N failing: lose these, not the request
            log.exception("metrics_update_failed", requests=count)


def fold_all() -> None:
    """Every tally's requests into Prometheus: called before each scrape."""
    for tally in _TALLIES:
        tally.fold()
