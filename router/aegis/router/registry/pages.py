"""One page of an instance listing, read off the sorted keys (``key_order``).

A page is the matching records after a key (the last one the previous page
showed), in listing order: service name, then instance id. Pages are read
live, not from one snapshot: instances that come and go between two pages
are simply met, or not, at their place in the order, and no instance is
shown twice or skipped for another's coming or going.

Without a filter that reads the records (status, metadata, maintenance, id
substring), ``total`` is counted by bisection and a page costs its own
length; such a filter makes every candidate key count, so the scan covers the
service (or the registry), narrowed by an id prefix when one is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aegis.router.domain import InstanceKey, InstanceRecord
from aegis.router.registry.key_order import KeyOrder, prefix_range
from aegis.router.store.port import Versioned

Bounds = tuple[InstanceKey | None, InstanceKey | None]


@dataclass(frozen=True, slots=True)
class PageQuery:
    """What a listing asks for: which keys, which records, after which key, how many."""

    service: str | None = None  # None: every service
    id_prefix: str = ""
    key_filter: Callable[[InstanceKey], bool] | None = None  # decided on the key alone
    record_filter: Callable[[InstanceRecord], bool] | None = None
    after: InstanceKey | None = None  # the last key of the previous page
    limit: int | None = None  # None: every match

    @property
    def filtered(self) -> bool:
        """Whether some keys of the ranges may not match (so ``total`` needs a scan)."""
        return self.key_filter is not None or self.record_filter is not None


@dataclass(frozen=True, slots=True)
class Page:
    """The records of one page, how many match in all, and whether more follow."""

    records: list[InstanceRecord]
    total: int
    more: bool

    @property
    def last(self) -> InstanceKey | None:
        """The key the next page starts after; None on the last page."""
        return self.records[-1].key if self.more and self.records else None


def ranges(query: PageQuery, names: Callable[[], list[str]]) -> list[Bounds]:
    """The key ranges ``query`` covers, in listing order."""
    if query.service is not None:
        return [prefix_range(query.service, query.id_prefix)]
    if query.id_prefix:
        return [prefix_range(name, query.id_prefix) for name in names()]
    return [(None, None)]


def read_page(
    order: KeyOrder,
    names: Callable[[], list[str]],
    peek: Callable[[InstanceKey], Versioned | None],
    query: PageQuery,
) -> Page:
    """The page ``query`` asks for, of the records ``peek`` gives for ``order``'s keys;
    ``names`` gives every service's name, sorted."""
    bounds = ranges(query, names)
    if not query.filtered:
        return _unfiltered(order, peek, query, bounds)
    key_filter, record_filter = query.key_filter, query.record_filter
    after, limit = query.after, query.limit
    shown: list[InstanceRecord] = []
    total, more = 0, False
    for start, stop in bounds:
        for key in order.keys(start, stop):
            if key_filter is not None and not key_filter(key):
                continue
            current = peek(key)
            if current is None or (record_filter is not None and not record_filter(current.record)):
                continue
            total += 1
            if after is not None and key <= after:
                continue
            if limit is not None and len(shown) >= limit:
                more = True
            else:
                shown.append(current.record)
    return Page(shown, total, more)


def _unfiltered(
    order: KeyOrder,
    peek: Callable[[InstanceKey], Versioned | None],
    query: PageQuery,
    bounds: list[Bounds],
) -> Page:
    """A page where every key in range matches: counted by bisection, read for its length."""
    limit = query.limit
    total = sum(order.count(start, stop) for start, stop in bounds)
    shown: list[InstanceRecord] = []
    for start, stop in bounds:
        for key in order.keys(start, stop, query.after):
            if limit is not None and len(shown) >= limit:
                return Page(shown, total, True)
            current = peek(key)
            if current is not None:
                shown.append(current.record)
    return Page(shown, total, False)
