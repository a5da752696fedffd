"""Backoff delays and the circuit breaker, with injected randomness and clock."""

from __future__ import annotations

import pytest
from aegis.connect.backoff import backoff_delay
from aegis.sdk.resilience import BreakerState, CircuitBreaker

from tests.support import FakeClock


@pytest.mark.parametrize(
    ("attempt", "expected"), [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.8), (4, 1.6), (5, 2.0), (30, 2.0)]
)
def test_backoff_is_exponential_and_capped(attempt: int, expected: float) -> None:
    assert backoff_delay(attempt, base=0.1, cap=2.0, jitter=False) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("draw", "attempt", "expected"), [(0.0, 3, 0.0), (0.5, 3, 0.4), (0.25, 10, 0.5)]
)
def test_jitter_scales_by_the_draw(draw: float, attempt: int, expected: float) -> None:
    delay = backoff_delay(attempt, base=0.1, cap=2.0, jitter=True, rand=lambda: draw)
    assert delay == pytest.approx(expected)


def test_no_jitter_ignores_rand() -> None:
    def rand() -> float:
        raise AssertionError("rand must not be drawn without jitter")

    assert backoff_delay(1, base=1.0, cap=10.0, jitter=False, rand=rand) == 2.0


def open_breaker(threshold: int = 3, cooldown: float = 10.0) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    breaker = CircuitBreaker(threshold, cooldown, clock=clock.monotonic)
    for _ in range(threshold):
        assert breaker.allow()
        breaker.record_failure()
    return breaker, clock


def test_closed_until_threshold() -> None:
    breaker = CircuitBreaker(3, 10.0, clock=FakeClock().monotonic)
    seen: list[tuple[bool, float, BreakerState]] = []
    for _ in range(3):
        allowed, wait = breaker.allow(), breaker.retry_after()
        breaker.record_failure()
        seen.append((allowed, wait, breaker.state))
    assert seen == [
        (True, 0.0, BreakerState.CLOSED),
        (True, 0.0, BreakerState.CLOSED),
        (True, 0.0, BreakerState.OPEN),
    ]


def test_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(3, 10.0, clock=FakeClock().monotonic)
    for _ in range(2):
        breaker.record_failure()
    breaker.record_success()
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


def test_open_fails_fast_and_counts_down() -> None:
    breaker, clock = open_breaker()
    assert [breaker.allow() for _ in range(5)] == [False] * 5
    assert breaker.retry_after() == pytest.approx(10.0)
    clock.advance(4)
    assert breaker.retry_after() == pytest.approx(6.0)
    assert not breaker.allow()


def test_half_open_lets_exactly_one_trial_through() -> None:
    breaker, clock = open_breaker()
    clock.advance(10)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.retry_after() == 0.0
    assert [breaker.allow() for _ in range(3)] == [True, False, False]


def test_trial_success_closes() -> None:
    breaker, clock = open_breaker()
    clock.advance(10)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert [breaker.allow() for _ in range(3)] == [True] * 3
    # Closing started the count afresh: one failure does not reopen it.
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


def test_trial_failure_reopens_for_a_full_cooldown() -> None:
    breaker, clock = open_breaker()
    clock.advance(15)
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    assert breaker.retry_after() == pytest.approx(10.0)
    clock.advance(10)
    assert breaker.allow()
