"""Ages, timestamps, metadata summaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from aegis.console.formatting import (
    age_between,
    counted,
    format_age,
    format_timestamp,
    parse_timestamp,
    pretty_json,
    status_text,
    summarize_metadata,
)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.9, "0s"),
        (59, "59s"),
        (60, "1m00s"),
        (125, "2m05s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (3 * 3600 + 12 * 60 + 59, "3h12m"),
        (86399, "23h59m"),
        (86400, "1d00h"),
        (5 * 86400 + 3 * 3600, "5d03h"),
        (-30, "0s"),
    ],
)
def test_format_age(seconds: float, text: str) -> None:
    assert format_age(seconds) == text


def test_age_between() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert age_between(now - timedelta(seconds=75), now) == "1m15s"
    # A router clock ahead of ours is no negative age.
    assert age_between(now + timedelta(seconds=5), now) == "0s"


@pytest.mark.parametrize(
    "text",
    ["2026-11-03T12:34:56Z", "2026-11-03T12:34:56+00:00", "2026-11-03T14:34:56+02:00"],
)
def test_parse_timestamp_is_aware_utc(text: str) -> None:
    parsed = parse_timestamp(text)
    assert parsed == datetime(2026, 11, 3, 12, 34, 56, tzinfo=UTC)
    assert parsed.utcoffset() == timedelta(0)


def test_parse_timestamp_reads_naive_as_utc_and_rejects_garbage() -> None:
    assert parse_timestamp("2026-11-03T12:34:56").tzinfo is UTC
    with pytest.raises(ValueError, match="Invalid isoformat"):
        parse_timestamp("yesterday")


def test_format_timestamp_in_utc() -> None:
    cet = timezone(timedelta(hours=1))
    assert format_timestamp(datetime(2026, 11, 3, 13, 0, 5, 999, tzinfo=cet)) == (
        "2026-11-03 12:00:05"
    )


@pytest.mark.parametrize(
    ("metadata", "text"),
    [
        ({}, "-"),
        ({"version": "1.2.3"}, "version=1.2.3"),
        ({"n": 3, "ok": True, "none": None, "f": 1.5}, "n=3 ok=true none=null f=1.5"),
        ({"tags": ["a", "b"], "nested": {"x": 1, "y": 2}}, "tags=[2] nested={2}"),
        ({"note": "two\nlines\ttab"}, "note=two lines tab"),
    ],
)
def test_summarize_metadata(metadata: dict[str, object], text: str) -> None:
    assert summarize_metadata(metadata) == text


def test_summarize_metadata_cuts_at_width() -> None:
    summary = summarize_metadata({"description": "x" * 100}, width=20)
    assert summary == "description=xxxxxxx…"
    assert len(summary) == 20


def test_pretty_json_keeps_order_and_unicode() -> None:
    assert pretty_json({"z": 1, "a": ["é"]}) == '{\n  "z": 1,\n  "a": [\n    "é"\n  ]\n}'


def test_status_text_colours() -> None:
    assert "green" in str(status_text("ONLINE").style)
    assert "yellow" in str(status_text("UNHEALTHY").style)
    assert "red" in str(status_text("OFFLINE").style)
    # A status this console does not know yet still shows, in a colour of its own.
    assert status_text("DRAINING").plain == "DRAINING"


@pytest.mark.parametrize(
    ("count", "text"), [(0, "0 services"), (1, "1 service"), (2, "2 services"), (11, "11 services")]
)
def test_counted_agrees_in_number(count: int, text: str) -> None:
    assert counted(count, "service") == text
