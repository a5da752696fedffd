"""The storage port over a NATS JetStream key-value bucket, replicated by NATS itself.

One key per instance, ``<service_name>.<escaped instance_id>``; values are
MessagePack. Writes use the bucket's atomic create and compare-and-set
update (by revision), so the registry's duplicate rules hold across routers.
A local cache kept current by a bucket watch serves lists (REST reads stay
fast on every router) and ``peek``: the registry decides on it and writes by
compare-and-set, so a stale cache costs a failed write and one ``get`` from
the bucket, never a wrong decision. Writes go through ``KvWriter``
(kv_writes.py): the same JetStream publish nats-py's ``KeyValue`` sends, at a
fraction of its CPU.

Given a feed (``set_feed``), the store also names each change from the watch
alone, comparing each key's value with the one before it in the bucket's own
order: every router derives the same events with the same numbers (the
revisions), whichever router wrote. The writer's event kind and actor are
stored with the record (``change``) since the records alone cannot tell a
takeover from a renewal, or a deregistration from an expiry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

import msgpack
import structlog
from aegis.router.domain import (
    InstanceKey,
    InstanceRecord,
    MaintenanceMark,
    change_kind,
    packed_event,
)
from aegis.router.logging_setup import ReportedError
from aegis.router.store.kv_watch import BucketWatch
from aegis.router.store.kv_writes import KvWriter, WrongLastSequence
from aegis.router.store.port import (
    AlreadyExists,
    ChangeListener,
    RevisionMismatch,
    StoreError,
    Versioned,
)
from aegis.wire.messages import EventKind, InstanceStatus
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js import errors as js_errors
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

log = structlog.get_logger("aegis.router.store.port")

T = TypeVar("T")
# peek's default for an unknown service: a shared empty map, not a new one per call.
_NO_INSTANCES: Mapping[str, Versioned] = MappingProxyType({})

# KV keys allow [-/_=.A-Za-z0-9]; instance ids may hold ':' and '.', which
# would make extra subject tokens. '=' never occurs in an id, so it escapes.
_ESCAPES = {".": "=2E", ":": "=3A"}
STORE_TIMEOUT = 2.0
CATCH_UP_WAIT = 1.0  # at most, for the watch to deliver this router's own writes


def encode_key(key: InstanceKey) -> str:
    """``service.instance`` with the instance id escaped to one subject token."""
    instance = key.instance_id
    for raw, escaped in _ESCAPES.items():
        instance = instance.replace(raw, escaped)
    return f"{key.service_name}.{instance}"


def decode_key(text: str) -> InstanceKey:
    """The inverse of ``encode_key``."""
    service, _, instance = text.partition(".")
    for raw, escaped in _ESCAPES.items():
        instance = instance.replace(escaped, raw)
    return InstanceKey(service, instance)


def encode_record(record: InstanceRecord) -> bytes:
    """MessagePack of a record, session included (ownership must survive a restart),
    and the change event its write made, if any."""
    body = {
        "service_name": record.service_name,
        "instance_id": record.instance_id,
        "status": record.status.value,
        "metadata": record.metadata,
        "registered_at": record.registered_at.timestamp(),
        "last_heartbeat_at": record.last_heartbeat_at.timestamp(),
        "session_id": record.session_id,
        "version": record.version,
        "maintenance": None
        if record.maintenance is None
        else [record.maintenance.reason, record.maintenance.since.timestamp()],
        "seq": record.seq,
    }
    if record.change is not None:
        body["change"] = list(record.change)
    packed: bytes = msgpack.packb(body)
    return packed


def decode_record(data: bytes) -> InstanceRecord:
    """The inverse of ``encode_record``."""
    body: dict[str, Any] = msgpack.unpackb(data, raw=False)
    record = InstanceRecord(
        service_name=body["service_name"],
        instance_id=body["instance_id"],
        status=InstanceStatus(body["status"]),
        metadata=body["metadata"],
        registered_at=datetime.fromtimestamp(body["registered_at"], UTC),
        last_heartbeat_at=datetime.fromtimestamp(body["last_heartbeat_at"], UTC),
        session_id=body["session_id"],
        version=body.get("version", 0),  # absent from records stored by older routers
        maintenance=_maintenance(body.get("maintenance")),
        seq=body.get("seq"),  # absent from records stored by older routers
    )
    change = body.get("change")  # absent from a refresh, and from older routers' records
    if change:
        record.noted(change[0], change[1])
    return record


def watched_event(
    before: InstanceRecord | None, after: InstanceRecord | None
) -> tuple[dict[str, Any], bytes] | None:
    """The change event (wire map, and its MessagePack) a write from ``before`` to
    ``after`` announced, as the writer's registry made it; None if the write was no
    news (a refresh). This router's own writes come back as the records it wrote:
    their events were packed when announced, and are not packed again."""
    actor = None
    if after is None:
        if before is None:
            return None
        kind: EventKind | None = EventKind.REMOVED
        shown = before.with_version(before.version + 1)  # the removal's own, as announced
    else:
        shown = after
        if after.change is not None:
            kind, actor = EventKind(after.change[0]), after.change[1]
        elif before is None or after.version != before.version:  # an older router wrote it
            kind = change_kind(before, after)
        else:
            return None
    if kind is None:
        return None
    previous = before.status if before is not None else None
    return packed_event(kind, shown, previous, actor)


class WatchFeed(Protocol):
    """Where the changes seen on the watch go, numbered by revision (the event feed)."""

    def begin(self, revision: int) -> None:
        """The watch's first snapshot is complete at ``revision``."""

    def advance(self, revision: int) -> None:
        """Every revision up to ``revision`` has been seen."""

    def add_at(self, revision: int, service: str, kind: str, data: bytes) -> object:
        """The change event (MessagePack) the write at ``revision`` made."""

    def gap(self, cause: str) -> None:
        """Changes may have been missed."""


def _maintenance(value: Any) -> MaintenanceMark | None:
    if not value:
        return None
    reason, since = value
    return MaintenanceMark(reason, datetime.fromtimestamp(since, UTC))


class BucketMismatchError(ReportedError):
    """The bucket exists with another replica count than configured (logged already)."""

    exit_code = 2


async def check_replicas(kv: KeyValue, bucket: str, replicas: int) -> None:
    """Raise ``BucketMismatchError`` (logged) unless the bucket has ``replicas`` replicas."""
    status = await kv.status()
    actual = status.stream_info.config.num_replicas or 1
    if actual == replicas:
        return
    hint = (
        f"set AEGIS_KV_REPLICAS={actual} to use the bucket as it is, or change the "
        f"bucket's replicas yourself (nats stream edit KV_{bucket} --replicas {replicas}); "
        "the router never changes an existing bucket's replication"
    )
    log.error("kv_replicas_mismatch", bucket=bucket, replicas=actual, wanted=replicas, hint=hint)
    raise BucketMismatchError(
        f"bucket {bucket!r} has {actual} replicas, AEGIS_KV_REPLICAS is {replicas}: {hint}"
    )


async def check_existing_bucket(nc: NatsClient, bucket: str, replicas: int) -> None:
    """``check_replicas`` on the bucket if it exists (a new one is created as configured)."""
    js = nc.jetstream(timeout=STORE_TIMEOUT)
    try:
        kv = await js.key_value(bucket)
    except js_errors.BucketNotFoundError:
        return
    await check_replicas(kv, bucket, replicas)


async def open_bucket(js: JetStreamContext, config: KeyValueConfig) -> KeyValue:
    """The bucket ``config`` names if it has the configured replicas (else
    ``BucketMismatchError``, logged), or a new one made with ``config``."""
    try:
        kv = await js.key_value(config.bucket)
    except js_errors.BucketNotFoundError:
        # Two routers creating it at once is fine: the same config is idempotent.
        return await js.create_key_value(config)
    await check_replicas(kv, config.bucket, config.replicas)
    return kv


async def until_ready(attempt: Callable[[], Awaitable[T]], within: float) -> T:
    """``attempt()``, tried again every 0.5 s while it fails for up to ``within`` seconds:
    a new cluster elects its JetStream leader, and a new replicated stream its own
    (until then a put gets "no responders"). ``BucketMismatchError`` is raised at once."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            return await attempt()
        except BucketMismatchError:
            raise
        except Exception as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.info("jetstream_not_ready", error=repr(exc))
            await asyncio.sleep(0.5)


class JetStreamStore:
    """Instances in a JetStream KV bucket, with a watched local cache for lists."""

    def __init__(self, bucket: str = "aegis_registry", replicas: int = 1) -> None:
        self.bucket = bucket
        self.replicas = replicas
        self._kv: KeyValue | None = None
        self._cache: dict[str, dict[str, Versioned]] = {}
        self._listener: ChangeListener | None = None
        self._watch: BucketWatch | None = None
        self._writer: KvWriter | None = None
        self._feed: WatchFeed | None = None
        # With a feed: each key's value as the watch last delivered it (the cache is
        # ahead of it by this router's own writes), to compare the next one with.
        self._watched: dict[str, InstanceRecord] = {}
        self._written = 0  # the last revision this router wrote (create, update, delete)
        self._seen = 0  # the last revision handed to the feed
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def set_feed(self, feed: WatchFeed | None) -> None:
        """Hand every change the watch sees to ``feed``, numbered by revision; set it
        before ``start``."""
        self._feed = feed

    async def start(self, nc: NatsClient, within: float = 30.0) -> None:
        """Open (or create) the bucket and load the cache; wait for a JetStream cluster."""
        # Under the SDK's 5 s request timeout, so a stuck store still gets a 503 answer.
        js = nc.jetstream(timeout=STORE_TIMEOUT)
        config = KeyValueConfig(
            bucket=self.bucket, history=1, replicas=self.replicas, storage=StorageType.FILE
        )
        try:
            self._kv = await until_ready(lambda: open_bucket(js, config), within)
        except BucketMismatchError:
            raise
        except Exception as exc:
            raise StoreError(
                f"JetStream key-value bucket {self.bucket!r} unavailable: {exc!r}. "
                "Is JetStream enabled on the NATS server (nats-server -js)? "
                "Or run with AEGIS_STORE=memory."
            ) from exc
        self._writer = KvWriter(nc, self.bucket, STORE_TIMEOUT)
        await self._writer.start()
        # Guarded: a stale cache would answer lists and steady heartbeats with
        # what is no longer so.
        self._watch = BucketWatch(
            self._kv, self.bucket, self._apply, name="aegis-kv-watch", on_ready=self._ready
        )
        await self._watch.start(within)
        log.info(
            "store_ready",
            store="jetstream",
            bucket=self.bucket,
            replicas=self.replicas,
            instances=sum(len(i) for i in self._cache.values()),
        )

    async def stop(self) -> None:
        """Stop following the bucket."""
        watch, self._watch = self._watch, None
        if watch is not None:
            await watch.stop()
        writer, self._writer = self._writer, None
        if writer is not None:
            await writer.stop()

    def _apply(self, entry: KeyValue.Entry, live: bool) -> None:
        """Apply a change in the bucket to the cache, whoever made it."""
        key, revision = decode_key(entry.key), entry.revision or 0
        after: InstanceRecord | None = None
        if entry.operation in ("DEL", "PURGE") or not entry.value:
            self._forget(key, revision)
        elif self._feed is None:
            if not self._known(key, revision):  # else: our own write, seen again
                self._remember(Versioned(decode_record(entry.value), revision))
        else:
            known = self.peek(key)
            if known is not None and known.revision == revision:
                after = known.record  # our own write, seen again: as it was written
            else:
                after = decode_record(entry.value)
                self._remember(Versioned(after, revision))  # unless the cache is past it
        if self._feed is not None:
            self._follow(self._feed, entry.key, revision, after, live)

    def _follow(
        self, feed: WatchFeed, name: str, revision: int, after: InstanceRecord | None, live: bool
    ) -> None:
        """Name the change at ``revision`` of key ``name`` to the feed (a snapshot's
        entries are states, not changes: only remembered)."""
        before = self._watched.get(name)
        if after is None:
            self._watched.pop(name, None)
        else:
            self._watched[name] = after
        if not live:
            return
        watched = watched_event(before, after)
        if watched is not None:
            event, data = watched
            feed.add_at(revision, event["instance"]["service_name"], event["event"], data)
        feed.advance(revision)
        self._saw(revision)

    def _saw(self, revision: int) -> None:
        """The feed is at ``revision``: wake whoever waited for it."""
        self._seen = max(self._seen, revision)
        if self._waiters:
            waiting = []
            for target, waiter in self._waiters:
                if target <= self._seen:
                    if not waiter.done():
                        waiter.set_result(None)
                else:
                    waiting.append((target, waiter))
            self._waiters = waiting

    async def caught_up(self, within: float = CATCH_UP_WAIT) -> None:
        """Wait until the feed has seen every write this router made: a listing read then
        holds no change its version (the feed's head) does not. Gives up after ``within``
        seconds (a stalled watch; it is restarted)."""
        target = self._written
        if target <= self._seen:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((target, waiter))
        try:
            await asyncio.wait_for(asyncio.shield(waiter), within)
        except TimeoutError:
            log.warning("kv_watch_behind", seen=self._seen, wanted=target)

    def _ready(self, revision: int, restarted: bool) -> None:
        """A watch snapshot is complete at ``revision``."""
        if self._feed is None:
            return
        self._saw(revision)
        if restarted:  # what changed between the two watches was not seen change by change
            self._feed.advance(revision)
            self._feed.gap("kv_watch_restarted")
        else:
            self._feed.begin(revision)

    def _known(self, key: InstanceKey, revision: int) -> bool:
        """Whether the cache holds ``key`` at ``revision`` or later already."""
        known = self._cache.get(key.service_name, {}).get(key.instance_id)
        return known is not None and known.revision >= revision

    def _remember(self, versioned: Versioned) -> None:
        record = versioned.record
        instances = self._cache.setdefault(record.service_name, {})
        known = instances.get(record.instance_id)
        if known is not None and known.revision >= versioned.revision:
            return  # our own write, seen again through the watch
        instances[record.instance_id] = versioned
        if self._listener is not None:
            self._listener(record.key, record)

    def _forget(self, key: InstanceKey, revision: int) -> None:
        instances = self._cache.get(key.service_name, {})
        known = instances.get(key.instance_id)
        if known is None or known.revision > revision:
            return
        del instances[key.instance_id]
        if not instances:
            self._cache.pop(key.service_name, None)
        if self._listener is not None:
            self._listener(key, None)

    def set_listener(self, listener: ChangeListener | None) -> None:
        """See ``InstanceStore.set_listener``."""
        self._listener = listener

    def _bucket(self) -> KeyValue:
        if self._kv is None:
            raise StoreError("JetStream store used before start()")
        return self._kv

    def _writes(self) -> KvWriter:
        if self._writer is None:
            raise StoreError("JetStream store used before start()")
        return self._writer

    def peek(self, key: InstanceKey) -> Versioned | None:
        """See ``InstanceStore.peek``: from the cache the bucket watch keeps."""
        return self._cache.get(key.service_name, _NO_INSTANCES).get(key.instance_id)

    async def get(self, key: InstanceKey) -> Versioned | None:
        """See ``InstanceStore.get``: read from the bucket, not the cache."""
        try:
            entry = await self._bucket().get(encode_key(key))
        except js_errors.KeyNotFoundError:
            return None
        except Exception as exc:
            raise StoreError(f"reading {key}: {exc!r}") from exc
        if not entry.value:
            return None
        return Versioned(decode_record(entry.value), entry.revision or 0)

    async def create(self, record: InstanceRecord) -> int:
        """See ``InstanceStore.create``."""
        key, value = encode_key(record.key), encode_record(record)
        try:
            revision = await self._writes().write(key, value, 0)
        except WrongLastSequence:
            # Taken, or only a delete marker left under the key (history keeps the
            # last one): nats-py's create tells them apart and writes over a marker.
            revision = await self._create_over_marker(record, key, value)
        self._written = max(self._written, revision)
        self._remember(Versioned(record, revision))
        return revision

    async def _create_over_marker(self, record: InstanceRecord, key: str, value: bytes) -> int:
        try:
            return await self._bucket().create(key, value)
        except (js_errors.KeyWrongLastSequenceError, js_errors.KeyNotFoundError) as exc:
            # KeyNotFound: nats-py re-reads after losing the race, and a replica
            # that has not caught up yet says "not found". Either way: taken.
            raise AlreadyExists(record.key) from exc
        except Exception as exc:
            raise StoreError(f"creating {record.key}: {exc!r}") from exc

    async def update(self, record: InstanceRecord, expected_revision: int) -> int:
        """See ``InstanceStore.update``."""
        try:
            revision = await self._writes().write(
                encode_key(record.key), encode_record(record), expected_revision
            )
        except WrongLastSequence as exc:
            raise RevisionMismatch(record.key) from exc
        self._written = max(self._written, revision)
        self._remember(Versioned(record, revision))
        return revision

    async def delete(self, key: InstanceKey, expected_revision: int) -> None:
        """See ``InstanceStore.delete``."""
        try:
            revision = await self._writes().write(
                encode_key(key), b"", expected_revision, delete=True
            )
        except WrongLastSequence as exc:
            raise RevisionMismatch(key) from exc
        self._written = max(self._written, revision)
        self._forget(key, expected_revision + 1)

    async def list_service(self, service_name: str) -> list[InstanceRecord]:
        """See ``InstanceStore.list_service`` (from the cache)."""
        return [v.record for v in self._cache.get(service_name, {}).values()]

    async def list_all(self) -> list[InstanceRecord]:
        """See ``InstanceStore.list_all`` (from the cache)."""
        return [v.record for inst in self._cache.values() for v in inst.values()]
