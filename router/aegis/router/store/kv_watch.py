"""A watch over every key of a JetStream key-value bucket, restarted when it stalls.

The registry's bucket and the routers' membership bucket are both followed
this way. A watch whose consumer died with its NATS node (or was never
recreated after a reconnection) delivers nothing, and nats-py notices only
after two missed idle heartbeats (10 s), then retries once per 10 s: so the
watch is compared with its stream every ``WATCH_CHECK`` seconds, and one
that is behind at two checks in a row without moving is started afresh.

``aegis_store_watch_revision`` tells how far the watch has read: every change
up to that revision is in the cache (a snapshot's revisions count once it is
complete), so whoever reads it before a listing knows the listing is at
least that fresh.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog
from aegis.connect.tasks import cancel
from aegis.router.metrics import WATCH_REVISION
from nats.js.kv import KeyValue

log = structlog.get_logger("aegis.router.kv")

WATCH_CHECK = 2.0  # how often the watch is compared with its stream
WATCH_RETRY = 0.5  # between two attempts to open the watch
# The longest a stopping watch waits for its subscription to end: an unsubscribe
# on a connection that cannot send must not hold a router's shutdown.
WATCH_STOP_WAIT = 1.0

# Called with each entry, and whether the watch's initial snapshot was complete
# before it (False for the entries of a snapshot, a restart's included).
EntryHandler = Callable[[KeyValue.Entry, bool], None]
# Called once each snapshot is complete (the first, and each restart's) with the
# revision every change up to which has been applied, and whether it was a restart
# (changes between the two watches were not handed over one by one).
ReadyHandler = Callable[[int, bool], None]


class WatchLag:
    """Whether a bucket watch has stalled: behind the stream at two checks in a
    row without delivering anything in between. A watch that is behind but
    moving (a burst of writes) is left alone."""

    def __init__(self) -> None:
        self._stalled_at: int | None = None  # the watch's position when first seen behind

    def stalled(self, delivered: int, last: int) -> bool:
        """Judge one check: ``delivered`` is the last revision the watch gave,
        ``last`` the stream's last sequence. True: restart the watch."""
        if delivered >= last:
            self._stalled_at = None
            return False
        if self._stalled_at == delivered:
            self._stalled_at = None
            return True
        self._stalled_at = delivered
        return False


class BucketWatch:
    """Hands every change in a bucket to ``apply``, whoever made it, and restarts
    itself when it stalls behind the bucket's stream."""

    def __init__(
        self,
        kv: KeyValue,
        bucket: str,
        apply: EntryHandler,
        *,
        name: str,
        on_ready: ReadyHandler | None = None,
    ) -> None:
        self._kv = kv
        self._apply = apply
        self._on_ready = on_ready
        self._started = False  # a snapshot was complete once: later ones are restarts
        self._name = name  # of the watch's task
        self._log = log.bind(bucket=bucket)
        self._watch_task: asyncio.Task[None] | None = None
        self._guard_task: asyncio.Task[None] | None = None
        self.delivered = 0  # the last revision the watch gave
        self._revision = WATCH_REVISION.labels(bucket=bucket)

    async def start(self, within: float = 30.0) -> None:
        """Follow the bucket; return once its current content has been applied."""
        ready = asyncio.Event()
        self._watch_task = asyncio.create_task(self._follow(ready), name=self._name)
        try:
            await asyncio.wait_for(ready.wait(), within)
        except BaseException:
            await self.stop()
            raise
        self._guard_task = asyncio.create_task(self._guard(), name=f"{self._name}-guard")

    async def stop(self) -> None:
        """Stop following the bucket."""
        guard, self._guard_task = self._guard_task, None
        await cancel(guard)
        task, self._watch_task = self._watch_task, None
        await cancel(task)

    async def _guard(self) -> None:
        """Restart the watch when it has stalled behind the stream."""
        lag = WatchLag()
        while True:
            await asyncio.sleep(WATCH_CHECK)
            last = await self._stream_last()
            if last is not None and lag.stalled(self.delivered, last):
                self._log.warning("kv_watch_restarted", delivered=self.delivered, last=last)
                await cancel(self._watch_task)
                self._watch_task = asyncio.create_task(
                    self._follow(asyncio.Event()), name=self._name
                )

    async def _stream_last(self) -> int | None:
        """The bucket stream's last sequence; None when the stream cannot answer."""
        try:
            status = await self._kv.status()
        except Exception as exc:  # nothing to judge the watch by, this time
            self._log.debug("kv_status_failed", error=repr(exc))
            return None
        last: int = status.stream_info.state.last_seq
        return last

    async def _follow(self, ready: asyncio.Event) -> None:
        # Read before the watch: its snapshot holds every change up to this, even
        # one whose key was purged since (the snapshot does not show it).
        floor = await self._stream_last() if self._on_ready is not None else None
        while True:
            try:
                watcher = await self._kv.watchall()
                break
            except Exception as exc:  # the stream electing a leader, say
                self._log.warning("kv_watch_failed", error=repr(exc))
                await asyncio.sleep(WATCH_RETRY)
        try:
            async for entry in watcher:
                if entry is None:  # the initial snapshot is complete
                    ready.set()
                    self.delivered = max(self.delivered, floor or 0)
                    self._revision.set(self.delivered)
                    restarted, self._started = self._started, True
                    if self._on_ready is not None:
                        self._on_ready(self.delivered, restarted)
                    continue
                self.delivered = max(self.delivered, entry.revision or 0)
                try:
                    self._apply(entry, ready.is_set())
                except Exception:  # one bad entry must not end the watch
                    self._log.exception("kv_bad_entry", key=entry.key)
                if ready.is_set():  # a snapshot's order is not promised: told once it is whole
                    self._revision.set(self.delivered)  # no await since the entry was applied
        finally:
            with contextlib.suppress(Exception):
                stopping = watcher.stop()  # type: ignore[no-untyped-call]
                await asyncio.wait_for(stopping, WATCH_STOP_WAIT)
