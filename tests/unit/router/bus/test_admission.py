"""aegis.router.bus.admission: a bounded lane refuses early, drops what its callers gave up
on, and never serves more at once than it has workers."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest
import structlog
from aegis.router.bus.admission import MAX_RETRY_AFTER, MIN_RETRY_AFTER, Lane
from aegis.router.bus.endpoint_stats import EndpointStats
from aegis.router.domain import LaneLimits
from aegis.wire.messages import REQUEST_ID_HEADER
from prometheus_client import REGISTRY

from tests.support import eventually


class FakeMsg:
    """What the lane reads of a nats-py message, and the replies it got."""

    def __init__(self, data: bytes, reply: str = "_INBOX.1") -> None:
        self.data = data
        self.reply = reply
        self.headers: dict[str, str] | None = None
        self.subject = "ipc.service.register"
        self.answers: list[dict[str, Any]] = []

    async def respond(self, data: bytes) -> None:
        self.answers.append(msgpack.unpackb(data))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Gate:
    """A handler that holds every request until released; counts those at once."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.running = 0
        self.most = 0
        self.served: list[bytes] = []

    async def __call__(self, data: bytes) -> bytes:
        self.running += 1
        self.most = max(self.most, self.running)
        await self.open.wait()
        self.running -= 1
        self.served.append(data)
        return msgpack.packb({"ok": True, "status": 201})


def shed(how: str) -> float:
    value = REGISTRY.get_sample_value(
        "aegis_requests_shed_total", {"kind": "registration", "how": how}
    )
    return value or 0.0


def lane(gate: Gate, clock: Clock, workers: int = 2) -> Lane:
    limits = LaneLimits(workers=workers, max_wait=1.0, deadline=5.0)
    return Lane("registration", gate, limits, EndpointStats(), clock)


async def test_no_more_at_once_than_the_workers_and_every_one_answered() -> None:
    gate, clock = Gate(), Clock()
    registrations = lane(gate, clock)
    registrations.start()
    msgs = [FakeMsg(b"%d" % n) for n in range(6)]
    for msg in msgs:
        await registrations.offer(msg)
    await eventually(lambda: gate.running == 2, "two at once")
    gate.open.set()
    await eventually(lambda: len(gate.served) == 6, "all served")
    await registrations.stop()

    assert gate.most == 2
    assert [m.answers[0]["status"] for m in msgs] == [201] * 6


async def test_a_registration_that_would_wait_too_long_is_refused_at_once() -> None:
    gate, clock = Gate(), Clock()
    registrations = lane(gate, clock, workers=1)
    registrations.start()
    first, queued = FakeMsg(b"a"), FakeMsg(b"b")
    await registrations.offer(first)
    await eventually(lambda: gate.running == 1, "one served")
    await registrations.offer(queued)
    clock.now += 1.0  # the queued one has waited max_wait
    refused_before = shed("refused")
    late = FakeMsg(b"c")
    await registrations.offer(late)

    [answer] = late.answers
    assert (answer["ok"], answer["status"], answer["error"]["code"]) == (False, 503, "OVERLOADED")
    assert MIN_RETRY_AFTER <= answer["retry_after"] <= MAX_RETRY_AFTER
    assert "nothing was stored" in answer["error"]["message"]
    assert shed("refused") == refused_before + 1
    assert registrations.shedding
    gate.open.set()
    await eventually(lambda: len(gate.served) == 2, "the queued one served")
    assert b"c" not in gate.served
    await registrations.offer(FakeMsg(b"d"))  # the queue emptied: accepted again
    await eventually(lambda: len(gate.served) == 3, "accepted once room came back")
    assert not registrations.shedding
    await registrations.stop()


async def test_a_request_the_handler_answers_at_once_takes_no_turn_even_while_refusing() -> None:
    gate, clock = Gate(), Clock()
    answered_now = msgpack.packb({"ok": True, "status": 200})
    gate.answer_now = lambda data, request_id: answered_now if data == b"retry" else gate  # type: ignore[attr-defined]
    registrations = lane(gate, clock, workers=1)
    registrations.start()
    await registrations.offer(FakeMsg(b"a"))
    await eventually(lambda: gate.running == 1, "one served")
    await registrations.offer(FakeMsg(b"b"))
    clock.now += 1.0  # the lane refuses from now on
    refused, retry = FakeMsg(b"c"), FakeMsg(b"retry")
    await registrations.offer(refused)
    await registrations.offer(retry)

    assert refused.answers[0]["status"] == 503
    assert retry.answers == [{"ok": True, "status": 200}]
    gate.open.set()
    await eventually(lambda: len(gate.served) == 2, "the queued one served")
    assert b"retry" not in gate.served
    await registrations.stop()


async def test_one_that_waited_past_its_callers_deadline_is_dropped_unserved() -> None:
    gate, clock = Gate(), Clock()
    registrations = lane(gate, clock, workers=1)
    registrations.start()
    await registrations.offer(FakeMsg(b"a"))
    await eventually(lambda: gate.running == 1, "one served")
    stale = FakeMsg(b"stale")
    await registrations.offer(stale)
    dropped_before = shed("dropped")
    clock.now += 5.5  # past the deadline: its caller has timed out
    gate.open.set()
    await eventually(lambda: shed("dropped") == dropped_before + 1, "dropped")
    await registrations.stop()

    assert gate.served == [b"a"]
    assert stale.answers == []


@pytest.mark.parametrize(("workers", "max_wait", "deadline"), [(0, 1, 5), (1, 0, 5), (1, 6, 5)])
def test_limits_that_cannot_work_are_refused(
    workers: int, max_wait: float, deadline: float
) -> None:
    with pytest.raises(ValueError, match="a lane needs"):
        LaneLimits(workers, max_wait, deadline)


async def test_a_queue_that_would_take_too_long_refuses_before_anyone_waited_long() -> None:
    gate, clock = Gate(), Clock()
    registrations = lane(gate, clock, workers=1)
    registrations._cost = 0.4  # the pace it measured: 0.4 s a registration
    registrations.start()
    await registrations.offer(FakeMsg(b"a"))
    await eventually(lambda: gate.running == 1, "one served")
    second, third, fourth = FakeMsg(b"b"), FakeMsg(b"c"), FakeMsg(b"d")
    await registrations.offer(second)  # 0.4 s of work ahead of it
    await registrations.offer(third)  # 0.8 s ahead: under max_wait
    await registrations.offer(fourth)  # 1.2 s ahead: refused, though none waited yet

    assert second.answers == third.answers == []
    assert [a["status"] for a in fourth.answers] == [503]
    assert fourth.answers[0]["retry_after"] == pytest.approx(1.2)
    gate.open.set()
    await registrations.stop()


async def test_refused_callers_get_appointments_one_service_slot_apart() -> None:
    # A refused fleet told to come back all at the same moment would be the same
    # storm again; told too late, it would leave the router idle.
    gate, clock = Gate(), Clock()
    registrations = lane(gate, clock, workers=1)
    registrations._cost = 0.4  # 2.5 registrations a second
    registrations.start()
    await registrations.offer(FakeMsg(b"held"))
    await eventually(lambda: gate.running == 1, "one served")
    await registrations.offer(FakeMsg(b"queued"))
    await registrations.offer(FakeMsg(b"queued too"))
    refused = [FakeMsg(b"x%d" % n) for n in range(4)]
    for msg in refused:
        await registrations.offer(msg)
    clock.now += 10.0  # the appointments lapse as time passes them
    late = FakeMsg(b"late")
    await registrations.offer(late)
    gate.open.set()
    await registrations.stop()

    waits = [msg.answers[0]["retry_after"] for msg in refused]
    # The queue ahead first (3 x 0.4 s), then one slot each, overbooked by 1.25: 0.32 s.
    assert waits == pytest.approx([1.2, 1.52, 1.84, 2.16])
    # Ten seconds on, the slots promised have passed: the queue ahead again, not 2.8 s.
    assert late.answers[0]["retry_after"] == pytest.approx(1.2)


class ScopedGate(Gate):
    """A per-service subject's handler: it is given the subject of each request."""

    scoped = True

    def __init__(self) -> None:
        super().__init__()
        self.subjects: list[str] = []

    async def __call__(self, data: bytes, *, subject: str = "") -> bytes:  # type: ignore[override]
        self.subjects.append(subject)
        return await super().__call__(data)


async def test_two_subjects_share_one_lane_and_its_bound() -> None:
    gate, scoped, clock = Gate(), ScopedGate(), Clock()
    registrations = lane(gate, clock, workers=1)
    scoped_stats = EndpointStats()
    per_service = registrations.route(scoped, scoped_stats)
    registrations.start()
    await registrations.offer(FakeMsg(b"shared"))
    await eventually(lambda: gate.running == 1, "one served")
    own = FakeMsg(b"own")
    own.subject = "ipc.svc.billing.register"
    await per_service(own)  # queued behind the shared one: one lane, one worker
    clock.now += 1.0  # the queued one has waited max_wait: the lane refuses, whoever asks
    refused = FakeMsg(b"refused")
    refused.subject = "ipc.svc.checkout.register"
    await per_service(refused)

    assert refused.answers[0]["error"]["code"] == "OVERLOADED"
    assert scoped.served == []
    gate.open.set()
    scoped.open.set()
    await eventually(lambda: scoped.served == [b"own"], "the queued one served by its handler")
    await registrations.stop()
    assert gate.served == [b"shared"]
    assert scoped.subjects == ["ipc.svc.billing.register"]  # given the subject it came on
    assert scoped_stats.num_requests == 1


async def test_each_request_logs_its_own_request_id_and_leaves_none_behind() -> None:
    """One worker serves a request with an id, then one without: the first's id is in its
    own log events only."""
    seen: list[object] = []

    async def handler(data: bytes) -> bytes:
        seen.append(structlog.contextvars.get_contextvars().get("request_id"))
        await asyncio.sleep(0)  # a store write's wait, with the id still bound
        seen.append(structlog.contextvars.get_contextvars().get("request_id"))
        return msgpack.packb({"ok": True, "status": 201})

    registrations = Lane("registration", handler, LaneLimits(workers=1), EndpointStats(), Clock())
    registrations.start()
    with_id, without = FakeMsg(b"a"), FakeMsg(b"b")
    with_id.headers = {REQUEST_ID_HEADER: "req-1"}
    await registrations.offer(with_id)
    await registrations.offer(without)
    await eventually(lambda: len(without.answers) == 1, "both answered")
    await registrations.stop()

    assert seen == ["req-1", "req-1", None, None]
    assert with_id.answers[0]["status"] == 201
