"""The background sweeper: keeps sweeping, survives a failing sweep, stops when told."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest
from aegis.router.registry import sweeper as sweeper_module
from aegis.router.registry.liveness import Liveness
from aegis.router.registry.sweeper import BEHIND, MAX_TICK, Sweeper, tick_for
from structlog.testing import capture_logs

from tests.support import eventually

SAFETY_NET = 10.0  # seconds; only stops a broken sweeper from hanging the suite
TICK = 0.001


class FakeLiveness:
    """Counts sweeps; the first ``failures`` raise; sets ``reached`` at ``target`` calls."""

    def __init__(self, target: int, failures: int = 0) -> None:
        self.calls = 0
        self.target = target
        self.failures = failures
        self.reached = asyncio.Event()

    async def sweep(self) -> int:
        self.calls += 1
        if self.calls >= self.target:
            self.reached.set()
        if self.calls <= self.failures:
            raise RuntimeError(f"sweep {self.calls} failed")
        return 0


def sweeper_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "aegis-sweeper" and not t.done()]


async def run_until_reached(fake: FakeLiveness) -> Sweeper:
    sweeper = Sweeper(cast(Liveness, fake), TICK)
    sweeper.start()
    await asyncio.wait_for(fake.reached.wait(), SAFETY_NET)
    return sweeper


async def test_sweeps_repeatedly_until_stopped() -> None:
    fake = FakeLiveness(target=5)
    sweeper = await run_until_reached(fake)
    await sweeper.stop()

    assert fake.calls >= 5
    assert sweeper_tasks() == []
    stopped_at = fake.calls
    for _ in range(20):
        await asyncio.sleep(0)
    assert fake.calls == stopped_at


async def test_keeps_sweeping_after_a_sweep_raises() -> None:
    fake = FakeLiveness(target=5, failures=2)
    with capture_logs() as logs:
        sweeper = await run_until_reached(fake)
        await sweeper.stop()

    crashes = [e for e in logs if e["event"] == "sweep_crashed"]
    assert len(crashes) == 2
    assert all(e["log_level"] == "error" and e.get("exc_info") for e in crashes)
    assert fake.calls >= 5


class SlowLiveness:
    """Each sweep takes ``seconds``; records when each began and ended (loop time)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.spans: list[tuple[float, float]] = []
        self.two = asyncio.Event()

    async def sweep(self) -> int:
        loop = asyncio.get_running_loop()
        began = loop.time()
        await asyncio.sleep(self.seconds)
        self.spans.append((began, loop.time()))
        if len(self.spans) == 2:
            self.two.set()
        return 0


async def test_a_sweep_longer_than_a_tick_is_followed_at_once() -> None:
    # A mass expiry's sweep outlasting its tick: what fell due meanwhile waits for
    # no further tick.
    slow = SlowLiveness(1.2)
    sweeper = Sweeper(cast(Liveness, slow), 1.0)
    sweeper.start()
    await asyncio.wait_for(slow.two.wait(), SAFETY_NET)
    await sweeper.stop()

    (_, first_ended), (second_began, _) = slow.spans[:2]
    assert second_began - first_ended < 0.5


async def test_stop_is_safe_before_start_and_twice() -> None:
    sweeper = Sweeper(cast(Liveness, FakeLiveness(target=1)), TICK)
    await sweeper.stop()
    sweeper.start()
    await sweeper.stop()
    await sweeper.stop()
    assert sweeper_tasks() == []


@pytest.mark.parametrize(
    ("unhealthy_after", "tick"),
    [(300.0, MAX_TICK), (15.0, 1.0), (10.0, 1.0), (5.0, 0.5), (2.5, 0.25), (0.3, 0.03)],
)
def test_tick_is_at_most_a_second_and_a_tenth_of_unhealthy_after(
    unhealthy_after: float, tick: float
) -> None:
    assert MAX_TICK == 1.0
    assert tick_for(unhealthy_after) == pytest.approx(tick)


class CountedTicks:
    """``asyncio`` as the sweeper module sees it, counting the sweeper's sleeps (its ticks)."""

    def __init__(self) -> None:
        self.ticks = 0

    def __getattr__(self, name: str) -> object:
        return getattr(asyncio, name)

    async def sleep(self, seconds: float) -> None:
        self.ticks += 1
        await asyncio.sleep(seconds)


async def test_pause_stops_sweeps_and_resume_waits_out_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = CountedTicks()
    monkeypatch.setattr(sweeper_module, "asyncio", clock)
    fake = FakeLiveness(target=1)
    sweeper = Sweeper(cast(Liveness, fake), TICK)
    with capture_logs() as logs:
        sweeper.pause("nats_disconnected")
        sweeper.pause("nats_disconnected")  # said once
        sweeper.start()
        # Paused ticks pass by the count, not by a pause of the test's own: 50 of them.
        await eventually(lambda: clock.ticks > 50, "50 ticks while paused", within=SAFETY_NET)
        paused_calls = fake.calls
        resumed = asyncio.get_running_loop().time()  # before: resume counts from its call
        sweeper.resume(grace=0.05)
        await asyncio.wait_for(fake.reached.wait(), SAFETY_NET)
        first_sweep = asyncio.get_running_loop().time()
        await sweeper.stop()

    assert paused_calls == 0
    assert first_sweep - resumed >= 0.05
    assert [e["event"] for e in logs] == ["sweep_paused", "sweep_resumed"]
    assert logs[0]["reason"] == "nats_disconnected"


async def test_a_router_that_cannot_hear_itself_sweeps_only_after_hearing_again_and_a_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # From a chaos history (issue 14, seed 14): router-1, continued after 6 s
    # stopped, swept on its first tick, before reading the heartbeats waiting in
    # its socket, and marked live instances UNHEALTHY.
    clock = CountedTicks()
    monkeypatch.setattr(sweeper_module, "asyncio", clock)
    fake = FakeLiveness(target=1)
    hears = False
    sweeper = Sweeper(cast(Liveness, fake), TICK, hearing=lambda: hears, hearing_grace=0.05)
    with capture_logs() as logs:
        sweeper.start()
        await eventually(lambda: clock.ticks > 50, "50 ticks while deaf", within=SAFETY_NET)
        deaf_calls = fake.calls
        heard = asyncio.get_running_loop().time()
        hears = True
        await asyncio.wait_for(fake.reached.wait(), SAFETY_NET)
        first_sweep = asyncio.get_running_loop().time()
        await sweeper.stop()

    assert deaf_calls == 0
    assert first_sweep - heard >= 0.05
    assert [(e["event"], e["reason"]) for e in logs] == [
        ("sweep_paused", "not_hearing_itself"),
        ("sweep_resumed", "not_hearing_itself"),
    ]


async def test_each_reason_to_pause_must_end_before_sweeps_resume() -> None:
    fake = FakeLiveness(target=1)
    hears = False
    sweeper = Sweeper(cast(Liveness, fake), TICK, hearing=lambda: hears)
    sweeper.pause("nats_disconnected")
    sweeper.start()
    for _ in range(20):
        await asyncio.sleep(TICK)
    hears = True
    for _ in range(20):
        await asyncio.sleep(TICK)
    assert fake.calls == 0, "still disconnected"
    sweeper.resume(grace=0.0, reason="nats_disconnected")
    await asyncio.wait_for(fake.reached.wait(), SAFETY_NET)
    await sweeper.stop()


async def test_a_router_behind_its_socket_judges_no_deadline_until_caught_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue 22: in a registration storm the loop ran seconds late, heartbeats
    # waited unread, and the sweep declared their instances dead.
    clock = CountedTicks()
    monkeypatch.setattr(sweeper_module, "asyncio", clock)
    fake = FakeLiveness(target=1)
    lag = 2.0
    sweeper = Sweeper(cast(Liveness, fake), TICK, hearing_grace=0.02, lag=lambda: lag)
    with capture_logs() as logs:
        sweeper.start()
        await eventually(lambda: clock.ticks > 50, "50 ticks while behind", within=SAFETY_NET)
        behind_calls = fake.calls
        lag = 0.1  # under BEHIND_LAG, but the worst was 2 s: that long, plus the grace
        caught_up = asyncio.get_running_loop().time()
        await asyncio.wait_for(fake.reached.wait(), SAFETY_NET)
        first_sweep = asyncio.get_running_loop().time()
        await sweeper.stop()

    assert behind_calls == 0
    assert first_sweep - caught_up >= 2.02
    assert [(e["event"], e["reason"]) for e in logs] == [
        ("sweep_paused", "router_behind"),
        ("sweep_resumed", "router_behind"),
    ]
    assert logs[1]["grace"] == pytest.approx(2.02)


async def test_holding_back_lasts_while_paused_and_through_the_grace() -> None:
    # Leases.holding_back asks this, so a deadline judged on a read (a heartbeat's)
    # waits as long as the sweep does.
    sweeper = Sweeper(cast(Liveness, FakeLiveness(target=1)), TICK)
    assert not sweeper.holding_back()
    sweeper.pause(BEHIND)
    assert sweeper.holding_back()
    sweeper.resume(grace=0.05, reason=BEHIND)
    assert sweeper.holding_back()
    await asyncio.sleep(0.08)
    assert not sweeper.holding_back()
