"""aegis.router.rest.event_feed: numbering, retention, resuming, resets, bounds on streams."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from aegis.router.rest.event_feed import (
    Entry,
    EventFeed,
    Reset,
    Stream,
    StreamEndedError,
    TooManyStreamsError,
)
from aegis.wire.messages import ChangeEvent, EventKind, Instance, InstanceStatus

FIRST = 1000


def change(
    service: str = "billing", instance: str = "b-1", kind: str = "registered"
) -> ChangeEvent:
    return ChangeEvent(
        event=EventKind(kind),
        instance=Instance(
            service_name=service,
            instance_id=instance,
            status=InstanceStatus.ONLINE,
            metadata={},
            registered_at="2025-01-01T00:00:00.000Z",
            last_heartbeat_at="2025-01-01T00:00:00.000Z",
        ),
    )


def feed(**kwargs: int) -> EventFeed:
    options = {"max_streams": 10, "first": FIRST, **kwargs}
    return EventFeed("r1", **options)


def instances(entries: Sequence[Entry | Reset]) -> list[str]:
    """The instance ids the entries' frames carry, in order."""
    found = []
    for entry in entries:
        assert isinstance(entry, Entry), entry
        data = entry.frame.decode().split("data: ", 1)[1]
        found.append(json.loads(data)["instance"]["instance_id"])
    return found


async def drain(stream: Stream) -> list[Entry | Reset]:
    """Whatever the stream has ready, without waiting."""
    got: list[Entry | Reset] = []
    while (item := await stream.next(0.01)) is not None:
        got.append(item)
    return got


def test_an_event_is_framed_as_sse_with_its_id_kind_and_json_body() -> None:
    entry = feed().append(change(kind="deregistered"))
    lines = entry.frame.decode().split("\n")
    assert lines[0] == f"id: r1:{FIRST}"
    assert lines[1] == "event: deregistered"
    # The body NATS carries, as JSON: unset members left out, as there.
    body = change(kind="deregistered").model_dump(mode="json", exclude_none=True)
    assert json.loads(lines[2].removeprefix("data: ")) == body
    assert entry.frame.endswith(b"\n\n")


def test_resuming_replays_exactly_the_events_after_the_id() -> None:
    f = feed()
    seen = [f.append(change(instance=f"b-{i}")) for i in range(5)]
    stream = f.open(None, f.event_id(seen[1].sequence))
    assert stream.reset is None
    assert instances(stream.backlog) == ["b-2", "b-3", "b-4"]


def test_resuming_a_service_replays_only_its_events() -> None:
    f = feed()
    f.append(change("billing", "b-1"))
    f.append(change("shop", "s-1"))
    f.append(change("billing", "b-2"))
    stream = f.open("billing", f.event_id(FIRST - 1))
    assert instances(stream.backlog) == ["b-1", "b-2"]


def test_resuming_from_the_latest_id_replays_nothing_and_resets_nothing() -> None:
    f = feed()
    last = f.append(change())
    stream = f.open(None, f.event_id(last.sequence))
    assert (stream.backlog, stream.reset) == ([], None)


@pytest.mark.parametrize("given", ["other:1000", "r1", "r1:", "r1:abc", "r1:-3", "other:r1:1000"])
def test_an_id_from_another_router_or_malformed_gets_a_reset(given: str) -> None:
    f = feed()
    f.append(change())
    stream = f.open(None, given)
    assert stream.reset is not None
    assert stream.reset.reason == "unknown_id"
    assert stream.backlog == []
    # The reset carries a resume point: everything after it will be live.
    assert stream.reset.sequence == f.head


def test_an_id_older_than_what_is_retained_gets_a_reset() -> None:
    f = feed(capacity=3)
    seen = [f.append(change(instance=f"b-{i}")) for i in range(5)]  # b-2..b-4 retained
    expired = f.open(None, f.event_id(seen[0].sequence))
    assert expired.reset is not None
    assert expired.reset.reason == "expired"
    # The one just before the oldest retained still misses nothing.
    edge = f.open(None, f.event_id(seen[1].sequence))
    assert edge.reset is None
    assert instances(edge.backlog) == ["b-2", "b-3", "b-4"]


def test_an_id_from_before_a_restart_under_the_same_name_gets_a_reset() -> None:
    before = feed()
    kept = [before.append(change(instance=f"b-{i}")) for i in range(3)]
    after = EventFeed("r1", max_streams=10, first=FIRST + 1_000_000)
    after.append(change())
    stream = after.open(None, before.event_id(kept[-1].sequence))
    assert stream.reset is not None
    assert stream.reset.reason == "expired"


def test_an_id_from_the_future_gets_a_reset() -> None:
    f = feed()
    f.append(change())
    stream = f.open(None, f.event_id(FIRST + 50))
    assert stream.reset is not None
    assert stream.reset.reason == "expired"


async def test_an_open_stream_gets_new_events_of_its_service_in_order() -> None:
    f = feed()
    everything, billing = f.open(None, None), f.open("billing", None)
    f.append(change("billing", "b-1"))
    f.append(change("shop", "s-1"))
    f.append(change("billing", "b-2"))
    assert instances(await drain(everything)) == ["b-1", "s-1", "b-2"]
    assert instances(await drain(billing)) == ["b-1", "b-2"]


async def test_a_quiet_stream_returns_none_after_the_wait() -> None:
    assert await feed().open(None, None).next(0.01) is None


async def test_after_a_gap_streams_get_a_reset_then_carry_on_and_older_ids_do_not_resume() -> None:
    f = feed()
    before = f.append(change(instance="b-1"))
    stream = f.open(None, None)
    f.gap("nats_reconnected")
    f.append(change(instance="b-2"))
    reset, entry = await drain(stream)
    assert isinstance(reset, Reset)
    assert reset.reason == "nats_reconnected"
    assert instances([entry]) == ["b-2"]
    assert f.open(None, f.event_id(before.sequence)).reset is not None
    # The reset's own id resumes without loss.
    resumed = f.open(None, f.event_id(reset.sequence))
    assert resumed.reset is None
    assert instances(resumed.backlog) == ["b-2"]


async def test_a_stream_that_falls_behind_is_ended_with_a_reset() -> None:
    f = feed(queue_size=2)
    slow = f.open(None, None)
    for i in range(3):
        f.append(change(instance=f"b-{i}"))
    with pytest.raises(StreamEndedError) as ended:
        await slow.next(0.01)
    assert ended.value.reason == "overflow"
    assert ended.value.reset is not None
    assert ended.value.reset.reason == "overflow"


def test_streams_past_the_bound_are_refused_until_one_closes() -> None:
    f = feed(max_streams=2)
    first, _second = f.open(None, None), f.open("billing", None)
    with pytest.raises(TooManyStreamsError):
        f.open(None, None)
    first.close()
    first.close()  # idempotent
    assert f.open_streams == 1
    f.open(None, None)


async def test_stopping_ends_every_stream_and_refuses_new_ones() -> None:
    f = feed()
    stream = f.open(None, None)
    await f.stop()
    with pytest.raises(StreamEndedError) as ended:
        await stream.next(1.0)
    assert (ended.value.reason, ended.value.reset) == ("shutdown", None)
    with pytest.raises(StreamEndedError):
        f.open(None, None)


def test_retained_events_are_bounded_in_bytes_too() -> None:
    f = EventFeed("r1", max_streams=10, first=FIRST, max_bytes=4000)
    entries = [f.append(change(instance=f"b-{i}")) for i in range(100)]
    fits = 4000 // entries[0].size  # this many of the newest are kept
    kept = f.open(None, f.event_id(entries[-fits].sequence))
    assert kept.reset is None
    assert len(kept.backlog) == fits - 1
    gone = f.open(None, f.event_id(entries[-fits - 2].sequence))
    assert gone.reset is not None, "older than what the byte bound keeps: reload"
