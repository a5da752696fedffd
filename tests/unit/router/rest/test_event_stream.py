"""aegis.router.rest.event_stream: what a client reads on the wire, without waiting 15 s for it."""

from __future__ import annotations

import asyncio
import json

import pytest
from aegis.router.rest import event_stream
from aegis.router.rest.event_feed import EventFeed
from aegis.wire.messages import ChangeEvent, EventKind, Instance, InstanceStatus


class Recorder:
    """Stands in for Sanic's streaming response: keeps what was sent."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, data: bytes) -> None:
        self.sent.append(data)

    @property
    def text(self) -> str:
        return b"".join(self.sent).decode()


def change(instance: str) -> ChangeEvent:
    return ChangeEvent(
        event=EventKind.REGISTERED,
        instance=Instance(
            service_name="billing",
            instance_id=instance,
            status=InstanceStatus.ONLINE,
            metadata={},
            registered_at="2025-01-01T00:00:00.000Z",
            last_heartbeat_at="2025-01-01T00:00:00.000Z",
        ),
    )


async def test_a_quiet_stream_sends_keep_alive_comments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_stream, "KEEP_ALIVE_SECONDS", 0.01)
    feed = EventFeed("r1", max_streams=1, first=1)
    response = Recorder()
    pump = asyncio.create_task(event_stream._pump(response, feed, feed.open(None, None)))  # type: ignore[arg-type]
    await asyncio.sleep(0.1)
    await feed.stop()
    assert await pump == "shutdown"
    assert response.text.startswith(": events of router r1\n\n")
    assert response.text.count(": keep-alive\n\n") >= 2


async def test_a_reset_then_the_replay_then_live_events_in_that_order() -> None:
    feed = EventFeed("r1", max_streams=1, first=1, queue_size=1)
    feed.append(change("b-1"))
    stream = feed.open(None, "elsewhere:3")
    response = Recorder()
    pump = asyncio.create_task(event_stream._pump(response, feed, stream))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    feed.append(change("b-2"))
    await asyncio.sleep(0.01)
    # Two more than the client took: the queue of one overflows, the stream ends.
    feed.append(change("b-3"))
    feed.append(change("b-4"))
    assert await pump == "overflow"
    messages = [m for m in response.text.split("\n\n") if m and not m.startswith(":")]
    kinds = [m.split("\n")[1] for m in messages]
    assert kinds == ["event: reset", "event: registered", "event: reset"]
    first, live, last = (json.loads(m.split("data: ", 1)[1]) for m in messages)
    assert first["reason"] == "unknown_id"
    assert live["instance"]["instance_id"] == "b-2"
    assert last["reason"] == "overflow"
    assert messages[0].startswith("id: r1:1\n")  # resume from here: nothing before it is owed
