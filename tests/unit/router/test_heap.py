"""aegis.router.heap: the long-lived heap frozen each minute, collected in full rarely."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from aegis.router.heap import FREEZE_EVERY, FULL_EVERY, HeapKeeper
from structlog.testing import capture_logs


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the suite runs with the collector as usual


class Cycle:
    """A reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_nothing_before_a_minute_then_the_heap_is_frozen() -> None:
    clock = Clock()
    keeper = HeapKeeper(clock)
    clock.now = FREEZE_EVERY - 1
    keeper.tick()
    assert gc.get_freeze_count() == 0
    clock.now = FREEZE_EVERY
    keeper.tick()
    assert gc.get_freeze_count() > 0, "what lives now is out of the collector's view"


def test_a_full_collection_each_half_hour_frees_what_freezing_kept() -> None:
    clock = Clock()
    keeper = HeapKeeper(clock)
    trapped = Cycle()
    alive = weakref.ref(trapped)
    gc.collect()  # old now, as a long-lived object is when a freeze comes
    clock.now = FREEZE_EVERY
    keeper.tick()
    del trapped  # garbage, but frozen: the collector does not see it
    gc.collect()
    kept = alive() is not None
    clock.now = FULL_EVERY
    with capture_logs() as logs:
        keeper.tick()

    assert kept
    assert alive() is None, "the half-hourly full collection freed it"
    assert [e["event"] for e in logs] == ["heap_collected"]
    assert gc.get_freeze_count() > 0, "frozen again after the full collection"
