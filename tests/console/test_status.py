"""The status line and the banner."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aegis.console.api_client import ApiError
from aegis.console.status import PollState, banner_text, status_line

NOW = datetime(2026, 11, 3, 12, 0, 0, tzinfo=UTC)
URL = "http://127.0.0.1:8000"


def state(**changes: object) -> PollState:
    base = PollState(api_url=URL, interval=2.0)
    for name, value in changes.items():
        setattr(base, name, value)
    return base


def test_connecting() -> None:
    line = status_line(state(), NOW).plain
    assert line == f"AegisIPC  {URL}  ◌ connecting  every 2s"
    assert banner_text(state(), NOW) is None


def test_connected_shows_age_and_counts() -> None:
    current = state(last_success=NOW - timedelta(seconds=3), services=2, instances=7)
    line = status_line(current, NOW).plain
    assert line == f"AegisIPC  {URL}  ● connected  data 3s old  2 services · 7 instances  every 2s"
    assert banner_text(current, NOW) is None


def test_unreachable_with_stale_data() -> None:
    current = state(
        last_success=NOW - timedelta(seconds=75),
        error=ApiError("cannot connect: refused", unreachable=True),
        failures=3,
        next_poll_at=NOW + timedelta(seconds=8),
        services=1,
        instances=1,
    )
    assert current.stale
    line = status_line(current, NOW).plain
    assert "✕ unreachable  data 1m15s old (stale)" in line
    banner = banner_text(current, NOW)
    assert banner is not None
    assert banner.plain == (
        f"⚠ Router unreachable at {URL}: cannot connect: refused\n"
        "Showing data from 1m15s ago, marked stale. 3 failed attempts; retrying in 8s (r: now)."
    )


def test_error_answer_without_data_and_paused() -> None:
    current = state(
        error=ApiError("HTTP 500 INTERNAL_ERROR: boom", unreachable=False),
        failures=1,
        paused=True,
    )
    assert not current.stale
    line = status_line(current, NOW).plain
    assert "✕ error" in line
    assert line.endswith("❚❚ paused")
    banner = banner_text(current, NOW)
    assert banner is not None
    assert banner.plain == (
        f"⚠ Router error at {URL}: HTTP 500 INTERNAL_ERROR: boom\n"
        "No data yet. Polling paused: press p to resume, r to retry now."
    )


def test_counts_read_singular_for_one() -> None:
    one = state(last_success=NOW, services=1, instances=1)
    assert "  1 service · 1 instance  " in status_line(one, NOW).plain
    several = state(last_success=NOW, services=2, instances=3)
    assert "  2 services · 3 instances  " in status_line(several, NOW).plain
    none = state(last_success=NOW, services=0, instances=0)
    assert "  0 services · 0 instances  " in status_line(none, NOW).plain
