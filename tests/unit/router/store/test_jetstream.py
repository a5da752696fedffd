"""The JetStream store names each change from its watch alone (aegis.router.store.jetstream):
another router, fed the bucket's entries in order, derives exactly the events the
writing router announced, numbered by revision."""

from __future__ import annotations

import asyncio

import msgpack
import pytest
from aegis.router.domain import InstanceKey, InstanceRecord
from aegis.router.rest.event_feed import EventFeed
from aegis.router.store.jetstream import (
    BucketMismatchError,
    JetStreamStore,
    decode_record,
    encode_key,
    encode_record,
    until_ready,
    watched_event,
)
from aegis.router.store.port import MemoryStore, Versioned
from aegis.wire.codec import unpack
from aegis.wire.messages import ChangeEvent
from nats import errors as nats_errors
from nats.js.kv import KeyValue

from tests.unit.router.fakes import (
    OFFLINE,
    ONLINE,
    OTHER_SESSION,
    SESSION,
    make_registry,
    register_request,
    stored,
    sweep_at,
)


class Bucket(MemoryStore):
    """A memory store that also keeps each write as the entry a bucket watch would deliver."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[KeyValue.Entry] = []

    def _entry(self, key: InstanceKey, value: bytes | None) -> None:
        operation = "PUT" if value is not None else "DEL"
        revision = len(self.entries) + 1
        self.entries.append(
            KeyValue.Entry("reg", encode_key(key), value, revision, None, None, operation)
        )

    async def create(self, record: InstanceRecord) -> int:
        revision = await super().create(record)
        self._entry(record.key, encode_record(record))
        return revision

    async def update(self, record: InstanceRecord, expected_revision: int) -> int:
        revision = await super().update(record, expected_revision)
        self._entry(record.key, encode_record(record))
        return revision

    async def delete(self, key: InstanceKey, expected_revision: int) -> None:
        await super().delete(key, expected_revision)
        self._entry(key, None)


def watcher() -> tuple[JetStreamStore, EventFeed]:
    """Another router's store and feed, its watch's snapshot complete on an empty bucket."""
    store, feed = JetStreamStore("reg"), EventFeed("other", max_streams=1, bucket="reg")
    store.set_feed(feed)
    feed.begin(0)
    return store, feed


def derived(feed: EventFeed) -> list[tuple[int, ChangeEvent]]:
    return [(e.sequence, ChangeEvent.model_validate(unpack(e._data))) for e in feed._entries]


async def test_another_router_derives_the_announced_events_from_the_watch_alone() -> None:
    bucket = Bucket()
    registry, clock, sink, _ = make_registry(bucket)
    b1, b2 = InstanceKey("billing", "b-1"), InstanceKey("billing", "b-2")
    await registry.register(register_request("b-1"))
    await registry.register(register_request("b-2"))
    await registry.register(register_request("b-2"))  # a renewal: no event
    await registry.deregister(b1, SESSION)
    await registry.force_deregister(b2, actor="alice")  # deregistered, by an operator
    await registry.register(register_request("b-1", session=OTHER_SESSION))  # taken over
    await registry.set_maintenance(b1, "disk", actor="bob")
    await registry.set_maintenance(b1, None, actor="bob")
    await sweep_at(registry, clock, 15)  # b-1 UNHEALTHY: an expiry, no actor
    await sweep_at(registry, clock, 500)  # OFFLINE, then removed
    await sweep_at(registry, clock, 1000)
    assert sink.events, "the scenario announced something"

    store, feed = watcher()
    for entry in bucket.entries:
        store._apply(entry, True)
    events = derived(feed)
    assert [e for _, e in events] == sink.events
    assert feed.version == f"reg:{len(bucket.entries)}"  # refreshes move it too
    revisions = [r for r, _ in events]
    assert revisions == sorted(set(revisions))
    kinds = {e.event.value for _, e in events}
    assert kinds >= {"registered", "deregistered", "maintenance", "status_changed", "removed"}


async def test_the_writer_sees_its_own_writes_as_others_do() -> None:
    # The writer's cache holds its write before its watch delivers it: the event is
    # still named against the value before it in the bucket, not the cache.
    store, feed = watcher()
    record = stored("b-1", ONLINE).with_version(1).noted("registered", None)
    store._remember(Versioned(record, 1))  # what create() does on return
    store._apply(
        KeyValue.Entry("reg", "billing.b-1", encode_record(record), 1, None, None, "PUT"), True
    )
    events = derived(feed)
    assert [(r, e.event.value) for r, e in events] == [(1, "registered")]


def test_a_snapshot_is_state_not_news_and_a_restart_is_a_gap() -> None:
    store, feed = JetStreamStore("reg"), EventFeed("other", max_streams=1, bucket="reg")
    store.set_feed(feed)
    record = stored("b-1", ONLINE).with_version(1).noted("registered", None)
    entry = KeyValue.Entry("reg", "billing.b-1", encode_record(record), 7, None, None, "PUT")
    store._apply(entry, False)
    store._ready(9, False)
    assert list(feed._entries) == []
    assert feed.version == "reg:9"
    stream = feed.open(None, None)
    store._ready(12, True)
    assert stream.reset is not None
    assert stream.reset.reason == "kv_watch_restarted"
    assert feed.version == "reg:12"


def test_the_change_mark_is_stored_and_read_back_and_a_copy_drops_it() -> None:
    record = stored("b-1", OFFLINE).with_version(3).noted("deregistered", "alice")
    assert decode_record(encode_record(record)).change == ("deregistered", "alice")
    assert decode_record(encode_record(record.with_version(3))).change is None
    assert decode_record(encode_record(stored("b-1", ONLINE))).change is None


def test_a_record_of_an_older_router_is_named_from_its_version() -> None:
    before = stored("b-1", ONLINE).with_version(1)
    assert watched_event(before, stored("b-1", ONLINE).with_version(1)) is None  # a refresh
    watched = watched_event(before, stored("b-1", OFFLINE).with_version(2))
    assert watched is not None
    event, data = watched
    assert event["event"] == "status_changed"
    assert msgpack.unpackb(data) == event
    assert watched_event(None, None) is None


async def test_a_listing_waits_for_the_watch_to_see_this_routers_own_writes() -> None:
    store, feed = watcher()
    record = stored("b-1", ONLINE).with_version(1).noted("registered", None)
    store._written = 3  # create() returned revision 3; the watch has not delivered it
    waiting = asyncio.create_task(store.caught_up())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    entry = KeyValue.Entry("reg", "billing.b-1", encode_record(record), 3, None, None, "PUT")
    store._apply(entry, True)
    await asyncio.wait_for(waiting, 1)
    assert feed.version == "reg:3"
    store._written = 9  # a watch that never delivers it: the listing goes on after the wait
    await asyncio.wait_for(store.caught_up(within=0.01), 1)


async def test_an_attempt_is_tried_again_until_jetstream_answers() -> None:
    # A router joining a cluster whose new R3 members bucket had no stream leader
    # yet got "no responders" on its first put, and exited.
    tries: list[int] = []

    async def attempt() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise nats_errors.NoRespondersError
        return "joined"

    assert await until_ready(attempt, within=5.0) == "joined"
    assert len(tries) == 3


async def test_a_replica_mismatch_is_not_tried_again() -> None:
    tries: list[int] = []

    async def attempt() -> None:
        tries.append(1)
        raise BucketMismatchError("bucket has 1 replica")

    with pytest.raises(BucketMismatchError):
        await until_ready(attempt, within=5.0)
    assert len(tries) == 1


async def test_past_its_time_the_last_error_is_raised() -> None:
    async def attempt() -> None:
        raise nats_errors.NoRespondersError

    with pytest.raises(nats_errors.NoRespondersError):
        await until_ready(attempt, within=0.0)
