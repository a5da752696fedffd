"""aegis.router.store.kv_watch: a watch stops in bounded time, whatever nats-py does."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aegis.router.store import kv_watch
from aegis.router.store.kv_watch import BucketWatch


class HangingWatcher:
    """A nats-py watcher whose snapshot is empty and whose stop() never returns."""

    def __init__(self) -> None:
        self.stop_called = False
        self._sent_end = False

    def __aiter__(self) -> HangingWatcher:
        return self

    async def __anext__(self) -> Any:
        if not self._sent_end:
            self._sent_end = True
            return None  # the initial snapshot is complete
        await asyncio.Event().wait()  # no changes, ever
        raise StopAsyncIteration

    async def stop(self) -> None:
        self.stop_called = True
        await asyncio.Event().wait()  # an unsubscribe that never gets through


class FakeBucket:
    def __init__(self) -> None:
        self.watcher = HangingWatcher()

    async def watchall(self) -> HangingWatcher:
        return self.watcher


async def test_a_watcher_that_will_not_stop_does_not_hold_the_watchs_stop(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(kv_watch, "WATCH_STOP_WAIT", 0.2)
    bucket = FakeBucket()
    watch = BucketWatch(bucket, "b", lambda entry, live: None, name="w")  # type: ignore[arg-type]
    await watch.start(within=2.0)

    began = time.monotonic()
    await asyncio.wait_for(watch.stop(), 5.0)

    assert bucket.watcher.stop_called
    assert time.monotonic() - began < 2.0
