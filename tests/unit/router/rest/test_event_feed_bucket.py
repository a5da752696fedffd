"""aegis.router.rest.event_feed fed by a JetStream bucket's watch: ids are the bucket's
revisions, the same on every router, with gaps where a write made no event."""

from __future__ import annotations

import pytest
from aegis.router.rest.event_feed import Entry, EventFeed, Reset
from aegis.wire.codec import pack

from tests.unit.router.rest.test_event_feed import change, drain, instances


def bucket_feed(capacity: int = 100, router: str = "r1") -> EventFeed:
    feed = EventFeed(router, max_streams=10, capacity=capacity, bucket="reg")
    feed.begin(10)  # the watch's snapshot was complete at revision 10
    return feed


def add(feed: EventFeed, revision: int, instance: str, service: str = "billing") -> None:
    entry = change(service, instance)
    feed.add_at(revision, service, entry.event.value, pack(entry))


def test_ids_are_the_bucket_and_the_revision_and_the_version_follows_every_revision() -> None:
    feed = bucket_feed()
    assert feed.version == "reg:10"
    add(feed, 12, "b-1")
    assert feed.version == "reg:12"
    assert feed._entries[-1].frame.startswith(b"id: reg:12\n")
    feed.advance(15)  # a refresh: no event, but the listing is at 15 now
    assert feed.version == "reg:15"


def test_two_routers_fed_the_same_revisions_resume_each_others_ids() -> None:
    a, b = bucket_feed(router="a"), bucket_feed(router="b")
    for feed in (a, b):
        add(feed, 11, "b-1")
        feed.advance(12)
        add(feed, 13, "b-2")
        add(feed, 14, "b-3")
    stream = b.open(None, a.event_id(13))
    assert stream.reset is None
    assert instances(stream.backlog) == ["b-3"]
    stream = b.open(None, "reg:12")  # a revision with no event: still a place to resume
    assert stream.reset is None
    assert instances(stream.backlog) == ["b-2", "b-3"]


async def test_an_id_ahead_of_this_router_waits_for_the_later_changes() -> None:
    feed = bucket_feed()
    add(feed, 11, "b-1")
    stream = feed.open(None, "reg:13")  # listed on a router whose watch is further along
    assert stream.reset is None
    assert stream.backlog == []
    add(feed, 12, "b-2")  # already in that listing
    add(feed, 13, "b-3")
    add(feed, 14, "b-4")
    assert instances(await drain(stream)) == ["b-4"]


@pytest.mark.parametrize("given", ["r1:10", "other:12", "reg:x", "reg:"])
def test_an_id_of_another_bucket_or_a_router_id_gets_a_reset(given: str) -> None:
    stream = bucket_feed().open(None, given)
    assert stream.reset is not None
    assert stream.reset.reason == "unknown_id"


def test_an_id_before_the_watch_began_or_before_the_last_dropped_event_gets_a_reset() -> None:
    feed = bucket_feed(capacity=2)
    assert feed.open(None, "reg:9").reset is not None  # before this router's watch began
    assert feed.open(None, "reg:10").reset is None
    add(feed, 20, "b-1")
    add(feed, 30, "b-2")
    add(feed, 40, "b-3")  # drops revision 20's event
    expired = feed.open(None, "reg:19").reset
    assert expired is not None
    assert expired.reason == "expired"
    for resumed in ("reg:20", "reg:25"):  # from the last dropped one on, all is kept
        stream = feed.open(None, resumed)
        assert stream.reset is None
        assert instances(stream.backlog) == ["b-2", "b-3"]


async def test_a_gap_keeps_the_revision_resets_streams_and_refuses_older_ids() -> None:
    feed = bucket_feed()
    add(feed, 11, "b-1")
    stream = feed.open(None, None)
    feed.advance(20)
    feed.gap("kv_watch_restarted")
    got = await drain(stream)
    assert len(got) == 1
    assert isinstance(got[0], Reset)
    assert feed.event_id(got[0].sequence) == "reg:20"
    assert feed.version == "reg:20"
    assert feed.open(None, "reg:11").reset is not None
    assert feed.open(None, "reg:20").reset is None


def test_an_event_at_or_before_the_head_is_not_added_twice() -> None:
    feed = bucket_feed()
    add(feed, 12, "b-1")
    assert feed.add_at(12, "billing", "registered", b"") is None
    assert feed.add_at(11, "billing", "registered", b"") is None
    assert [e.sequence for e in feed._entries if isinstance(e, Entry)] == [12]


def test_own_events_are_left_to_the_watch() -> None:
    feed = bucket_feed()
    entry = change()
    assert feed.add_own("billing", "registered", pack(entry)) is None
    assert feed.version == "reg:10"


async def test_start_does_not_follow_nats_events() -> None:
    await bucket_feed().start(None)  # type: ignore[arg-type]  # never touched


def test_the_last_change_stays_while_only_refreshes_move_the_head() -> None:
    feed = bucket_feed()
    assert feed.changed == "reg:10"
    add(feed, 12, "b-1")
    feed.advance(30)  # lease refreshes: no event
    assert feed.changed == "reg:12"
    assert feed.version == "reg:30"
    feed.gap("nats_reconnected")
    assert feed.changed == "reg:30"


async def test_a_reset_stream_that_resumed_ahead_takes_every_later_change() -> None:
    feed = bucket_feed()
    stream = feed.open(None, "reg:20")
    feed.gap("nats_reconnected")  # the client reloads at 10: 11 on is news to it
    add(feed, 11, "b-1")
    got = await drain(stream)
    assert isinstance(got[0], Reset)
    assert instances(got[1:]) == ["b-1"]
