"""When each instance is next due for a liveness check, indexed by time.

A sweep asks for the keys due by now and pays only for those: keys sit in
time buckets, and a heap orders the buckets. Each key is in one bucket at a
time (moving it on every heartbeat is O(1)), so memory stays one entry per
instance however often instances heartbeat.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class DeadlineIndex(Generic[K]):
    """Keys by deadline (seconds on any clock), never handed out before it."""

    def __init__(self, resolution: float = 0.05) -> None:
        if resolution <= 0:
            raise ValueError("resolution must be positive")
        self._resolution = resolution
        self._bucket_of: dict[K, int] = {}
        self._buckets: dict[int, set[K]] = {}
        self._heap: list[int] = []

    def __len__(self) -> int:
        return len(self._bucket_of)

    def set(self, key: K, deadline: float) -> None:
        """Make ``key`` due at ``deadline``, replacing any earlier deadline."""
        # Rounding up means a key is never due early, at most one resolution late.
        bucket = math.ceil(deadline / self._resolution)
        old = self._bucket_of.get(key)
        if old == bucket:
            return
        if old is not None:
            self._buckets[old].discard(key)
        self._bucket_of[key] = bucket
        keys = self._buckets.get(bucket)
        if keys is None:
            self._buckets[bucket] = {key}
            heapq.heappush(self._heap, bucket)
        else:
            keys.add(key)

    def discard(self, key: K) -> None:
        """Forget ``key``."""
        bucket = self._bucket_of.pop(key, None)
        if bucket is not None:
            self._buckets[bucket].discard(key)

    def pop_due(self, now: float, limit: int | None = None) -> list[K]:
        """Remove and return the keys whose deadline is at or before ``now``, earliest
        buckets first; at most ``limit`` of them (the rest stay for the next call)."""
        due: list[K] = []
        bound = now / self._resolution
        while self._heap and self._heap[0] <= bound:
            bucket = self._heap[0]
            keys = self._buckets.get(bucket)
            while keys and (limit is None or len(due) < limit):
                key = keys.pop()
                del self._bucket_of[key]
                due.append(key)
            if keys:
                break  # the limit is reached inside this bucket
            heapq.heappop(self._heap)
            self._buckets.pop(bucket, None)
        return due

    def next_deadline(self) -> float | None:
        """The earliest deadline held (rounded up to the resolution), or None."""
        while self._heap and not self._buckets.get(self._heap[0]):
            self._buckets.pop(heapq.heappop(self._heap), None)
        return self._heap[0] * self._resolution if self._heap else None
