"""The registry as the console holds it: the services summary kept by change events, and the
listing the instances table shows (list + watch).

No I/O: ``loader.Loader`` fetches, ``ui.ConsoleApp`` feeds change events in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import replace
from typing import Final

from .listing import (
    Change,
    InstanceQuery,
    Listing,
    LocalSegment,
    PagedSegment,
    Segment,
    event_sequence,
)
from .models import InstanceInfo, ServiceSummary
from .tables import INSTANCE_SORTS, matches

STATUSES_WORST_FIRST: Final = ("OFFLINE", "UNHEALTHY", "ONLINE")
LOCAL_SORT_MAX: Final = 5000
"""A sort the router cannot do (heartbeat, registration) loads every match, up to this many."""
RECENT_KEPT: Final = 2000
"""Changes kept to replay onto a page the router listed before them."""

SERVER_SORT: Final = 0
STATUS_SORT: Final = 1


def _bump(summary: ServiceSummary, status: str, step: int) -> ServiceSummary:
    field = {"ONLINE": "online", "UNHEALTHY": "unhealthy", "OFFLINE": "offline"}.get(status)
    counts = replace(summary, instance_count=summary.instance_count + step)
    if field is None:
        return counts
    return replace(counts, **{field: getattr(summary, field) + step})


class ServiceCounts:
    """Services with their counts by status, as listed once and then moved by each change."""

    def __init__(self, services: Iterable[ServiceSummary] = ()) -> None:
        self.by_name = {s.name: s for s in services}

    def apply(self, change: Change) -> bool:
        """Count the change out of its old status and into its new one; ``True`` if a
        count moved (a maintenance toggle, say, moves none: nothing to redraw)."""
        touched = {s.service_name for s in (change.before, change.after) if s is not None}
        before = {name: self.by_name.get(name) for name in touched}
        for state, step in ((change.before, -1), (change.after, 1)):
            if state is None:
                continue
            name = state.service_name
            current = self.by_name.get(name) or ServiceSummary(name, 0, 0, 0, 0)
            bumped = _bump(current, state.status, step)
            if bumped.instance_count > 0:
                self.by_name[name] = bumped
            else:
                self.by_name.pop(name, None)
        return any(self.by_name.get(name) != summary for name, summary in before.items())

    def summaries(self) -> tuple[ServiceSummary, ...]:
        """Every service."""
        return tuple(self.by_name.values())

    @property
    def instances(self) -> int:
        """Instances in every service."""
        return sum(s.instance_count for s in self.by_name.values())

    def count(self, service: str | None, status: str | None = None) -> int:
        """Instances of ``service`` (``None``: all) in ``status`` (``None``: any)."""
        summaries = self.by_name.values() if service is None else [self.by_name.get(service)]
        total = 0
        for summary in summaries:
            if summary is None:
                continue
            if status is None:
                total += summary.instance_count
            else:
                total += getattr(summary, status.lower(), 0)
        return total


class LiveRegistry:
    """What the console knows: services, the listing on screen, and where in the stream.

    ``paged`` is ``None`` until the first listing says whether the router pages.
    """

    def __init__(self) -> None:
        self.paged: bool | None = None
        self.counts = ServiceCounts()
        self.listing = Listing()
        self.router: str | None = None
        self.services_version: int | None = None
        self.recent: deque[Change] = deque(maxlen=RECENT_KEPT)
        self.local_all: dict[str, InstanceInfo] = {}
        self.sort_note: str | None = None

    # Versions ----------------------------------------------------------------

    def sequence(self, version: str | None) -> int | None:
        """A listing's or event's number in this router's stream (``None``: not comparable)."""
        parsed = event_sequence(version)
        if parsed is None:
            return None
        router, number = parsed
        if self.router is None:
            self.router = router
        return number if router == self.router else None

    # Listing -----------------------------------------------------------------

    def set_services(self, services: Iterable[ServiceSummary], version: str | None) -> None:
        """A fresh summary from ``GET /services``."""
        self.counts = ServiceCounts(services)
        self.services_version = self.sequence(version)

    def build(
        self, service: str | None, needle: str, sort_index: int, local_rows: bool = False
    ) -> Listing:
        """A listing for the selection, filter and sort, empty until pages come."""
        self.sort_note = None
        if not self.paged:
            sort = INSTANCE_SORTS[sort_index].key
            segment = LocalSegment(
                self.local_all.values(), lambda i: matches(i, service, needle), sort
            )
            self.listing = Listing([segment])
            return self.listing
        query = InstanceQuery(service=service, needle=needle)
        segments: list[Segment]
        if sort_index == SERVER_SORT:
            segments = [PagedSegment(query)]
        elif sort_index == STATUS_SORT:
            segments = [PagedSegment(replace(query, status=s)) for s in STATUSES_WORST_FIRST]
        elif local_rows:
            segments = [LocalSegment((), query.matches, INSTANCE_SORTS[sort_index].key)]
        else:
            label = INSTANCE_SORTS[sort_index].label
            self.sort_note = f"{label} needs at most {LOCAL_SORT_MAX:,} matches: filter first"
            segments = [PagedSegment(query)]
        self.listing = Listing(segments)
        return self.listing

    def replay(self, segment: PagedSegment) -> None:
        """Apply the kept changes the page given to ``segment`` did not have yet."""
        for change in self.recent:
            segment.apply(change)

    # Changes -----------------------------------------------------------------

    def apply(self, change: Change) -> tuple[bool, bool]:
        """One change event: (services changed, listing changed)."""
        self.recent.append(change)
        services = False
        fresh = (
            self.services_version is None
            or change.sequence is None
            or change.sequence > self.services_version
        )
        if fresh:
            services = self.counts.apply(change)
            if change.sequence is not None:
                self.services_version = change.sequence
        if not self.paged:
            key = change.instance.key
            if change.after is None:
                self.local_all.pop(key, None)
            else:
                self.local_all[key] = change.after
        return services, self.listing.apply(change)
