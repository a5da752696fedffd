"""The storm generator's bookkeeping (bench/open_loop.py): its timetable keeps time
whatever the replies, SDK-like retries, lag and on-time marks, and the histogram."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import msgpack
import pytest

from bench.open_loop import (
    HEARTBEAT_SUBJECT,
    REGISTER_SUBJECT,
    Book,
    Generator,
    Histogram,
    Plan,
    deal,
    index_of,
    instance_id,
    retry_delay,
)


@dataclass
class FakeNats:
    """Records what the generator publishes; answers nothing by itself."""

    sent: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)

    async def publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        self.sent.append((subject, msgpack.unpackb(payload), reply))


@dataclass
class Msg:
    subject: str
    data: bytes


def plan(instances: int = 2, **overrides: Any) -> Plan:
    fields: dict[str, Any] = {
        "url": "nats://unused",
        "prefix": "t",
        "instances": instances,
        "services": 1,
        "rate": 10.0,
        "interval": 10.0,
        "stop_after": 100.0,
        "timeout": 5.0,
    }
    return Plan(**(fields | overrides))


@dataclass
class Clock:
    """Time stands still until a test moves it."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def generator(instances: int = 2, **overrides: Any) -> tuple[Generator, FakeNats, Clock]:
    nc, clock = FakeNats(), Clock()
    g = Generator(plan(instances, **overrides), nc, "_INBOX.x", clock)
    g.start(0.0)
    return g, nc, clock


async def tick(g: Generator, clock: Clock, at: float) -> None:
    """Move the clock to ``at`` and send what is due."""
    clock.now = at
    await g.send_due(at)


async def answer(g: Generator, reply_to: str, body: dict[str, Any]) -> None:
    await g.on_reply(Msg(reply_to, msgpack.packb(body)))


def test_histogram_percentiles_within_a_bucket_and_exact_max() -> None:
    h = Histogram()
    for i in range(1, 1001):
        h.add(i / 1000)
    assert h.count == 1000
    assert h.max == 1.0
    assert h.percentile(50) == pytest.approx(0.5, rel=0.03)
    assert h.percentile(99) == pytest.approx(0.99, rel=0.03)
    assert h.percentile(100) == 1.0
    assert math.isnan(Histogram().percentile(99))


def test_histograms_merge_across_the_wire_form() -> None:
    a, b = Histogram(), Histogram()
    a.add(0.001)
    b.add(2.0)
    merged = Histogram.from_wire(a.to_wire())
    merged.merge(Histogram.from_wire(b.to_wire()))
    assert merged.count == 2
    assert merged.max == 2.0


def test_deal_gives_each_process_every_kth_instance() -> None:
    shares = deal(plan(7), 3)
    assert [list(s.indexes) for s in shares] == [[0, 3, 6], [1, 4], [2, 5]]
    assert len({s.seed for s in shares}) == 3


def test_instance_ids_read_back_only_for_their_prefix() -> None:
    assert index_of("storm0", instance_id("storm0", 42)) == 42
    assert index_of("storm0", instance_id("storm1", 42)) is None
    assert index_of("storm0", "storm0-svc-3") is None


def test_retry_delays_as_the_sdk_waits() -> None:
    rand = random.Random(1)
    timeouts = [retry_delay(None, rand) for _ in range(200)]
    assert min(timeouts) >= 1.0
    assert max(timeouts) <= 1.5
    refused = {"ok": False, "status": 503, "retry_after": 4.0}
    after = [retry_delay(refused, rand) for _ in range(200)]
    assert min(after) >= 4.0
    assert max(after) <= 4.4


def test_a_late_heartbeat_marks_its_instance_and_only_it() -> None:
    book = Book(3)
    assert not book.heartbeat_sent(0, 0.2)
    assert book.heartbeat_sent(1, 1.5)
    assert book.marked(book.late) == [1]


def test_all_registered_at_waits_for_the_last() -> None:
    book = Book(2)
    book.registered(0, 3.0)
    assert math.isnan(book.all_registered_at())
    assert book.never_registered() == 1
    book.registered(1, 5.0)
    book.registered(0, 9.0)  # registered again: the first time counts
    assert book.all_registered_at() == 5.0


async def test_registrations_go_out_on_their_timetable_without_waiting_for_replies() -> None:
    g, nc, clock = generator(instances=3, rate=10.0)  # instance i is due at i / 10 s
    await tick(g, clock, 0.15)
    assert [(s, b["instance_id"]) for s, b, _ in nc.sent] == [
        (REGISTER_SUBJECT, "t-0"),
        (REGISTER_SUBJECT, "t-1"),
    ]
    await tick(g, clock, 0.25)  # no reply came: the third goes out all the same
    assert len(nc.sent) == 3
    assert g.counters.reg_sent == 3
    assert [b["seq"] for _, b, _ in nc.sent] == [1, 1, 1]  # each its own session
    assert len({b["session_id"] for _, b, _ in nc.sent}) == 3


async def test_heartbeats_keep_their_own_schedule_and_count_lag() -> None:
    g, nc, clock = generator(instances=1, interval=10.0)
    await tick(g, clock, 0.0)
    await answer(g, nc.sent[0][2], {"ok": True, "status": 201})
    (due, _, _, _) = g.timetable[0]
    # Sent 3 s late: late, and the next one stays on the original schedule.
    await tick(g, clock, due + 3.0)
    subject, body, _ = nc.sent[-1]
    assert subject == HEARTBEAT_SUBJECT
    assert body["seq"] == 2
    assert g.counters.hb_late == 1
    assert g.book.late[0] == 1
    assert g.timetable[0][0] == pytest.approx(due + 10.0)
    assert g.lag.max >= 3.0


async def test_a_timed_out_registration_is_retried_about_a_second_later() -> None:
    g, nc, clock = generator(instances=1, timeout=5.0)
    await tick(g, clock, 0.0)
    sent_at = g.in_order[0][0]
    g.expire(sent_at + 5.0)
    assert g.counters.reg_timeouts == 1
    assert g.counters.reg_retried == 1
    assert g.book.reg_timed_out[0] == 1
    due = g.timetable[0][0]
    assert sent_at + 6.0 <= due <= sent_at + 6.5 + 1e-6
    await answer(g, nc.sent[0][2], {"ok": True, "status": 201})  # after its timeout
    assert g.counters.late_replies == 1
    assert g.counters.reg_ok == 0


async def test_a_refusal_is_retried_after_retry_after() -> None:
    g, nc, clock = generator(instances=1)
    await tick(g, clock, 0.0)
    refused = {"ok": False, "status": 503, "error": {"code": "OVERLOADED"}, "retry_after": 2.0}
    await answer(g, nc.sent[0][2], refused)
    assert g.counters.reg_refused == 1
    assert g.counters.reg_retried == 1
    assert g.book.reg_timed_out[0] == 0


async def test_a_heartbeat_404_registers_again_and_drops_the_old_schedule() -> None:
    g, nc, clock = generator(instances=1, interval=10.0)
    await tick(g, clock, 0.0)
    await answer(g, nc.sent[0][2], {"ok": True, "status": 201})
    await tick(g, clock, g.timetable[0][0])
    await answer(g, nc.sent[-1][2], {"ok": False, "status": 404})
    assert g.book.left[0] == 1
    assert g.counters.reregistered == 1
    await tick(g, clock, g.timetable[0][0])
    subjects = [s for s, _, _ in nc.sent]
    assert subjects == [REGISTER_SUBJECT, HEARTBEAT_SUBJECT, REGISTER_SUBJECT]
    # The old heartbeat's next turn is stale: nothing goes out for it.
    await tick(g, clock, 1000.0)
    assert [s for s, _, _ in nc.sent] == subjects


async def test_a_retried_registration_resends_its_seq_and_a_new_one_takes_the_next() -> None:
    # As the SDK's transport: a retry is the same request, so a router that applied
    # the first can answer it from memory; a registration after a 404 is a new one.
    g, nc, clock = generator(instances=1, timeout=5.0, interval=10.0)
    await tick(g, clock, 0.0)
    g.expire(5.0)  # timed out
    await tick(g, clock, g.timetable[0][0])
    refused = {"ok": False, "status": 503, "error": {"code": "OVERLOADED"}, "retry_after": 1.0}
    await answer(g, nc.sent[-1][2], refused)
    await tick(g, clock, g.timetable[0][0])
    await answer(g, nc.sent[-1][2], {"ok": True, "status": 200})
    await tick(g, clock, g.timetable[0][0])  # a heartbeat
    await answer(g, nc.sent[-1][2], {"ok": False, "status": 404})
    await tick(g, clock, g.timetable[0][0])  # registers anew
    assert [(s, body["seq"]) for s, body, _ in nc.sent] == [
        (REGISTER_SUBJECT, 1),
        (REGISTER_SUBJECT, 1),
        (REGISTER_SUBJECT, 1),
        (HEARTBEAT_SUBJECT, 2),
        (REGISTER_SUBJECT, 3),
    ]


async def test_heartbeats_go_where_the_last_reply_named_as_the_sdks_do() -> None:
    # With two routers, a heartbeat on the shared subject reaches the holder of its
    # lease half the time and is forwarded the other half: the SDK follows the
    # reply's heartbeat_subject, so the generator must, or it loads routers as no
    # SDK fleet does.
    g, nc, clock = generator(instances=1, interval=10.0)
    await tick(g, clock, 0.0)
    holder = "ipc.router.a.heartbeat"
    await answer(g, nc.sent[0][2], {"ok": True, "status": 201, "heartbeat_subject": holder})
    await tick(g, clock, g.timetable[0][0])
    assert nc.sent[-1][0] == holder
    moved = "ipc.router.b.heartbeat"
    await answer(g, nc.sent[-1][2], {"ok": True, "status": 200, "heartbeat_subject": moved})
    await tick(g, clock, g.timetable[0][0])
    assert nc.sent[-1][0] == moved
    await g.on_reply(Msg(nc.sent[-1][2], b""))  # nats-py's "no responders" status
    await tick(g, clock, g.timetable[0][0])
    assert nc.sent[-1][0] == HEARTBEAT_SUBJECT


async def test_a_v1_generator_keeps_every_heartbeat_on_the_shared_subject() -> None:
    g, nc, clock = generator(instances=1, interval=10.0, shared_heartbeats=True)
    await tick(g, clock, 0.0)
    named = {"ok": True, "status": 201, "heartbeat_subject": "ipc.router.a.heartbeat"}
    await answer(g, nc.sent[0][2], named)
    await tick(g, clock, g.timetable[0][0])
    assert nc.sent[-1][0] == HEARTBEAT_SUBJECT
