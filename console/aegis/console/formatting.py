"""How registry values read on screen: ages, timestamps, metadata, statuses."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from rich.text import Text

Clock = Callable[[], datetime]
"""Returns the current time (timezone-aware, UTC); injected so tests and snapshots are fixed."""

STATUS_STYLES: Final[Mapping[str, str]] = {
    "ONLINE": "bold green",
    "UNHEALTHY": "bold yellow",
    "OFFLINE": "dim red",
}

# Worst first, so sorting by status brings trouble to the top.
STATUS_RANK: Final[Mapping[str, int]] = {"OFFLINE": 0, "UNHEALTHY": 1, "ONLINE": 2}


def system_clock() -> datetime:
    """The wall clock in UTC."""
    return datetime.now(UTC)


def parse_timestamp(value: str) -> datetime:
    """Parse the router's ISO-8601 UTC timestamp (``...Z`` or ``+00:00``) as aware UTC.

    Raises ``ValueError`` for anything else.
    """
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        # The contract says UTC; a naive value is read as such rather than as local time.
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_age(seconds: float) -> str:
    """A short relative age: ``4s``, ``2m05s``, ``3h12m``, ``5d03h``.

    Negative ages (a router clock ahead of ours) read as ``0s``.
    """
    total = max(0, int(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def age_between(earlier: datetime, now: datetime) -> str:
    """``format_age`` of the time from ``earlier`` to ``now``."""
    return format_age((now - earlier).total_seconds())


def format_timestamp(value: datetime) -> str:
    """A UTC timestamp to the second, e.g. ``2026-11-03 12:34:56``."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return f"[{len(value)}]"
    if isinstance(value, dict):
        return f"{{{len(value)}}}"
    # JSON spelling for true/false/null and numbers.
    return json.dumps(value)


# The table's last column shows what fits and scrolls to the rest; the detail
# panel (enter) has it all. The bound keeps one huge value from widening the table.
METADATA_CHARS = 160


def summarize_metadata(metadata: Mapping[str, Any], width: int = METADATA_CHARS) -> str:
    """One line of ``key=value`` pairs, nested values as ``[n]``/``{n}``, cut at ``width``."""
    if not metadata:
        return "-"
    line = " ".join(f"{key}={_scalar(value)}" for key, value in metadata.items())
    # Newlines or tabs inside values would break the one-line cell.
    line = " ".join(line.split())
    if len(line) <= width:
        return line
    return line[: width - 1] + "…"


def pretty_json(value: Any) -> str:
    """Indented JSON with keys in their original order and non-ASCII kept readable."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def status_text(status: str) -> Text:
    """The status word in its colour: ONLINE green, UNHEALTHY yellow, OFFLINE dim red."""
    return Text(status, style=STATUS_STYLES.get(status, "magenta"))


def counted(count: int, noun: str) -> str:
    """``1 service``, ``0 services``, ``3,000 services``: the count with its noun in agreement.

    For the regular nouns the console uses (service, instance, attempt).
    """
    return f"{count} {noun}" if count == 1 else f"{count:,} {noun}s"


def plain(value: str, style: str = "") -> Text:
    """Literal text for a table cell: never parsed as Rich markup (metadata may hold ``[``)."""
    return Text(value, style=style, no_wrap=True, overflow="ellipsis")
