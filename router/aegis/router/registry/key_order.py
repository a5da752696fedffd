"""Every instance key in listing order (service name, then instance id), kept change by change.

The REST listings page over it: a page starts after a key (a keyset cursor)
and reads on in order, so a page of 500 at 100,000 instances costs a
bisection and 500 steps, not a sort of every record per request. Keys
between two bounds are counted by bisection too, so a listing's ``total``
needs no scan unless a filter reads the records.

``changes`` counts the changes a listing shows: an instance added or
removed, or a record with another version, status, maintenance mark or
metadata. A contact (``last_heartbeat_at``) alone is no change: listings'
validators must not turn over with every heartbeat.
"""

from __future__ import annotations

from collections.abc import Iterator

from aegis.router.domain import InstanceKey, InstanceRecord
from sortedcontainers import SortedList

# Sorts after every character an instance id may hold ([A-Za-z0-9._:-], all ASCII):
# ``(service, prefix + ID_END)`` bounds the keys of ``service`` whose id starts so.
ID_END = "\x7f"


def prefix_range(service: str, prefix: str = "") -> tuple[InstanceKey, InstanceKey]:
    """The bounds (from, before) of ``service``'s keys whose instance id starts with ``prefix``."""
    return InstanceKey(service, prefix), InstanceKey(service, prefix + ID_END)


class KeyOrder:
    """The registry's keys, sorted, and a count of the changes a listing would show."""

    def __init__(self) -> None:
        self._keys: SortedList[InstanceKey] = SortedList()
        # The record last seen under each key: tells a change from a contact refresh.
        self._seen: dict[InstanceKey, InstanceRecord] = {}
        self.changes = 0

    def __len__(self) -> int:
        return len(self._seen)

    def apply(self, key: InstanceKey, record: InstanceRecord | None) -> None:
        """Account for ``key`` now holding ``record`` (None: gone)."""
        seen = self._seen
        if record is None:
            if seen.pop(key, None) is not None:
                self._keys.remove(key)
                self.changes += 1
            return
        old = seen.get(key)
        if old is record:
            return
        seen[key] = record
        if old is None:
            self._keys.add(key)
            self.changes += 1
        elif (
            old.version != record.version
            or old.status is not record.status
            or old.metadata is not record.metadata  # shared, never changed in place
            or old.maintenance != record.maintenance
        ):
            self.changes += 1

    def count(self, start: InstanceKey | None, stop: InstanceKey | None) -> int:
        """How many keys are from ``start`` (None: the first) to before ``stop`` (None: the end)."""
        keys = self._keys
        low = 0 if start is None else keys.bisect_left(start)
        high = len(keys) if stop is None else keys.bisect_left(stop)
        return max(0, high - low)

    def keys(
        self, start: InstanceKey | None, stop: InstanceKey | None, after: InstanceKey | None = None
    ) -> Iterator[InstanceKey]:
        """The keys from ``start`` to before ``stop`` (None: unbounded), in order, and only
        those after ``after`` if given."""
        if after is not None and (start is None or after >= start):
            return self._keys.irange(after, stop, inclusive=(False, False))
        return self._keys.irange(start, stop, inclusive=(True, False))
