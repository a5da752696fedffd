"""What the tables hold: the keyed diff between polls, columns, cells and sort orders.

Pure functions only; ``keyed_table.KeyedTable`` applies their results to a DataTable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Generic, TypeVar

from rich.text import Text

from .formatting import (
    STATUS_RANK,
    age_between,
    format_timestamp,
    plain,
    status_text,
    summarize_metadata,
)
from .models import InstanceInfo, ServiceSummary
from .ordering import NaturalKey, natural_key

K = TypeVar("K")
V = TypeVar("V")

ALL_SERVICES: Final = "*"
"""Row key of the services table's totals row, which selects every service (no valid name)."""


@dataclass(frozen=True, slots=True)
class RowDiff(Generic[K, V]):
    """What changed between two polls, by row key."""

    added: dict[K, V]
    updated: dict[K, V]
    removed: list[K]

    def __bool__(self) -> bool:
        return bool(self.added or self.updated or self.removed)


def diff_rows(old: Mapping[K, V], new: Mapping[K, V]) -> RowDiff[K, V]:
    """Rows in ``new`` but not ``old`` (added), in both but unequal (updated), only in ``old``.

    ``added`` and ``updated`` keep the order of ``new``; ``removed`` that of ``old``.
    """
    added: dict[K, V] = {}
    updated: dict[K, V] = {}
    missing = object()
    for key, value in new.items():
        previous = old.get(key, missing)
        if previous is missing:
            added[key] = value
        elif previous != value:
            updated[key] = value
    removed = [key for key in old if key not in new]
    return RowDiff(added=added, updated=updated, removed=removed)


@dataclass(frozen=True, slots=True)
class Column:
    """A table column: its key, header label and fixed width (``None``: fit the content)."""

    key: str
    label: str
    width: int | None = None


SERVICE_COLUMNS: Final = (
    Column("name", "Service"),
    Column("instances", "Instances"),
    Column("online", "ONLINE"),
    Column("unhealthy", "UNHEALTHY"),
    Column("offline", "OFFLINE"),
)

# Metadata last and fitted to its content: it takes the room the table has to its
# right (a fixed 32 cut it at 33 characters with 40 columns free), and a longer
# summary runs on past the edge, where scrolling right reaches it, instead of
# pushing the ages off the screen.
INSTANCE_COLUMNS: Final = (
    Column("instance", "Instance"),
    Column("service", "Service"),
    Column("status", "Status", width=9),
    Column("marks", "Marks", width=11),
    Column("registered", "Registered (UTC)", width=19),
    Column("heartbeat", "Last heartbeat", width=14),
    Column("metadata", "Metadata"),
)

HEARTBEAT_COLUMN: Final = "heartbeat"


def _count(value: int, style: str) -> Text:
    # Zero counts stay quiet so the eye lands on the non-zero ones.
    return Text(str(value), style=style if value else "dim", justify="right")


def service_cells(service: ServiceSummary) -> tuple[Text, ...]:
    """Cells of a services row; the ``ALL_SERVICES`` row reads "All services"."""
    name = plain("All services", "italic") if service.name == ALL_SERVICES else plain(service.name)
    return (
        name,
        Text(str(service.instance_count), justify="right"),
        _count(service.online, "green"),
        _count(service.unhealthy, "yellow"),
        _count(service.offline, "red"),
    )


def all_services_row(services: tuple[ServiceSummary, ...]) -> ServiceSummary:
    """The totals row that selects every service."""
    return ServiceSummary(
        name=ALL_SERVICES,
        instance_count=sum(s.instance_count for s in services),
        online=sum(s.online for s in services),
        unhealthy=sum(s.unhealthy for s in services),
        offline=sum(s.offline for s in services),
    )


def heartbeat_cell(instance: InstanceInfo, now: datetime) -> Text:
    """Time since the last heartbeat, relative to ``now``."""
    return plain(age_between(instance.last_heartbeat_at, now))


def marks_cell(instance: InstanceInfo) -> Text:
    """``maint`` for an instance in maintenance, ``micro`` for a NATS micro service."""
    marks = Text(no_wrap=True, overflow="ellipsis")
    if instance.maintenance is not None:
        marks.append("maint", style="bold magenta")
    if instance.micro:
        marks.append(" micro" if marks else "micro", style="cyan")
    return marks


def instance_cells(instance: InstanceInfo, now: datetime) -> tuple[Text, ...]:
    """Cells of an instances row, in ``INSTANCE_COLUMNS`` order."""
    return (
        plain(instance.instance_id, "bold"),
        plain(instance.service_name),
        status_text(instance.status),
        marks_cell(instance),
        plain(format_timestamp(instance.registered_at)),
        heartbeat_cell(instance, now),
        plain(summarize_metadata(instance.metadata)),
    )


def service_order(service: ServiceSummary) -> tuple[bool, NaturalKey]:
    """The totals row first, then services by name in natural order."""
    return (service.name != ALL_SERVICES, natural_key(service.name))


def by_name(instance: InstanceInfo) -> tuple[NaturalKey, NaturalKey]:
    """Service name, then instance id, both in natural order (``big-2`` before ``big-10``)."""
    return natural_key(instance.service_name), natural_key(instance.instance_id)


@dataclass(frozen=True, slots=True)
class SortOrder:
    """One way to order the instances table, with the label shown in its title."""

    label: str
    key: Callable[[InstanceInfo], Any]


# Every order ends with the names, so equal statuses or times list in natural order.
INSTANCE_SORTS: Final = (
    SortOrder("service, id", by_name),
    SortOrder("status, worst first", lambda i: (STATUS_RANK.get(i.status, -1), by_name(i))),
    SortOrder("heartbeat, oldest first", lambda i: (i.last_heartbeat_at, by_name(i))),
    SortOrder("registered, newest first", lambda i: (-i.registered_at.timestamp(), by_name(i))),
)


def matches(instance: InstanceInfo, service: str | None, needle: str) -> bool:
    """Whether the instance belongs to ``service`` (``None``: any) and its service name or
    instance id contains ``needle`` (case-insensitive; empty matches all)."""
    if service is not None and instance.service_name != service:
        return False
    if not needle:
        return True
    folded = needle.casefold()
    return folded in instance.instance_id.casefold() or folded in instance.service_name.casefold()
