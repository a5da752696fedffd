"""Time on the history's axis: windows of trouble, spans of certainty, and their overlaps.

A :class:`Window` is a stretch in which something was down or cut off; a
:class:`Span` one in which a rule holds. Rules widen windows by the grace
they need before asking whether one meets an operation or a report.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from tests.chaos.history import Record


@dataclass(frozen=True, slots=True)
class Window:
    """A stretch of time in which something was down or cut off; ``end`` may be inf."""

    start: float
    end: float
    cause: Record

    def overlaps(self, lo: float, hi: float, *, before: float = 0.0, after: float = 0.0) -> bool:
        """Whether [lo, hi] meets this window widened by ``before`` and ``after``."""
        return lo <= self.end + after and hi >= self.start - before


def first_overlap(
    windows: list[Window], lo: float, hi: float, *, before: float, after: float
) -> Window | None:
    """The first of ``windows`` that, widened, meets [lo, hi]; None if none does."""
    for window in windows:
        if window.overlaps(lo, hi, before=before, after=after):
            return window
    return None


def pair_windows(
    records: list[Record],
    up_for: Mapping[str, tuple[str, ...]],
    *,
    kind: str,
    target: str,
    end_t: float,
) -> dict[str, list[Window]]:
    """Windows per target, from records whose ``kind`` field opens or ends one.

    A window opens at a down record (a key of ``up_for``) and ends at the same
    target's next record of a kind it names; one never ended lasts to ``end_t``.
    """
    ordered = sorted(records, key=lambda r: float(r["t"]))
    windows: dict[str, list[Window]] = defaultdict(list)
    for index, down in enumerate(ordered):
        ups = up_for.get(down.get(kind, ""))
        if ups is None:
            continue
        end = next(
            (
                float(up["t"])
                for up in ordered[index + 1 :]
                if up.get(target) == down.get(target) and up.get(kind) in ups
            ),
            end_t,
        )
        # A fault record says when its action began, if that took time.
        start = float(down.get("start") or down["t"])
        windows[str(down.get(target))].append(Window(start, end, down))
    return windows


@dataclass(frozen=True, slots=True)
class Span:
    """A stretch of time in which a rule holds, with the records that make it hold."""

    lo: float
    hi: float
    records: tuple[Record, ...]


def merge(spans: list[Span]) -> list[Span]:
    """Overlapping spans joined, in time order; each keeps every record it was made of."""
    merged: list[Span] = []
    for span in sorted(spans, key=lambda s: s.lo):
        if merged and span.lo <= merged[-1].hi:
            last = merged[-1]
            merged[-1] = Span(last.lo, max(last.hi, span.hi), last.records + span.records)
        else:
            merged.append(span)
    return merged


def covering(spans: list[Span], lo: float, hi: float) -> Span | None:
    """The one of the merged ``spans`` that holds all of [lo, hi], if any."""
    index = bisect_right([s.lo for s in spans], lo) - 1
    if index >= 0 and spans[index].hi >= hi:
        return spans[index]
    return None
