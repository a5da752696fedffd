"""Router membership kept in a JetStream key-value bucket beside the registry's.

Each router puts its key once a second; every router watches the bucket and
counts a router gone after ``MEMBER_TTL`` seconds without a put from it (its
own clock decides, so skewed clocks do not matter), or at once when it says
goodbye on a clean stop. Entries of routers long gone age out of the bucket.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import msgpack
import structlog
from aegis.connect.tasks import cancel_all
from aegis.router.leases.membership import MEMBER_REFRESH, MEMBER_TTL, Membership
from aegis.router.store.jetstream import STORE_TIMEOUT, open_bucket, until_ready
from aegis.router.store.kv_watch import BucketWatch
from nats.aio.client import Client as NatsClient
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

log = structlog.get_logger("aegis.router.leases.membership")

# Entries of routers that died stay this long (for operators); then they go.
MEMBER_MAX_AGE = 3600.0


def members_bucket(registry_bucket: str) -> str:
    """The membership bucket that goes with a registry bucket."""
    return f"{registry_bucket}_routers"


class KvMembership:
    """Feeds a ``Membership`` from the bucket, and announces this router in it."""

    def __init__(
        self,
        membership: Membership,
        bucket: str,
        replicas: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.membership = membership
        self.bucket = bucket
        self.replicas = replicas
        self._clock = clock
        self._kv: KeyValue | None = None
        self._watch: BucketWatch | None = None
        self._tasks: list[asyncio.Task[None]] = []
        # When this router last heard its own put through the watch: while it
        # cannot hear itself (NATS away, the watch stalled) it cannot hear the
        # others either, and silence must not count against them.
        self._heard_self: float | None = None

    async def start(self, nc: NatsClient, within: float = 30.0) -> None:
        """Join: open the bucket, announce this router, follow the others.

        Raises ``BucketMismatchError`` (logged) if the bucket exists with
        another replica count than configured, as the registry's bucket does; tries
        again for up to ``within`` seconds while JetStream cannot answer yet.
        """
        js = nc.jetstream(timeout=STORE_TIMEOUT)
        config = KeyValueConfig(
            bucket=self.bucket,
            history=1,
            ttl=MEMBER_MAX_AGE,
            replicas=self.replicas,
            storage=StorageType.FILE,
        )

        async def join() -> KeyValue:
            # The first put can come before a new replicated bucket's stream has its
            # leader ("no responders"): the router must wait, not exit.
            self._kv = kv = await open_bucket(js, config)
            await self._announce(left=False)
            return kv

        kv = await until_ready(join, within)
        self._tasks = [asyncio.create_task(self._refresh(), name="aegis-members-refresh")]
        # Guarded like the registry's: while the watch is stalled this router
        # cannot hear itself, so it judges nobody and sweeps nothing.
        self._watch = BucketWatch(kv, self.bucket, self._apply, name="aegis-members-watch")
        await self._watch.start(within)
        log.info(
            "router_joined",
            router=self.membership.self_id,
            routers=self.membership.member_ids,
            partitions=self.membership.held_partitions(),
        )

    async def stop(self) -> None:
        """Leave: say goodbye, so the others take the leases over at once."""
        watch, self._watch = self._watch, None
        if watch is not None:
            await watch.stop()
        tasks, self._tasks = self._tasks, []
        await cancel_all(tasks)
        if self._kv is not None:
            self.membership.resign()
            try:
                await self._announce(left=True)
            except Exception as exc:  # the others find out by the TTL instead
                log.warning("router_leave_failed", error=repr(exc))

    async def _announce(self, *, left: bool) -> None:
        assert self._kv is not None
        body = msgpack.packb({"at": self._clock(), "left": left})
        await self._kv.put(self.membership.self_id, body)

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(MEMBER_REFRESH)
            try:
                await self._announce(left=False)
            except Exception as exc:  # a missed refresh is retried next second
                log.warning("router_refresh_failed", error=repr(exc))
            now = self._clock()
            if self._heard_self is None or now - self._heard_self > MEMBER_TTL:
                continue  # deaf: judge nobody
            for gone in self.membership.expire(now):
                log.warning("router_lost", router=gone, routers=self.membership.member_ids)

    def _apply(self, entry: KeyValue.Entry, live: bool) -> None:
        """A router's put (or goodbye) seen through the watch."""
        member_id, operation, value = entry.key, entry.operation, entry.value
        now = self._clock()
        if member_id == self.membership.self_id:
            deaf = self._heard_self is None or now - self._heard_self > MEMBER_TTL
            if deaf and self._heard_self is not None:
                # Hearing again after a gap: everyone gets a fresh TTL to be heard too.
                self.membership.seen_all(now)
                log.info("router_hearing_again", routers=self.membership.member_ids)
            self._heard_self = self.membership.heard_self_at = now
            return
        body = msgpack.unpackb(value) if value and operation not in ("DEL", "PURGE") else None
        if body is None or body.get("left"):
            if member_id in self.membership.member_ids:
                self.membership.left(member_id, now)
                log.info("router_left", router=member_id, routers=self.membership.member_ids)
            return
        if not live and now - float(body.get("at", 0.0)) > MEMBER_TTL:
            # The initial snapshot holds the long dead too. (Judged by the writer's
            # clock, so only here: a live router that is skewed is seen next second.)
            return
        known = member_id in self.membership.member_ids
        self.membership.seen(member_id, now)
        if not known:
            log.info("router_seen", router=member_id, routers=self.membership.member_ids)
