"""aegis.router.request_tally: hot-path requests counted without locks, then folded in.

A fold must leave Prometheus exactly where ``inc`` and ``observe`` per request
would have: the same count, sum and buckets.
"""

from __future__ import annotations

import asyncio

import pytest
from aegis.router.bootstrap import bootstrap
from aegis.router.bus.endpoints import endpoints
from aegis.router.request_tally import RequestTally
from aegis.router.settings import Settings
from aegis.wire.messages import HEARTBEAT_SUBJECT, REGISTER_SUBJECT
from prometheus_client import CollectorRegistry, Counter, Histogram
from structlog.testing import capture_logs

from tests.support.prometheus import sample_value
from tests.unit.router.fakes import register_body

BOUNDS = (0.0005, 0.001, 0.0025, 0.01)
# On a bound, just above and below one, beyond the last, and zero.
LATENCIES = [0.0, 0.0001, 0.0005, 0.00050001, 0.001, 0.002, 0.0025, 0.009, 0.01, 0.5, 3.0]


def metrics(name: str) -> tuple[CollectorRegistry, Counter, Histogram]:
    registry = CollectorRegistry()
    counter = Counter(f"{name}_total", "requests", ["kind"], registry=registry)
    histogram = Histogram(f"{name}_seconds", "latency", ["kind"], buckets=BOUNDS, registry=registry)
    return registry, counter, histogram


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


async def test_a_fold_gives_the_samples_observe_would_have() -> None:
    direct, counter, histogram = metrics("same")
    for seconds in LATENCIES:
        counter.labels("hb").inc()
        histogram.labels("hb").observe(seconds)
    folded, counter2, histogram2 = metrics("same")
    tally = RequestTally(counter2.labels("hb"), histogram2.labels("hb"))
    for seconds in LATENCIES:
        tally.add(seconds)  # in a loop: folded later
    assert samples(folded)[("same_total", (("kind", "hb"),))] == 0
    tally.fold()
    assert samples(folded) == samples(direct)
    tally.fold()  # nothing new: nothing added
    assert samples(folded) == samples(direct)


def test_without_a_running_loop_each_request_is_folded_at_once() -> None:
    registry, counter, histogram = metrics("plain")
    tally = RequestTally(counter.labels("hb"), histogram.labels("hb"))
    tally.add(0.002)
    tally.add(0.0001)
    got = samples(registry)
    assert got[("plain_total", (("kind", "hb"),))] == 2
    assert got[("plain_seconds_bucket", (("kind", "hb"), ("le", "0.0005")))] == 1
    assert got[("plain_seconds_bucket", (("kind", "hb"), ("le", "0.0025")))] == 2
    assert got[("plain_seconds_sum", (("kind", "hb"),))] == pytest.approx(0.0021)


async def test_a_burst_reaches_prometheus_on_the_loops_next_turn() -> None:
    registry, counter, histogram = metrics("looped")
    tally = RequestTally(counter.labels("hb"), histogram.labels("hb"))
    for _ in range(3):
        tally.add(0.0001)
    assert samples(registry)[("looped_total", (("kind", "hb"),))] == 0  # still in the burst
    await asyncio.sleep(0)
    assert samples(registry)[("looped_total", (("kind", "hb"),))] == 3
    tally.add(0.0001)  # a new burst schedules its own fold
    await asyncio.sleep(0)
    assert samples(registry)[("looped_total", (("kind", "hb"),))] == 4


async def test_a_scrape_shows_every_steady_heartbeat_answered_so_far() -> None:
    app = bootstrap(Settings(store="memory"), nats=None)
    handlers = endpoints(app.ctx.registry, max_request_bytes=4096, max_metadata_bytes=1024)
    await handlers[REGISTER_SUBJECT](register_body("tally", "t-1"))
    labels = {"kind": "heartbeat", "result": "ok"}
    _, before = await app.asgi_client.get("/metrics")
    beat = register_body("tally", "t-1")  # the same three fields: a heartbeat
    for _ in range(5):
        assert isinstance(handlers[HEARTBEAT_SUBJECT].answer_now(beat), bytes)
    _, after = await app.asgi_client.get("/metrics")
    counted = sample_value(after.text, "aegis_requests_total", **labels)
    assert counted == (sample_value(before.text, "aegis_requests_total", **labels) or 0) + 5


def test_a_fold_left_behind_by_a_closed_loop_is_scheduled_again() -> None:
    registry, counter, histogram = metrics("orphan")
    tally = RequestTally(counter.labels("hb"), histogram.labels("hb"))

    def burst_then_stop(loop: asyncio.AbstractEventLoop) -> None:
        tally.add(0.0001)
        tally.add(0.0001)
        loop.stop()  # the fold just scheduled would run on the next turn

    loop = asyncio.new_event_loop()
    loop.call_soon(burst_then_stop, loop)
    loop.run_forever()
    loop.close()  # with the fold still pending: it never runs
    assert samples(registry)[("orphan_total", (("kind", "hb"),))] == 0

    async def one_more() -> None:
        tally.add(0.0001)
        await asyncio.sleep(0)

    asyncio.run(one_more())  # a new loop: its fold takes all three
    assert samples(registry)[("orphan_total", (("kind", "hb"),))] == 3


def test_a_failed_update_is_logged_not_raised_nor_counted_twice() -> None:
    registry, counter, histogram = metrics("failing")
    child = counter.labels("hb")
    tally = RequestTally(child, histogram.labels("hb"))
    calls: list[float] = []

    def broken(amount: float) -> None:
        calls.append(amount)
        raise OSError("no space left on device")

    original = child.inc
    child.inc = broken  # type: ignore[method-assign]
    with capture_logs() as logs:
        tally.add(0.0001)  # no loop: folded at once, and the failure swallowed
    assert [e["event"] for e in logs] == ["metrics_update_failed"]
    child.inc = original  # type: ignore[method-assign]
    tally.add(0.0001)
    assert calls == [1]
    assert samples(registry)[("failing_total", (("kind", "hb"),))] == 1  # not 2
