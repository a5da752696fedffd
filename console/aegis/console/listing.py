"""What the instances table lists, kept as a window of rows plus change events (list + watch).

Pure bookkeeping, no I/O: the loader (``loader.py``) fetches pages and hands them
here; the event follower hands changes. A router that pages (``limit``, ``cursor``,
``version``) is read a window at a time (``PagedSegment``); everything else is held
whole and sorted here (``LocalSegment``, also what an older router gets).

Offsets: a ``PagedSegment`` knows its total and where its window starts; a
registration or removal before the window moves the window down or up by one, so
the rows on screen stay where they are without asking the router again.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol

from .models import InstanceInfo

PAGE: Final = 200
"""Rows asked for at a time around the visible ones."""
MAX_LIMIT: Final = 1000
"""The router's largest page (the contract's ``limit`` bound)."""
MAX_WINDOW: Final = 2000
"""Rows kept of a paged listing; the rest are dropped as the window moves on."""

OrderKey = tuple[str, str]


def server_order(instance: InstanceInfo) -> OrderKey:
    """The router's stable order of a paged listing: service, then instance id."""
    return instance.service_name, instance.instance_id


@dataclass(frozen=True, slots=True)
class InstanceQuery:
    """Which instances a listing holds: the contract's server-side filters the console uses.

    ``needle`` is a case-insensitive substring of the instance id (``q``).
    """

    service: str | None = None
    needle: str = ""
    status: str | None = None
    maintenance: str | None = None
    """``exclude`` or ``only`` instances in maintenance; ``None``: include them."""

    def params(self) -> dict[str, str]:
        """The query parameters of ``GET /instances`` for this query."""
        params: dict[str, str] = {}
        if self.service is not None:
            params["service"] = self.service
        if self.needle:
            params["q"] = self.needle
        if self.status is not None:
            params["status"] = self.status
        if self.maintenance is not None:
            params["maintenance"] = self.maintenance
        return params

    def matches(self, instance: InstanceInfo) -> bool:
        """Whether the router would list ``instance`` under this query."""
        if self.service is not None and instance.service_name != self.service:
            return False
        if self.status is not None and instance.status != self.status:
            return False
        if self.maintenance is not None and (instance.maintenance is None) != (
            self.maintenance == "exclude"
        ):
            return False
        return not self.needle or self.needle.casefold() in instance.instance_id.casefold()


@dataclass(frozen=True, slots=True)
class Change:
    """One change event as a before and an after (``None``: the instance did not exist)."""

    before: InstanceInfo | None
    after: InstanceInfo | None
    sequence: int | None = None
    """The event's place in the stream (its id's number), to skip what a listing already has."""

    @property
    def instance(self) -> InstanceInfo:
        """The instance as it is now, or as it was when it went."""
        shown = self.after or self.before
        assert shown is not None
        return shown


def change_of(
    kind: str, instance: InstanceInfo, previous_status: str | None, sequence: int | None = None
) -> Change:
    """A router change event (``registered``, ``status_changed``, ``removed``, …) as a Change.

    The router sends the instance as it is after the change (as it was, for
    ``removed``) and its status before (none for a new instance).
    """
    before = None if previous_status is None else replace(instance, status=previous_status)
    after = None if kind == "removed" else instance
    return Change(before=before, after=after, sequence=sequence)


def event_sequence(event_id: str | None) -> tuple[str, int] | None:
    """``("r1", 42)`` from the stream id ``r1:42``; ``None`` if it is not of that form."""
    if not event_id:
        return None
    head, _, tail = event_id.rpartition(":")
    return (head, int(tail)) if tail.isdigit() else None


class Segment(Protocol):
    """One stretch of the table: rows in order, some perhaps not loaded yet."""

    @property
    def total(self) -> int:
        """Rows in the segment, loaded or not."""

    def row(self, index: int) -> InstanceInfo | None:
        """The row at ``index`` (0-based), ``None`` while not loaded."""

    def index_of(self, key: str) -> int | None:
        """Where the instance with row key ``key`` is, if loaded."""

    def apply(self, change: Change) -> bool:
        """Take one change; whether the segment changed."""


@dataclass(slots=True)
class CursorMark:
    """Where a page ended: ``offset`` rows come up to and including ``after``."""

    offset: int
    after: OrderKey
    cursor: str


@dataclass(frozen=True, slots=True)
class Fetch:
    """A page to ask for: ``limit`` rows from ``cursor``, the first of them at ``offset``."""

    offset: int
    cursor: str | None
    limit: int


@dataclass(slots=True)
class PagedSegment:
    """A paged listing of the router: a window of rows, the total, and where pages start."""

    query: InstanceQuery
    total: int = 0
    start: int = 0
    rows: list[InstanceInfo] = field(default_factory=list)
    marks: list[CursorMark] = field(default_factory=list)
    loaded: bool = False
    version: int | None = None
    """Sequence of the last change this segment reflects (a listing's or an event's)."""

    def row(self, index: int) -> InstanceInfo | None:
        """The row at ``index`` if it is in the window."""
        at = index - self.start
        return self.rows[at] if 0 <= at < len(self.rows) else None

    def index_of(self, key: str) -> int | None:
        """Offset of the instance ``key`` if it is in the window."""
        service, _, instance_id = key.partition("/")
        at = self._position((service, instance_id))
        if at < len(self.rows) and self.rows[at].key == key:
            return self.start + at
        return None

    def plan(self, low: int, high: int) -> Fetch | None:
        """The next page to fetch so rows ``low``..``high`` (exclusive) are in the window."""
        high = min(high, self.total) if self.loaded else high
        low = max(0, min(low, high - 1))
        end = self.start + len(self.rows)
        if self.loaded and self.start <= low and high <= end:
            return None
        if self.loaded and self.start <= low <= end and self.rows:
            mark = self._mark_at(end)
            if mark is not None:
                return Fetch(end, mark.cursor, _limit(high - end))
        # From the nearest page start at or before ``low``; a far one is walked a page at a time.
        best = Fetch(0, None, 0)
        for mark in self.marks:
            if mark.offset <= low and mark.offset > best.offset:
                best = Fetch(mark.offset, mark.cursor, 0)
        return replace(best, limit=_limit(high - best.offset))

    def accept(
        self,
        fetch: Fetch,
        rows: Sequence[InstanceInfo],
        total: int,
        next_cursor: str | None,
        version: int | None,
    ) -> None:
        """Take the page ``fetch`` asked for: into the window, beside it or instead of it."""
        self.total = total
        self.loaded = True
        if version is not None:
            self.version = version
        if rows and next_cursor is not None:
            self._remember(
                CursorMark(fetch.offset + len(rows), server_order(rows[-1]), next_cursor)
            )
        end = self.start + len(self.rows)
        if fetch.offset == end and self.rows and (not rows or _after(rows[0], self.rows[-1])):
            self.rows.extend(rows)
            if len(self.rows) > MAX_WINDOW:
                cut = len(self.rows) - MAX_WINDOW
                del self.rows[:cut]
                self.start += cut
        else:
            self.start, self.rows = fetch.offset, list(rows)

    def apply(self, change: Change) -> bool:
        """Move the window, the total and the page starts as ``change`` moves rows."""
        if self.version is not None and change.sequence is not None:
            if change.sequence <= self.version:
                return False  # the listing already has it
            self.version = change.sequence
        was = change.before is not None and self.query.matches(change.before)
        now = change.after is not None and self.query.matches(change.after)
        if not (was or now):
            return False
        key = server_order(change.instance)
        at = self._position(key)
        present = at < len(self.rows) and server_order(self.rows[at]) == key
        if was and now:
            if present and change.after is not None:
                self.rows[at] = change.after
            return present
        step = 1 if now else -1
        self.total = max(0, self.total + step)
        for mark in self.marks:
            if key < mark.after or (step < 0 and key == mark.after):
                mark.offset += step
        if now and change.after is not None:
            inside = 0 < at < len(self.rows) or (at == 0 and self.start == 0)
            ends = self.start + len(self.rows) >= self.total - 1
            if inside or (at == len(self.rows) and ends):
                self.rows.insert(at, change.after)
            elif at == 0:
                self.start += 1
            return True
        if present:
            del self.rows[at]
        elif at == 0 and self.rows:
            self.start -= 1
        return True

    def _position(self, key: OrderKey) -> int:
        return bisect.bisect_left(self.rows, key, key=server_order)

    def _mark_at(self, offset: int) -> CursorMark | None:
        return next((m for m in self.marks if m.offset == offset), None)

    def _remember(self, mark: CursorMark) -> None:
        self.marks = [m for m in self.marks if m.offset != mark.offset]
        self.marks.append(mark)
        self.marks.sort(key=lambda m: m.offset)


def _limit(rows: int) -> int:
    """Rows to ask for: whole pages, at most what the router gives at once."""
    pages = max(1, -(-rows // PAGE))
    return min(MAX_LIMIT, pages * PAGE)


def _after(first: InstanceInfo, last: InstanceInfo) -> bool:
    return server_order(first) > server_order(last)


class LocalSegment:
    """Instances held whole and ordered here: an older router's, or a small listing sorted by
    a column the router cannot order by."""

    def __init__(
        self,
        instances: Iterable[InstanceInfo],
        accepts: Callable[[InstanceInfo], bool],
        order: Callable[[InstanceInfo], Any],
    ) -> None:
        self.accepts = accepts
        self.order = order
        self.models = {i.key: i for i in instances if accepts(i)}
        self._keys: list[str] | None = None
        self._index: dict[str, int] | None = None

    @property
    def total(self) -> int:
        """How many instances match."""
        return len(self.models)

    def keys(self) -> list[str]:
        """Row keys in order (sorted on first use after a change)."""
        if self._keys is None:
            models = self.models
            self._keys = sorted(models, key=lambda key: self.order(models[key]))
            self._index = None
        return self._keys

    def row(self, index: int) -> InstanceInfo | None:
        """The row at ``index``."""
        keys = self.keys()
        return self.models[keys[index]] if 0 <= index < len(keys) else None

    def index_of(self, key: str) -> int | None:
        """Where ``key`` is in the order."""
        keys = self.keys()
        if self._index is None:
            self._index = {k: n for n, k in enumerate(keys)}
        return self._index.get(key)

    def apply(self, change: Change) -> bool:
        """Add, replace or drop the instance."""
        key = change.instance.key
        after = change.after
        if after is not None and self.accepts(after):
            old = self.models.get(key)
            self.models[key] = after
            if old is None or self.order(old) != self.order(after):
                self._keys = None
            return True
        if self.models.pop(key, None) is not None:
            self._keys = None
            return True
        return False


class Listing:
    """The table's rows: segments one after another (e.g. OFFLINE, then UNHEALTHY, then ONLINE)."""

    def __init__(self, segments: Sequence[Segment] = ()) -> None:
        self.segments = tuple(segments)

    @property
    def total(self) -> int:
        """Rows in every segment."""
        return sum(s.total for s in self.segments)

    def locate(self, index: int) -> tuple[Segment, int] | None:
        """The segment holding row ``index`` and the row's offset in it."""
        for segment in self.segments:
            if index < segment.total:
                return segment, index
            index -= segment.total
        return None

    def row(self, index: int) -> InstanceInfo | None:
        """The row at ``index`` of the whole table, if loaded."""
        found = self.locate(index)
        return None if found is None else found[0].row(found[1])

    def index_of(self, key: str) -> int | None:
        """The table row of instance ``key``, if loaded."""
        base = 0
        for segment in self.segments:
            at = segment.index_of(key)
            if at is not None:
                return base + at
            base += segment.total
        return None

    def apply(self, change: Change) -> bool:
        """Give ``change`` to every segment; whether any changed."""
        changed = False
        for segment in self.segments:
            changed = segment.apply(change) or changed
        return changed

    def wanted(self, low: int, high: int) -> list[tuple[PagedSegment, Fetch]]:
        """Pages to fetch so the table's rows ``low``..``high`` are loaded."""
        wanted: list[tuple[PagedSegment, Fetch]] = []
        base = 0
        for segment in self.segments:
            if isinstance(segment, PagedSegment):
                end = base + segment.total
                if not segment.loaded or (low < end and high > base):
                    fetch = segment.plan(max(0, low - base), max(1, high - base))
                    if fetch is not None:
                        wanted.append((segment, fetch))
            base += segment.total
        return wanted
