"""Recoveries under load: an UNHEALTHY instance heard again is ONLINE in the reply at once
and in the store soon after, with one write however often it beats meanwhile."""

from __future__ import annotations

import asyncio
from datetime import datetime

from aegis.router.domain import InstanceKey, InstanceRecord, OwnerCheck
from aegis.router.registry.operations import Registry
from aegis.router.registry.recoveries import INLINE_MAX
from aegis.router.store.port import MemoryStore
from aegis.wire.messages import InstanceStatus
from structlog.testing import capture_logs

from tests.support import FakeClock, eventually
from tests.unit.router.fakes import LATE, SESSION, ListSink, make_registry, register_request

KEY = InstanceKey("billing", "b-1")
ONLINE, UNHEALTHY, OFFLINE = InstanceStatus.ONLINE, InstanceStatus.UNHEALTHY, InstanceStatus.OFFLINE


def status_in_store(store: object, key: InstanceKey = KEY) -> InstanceStatus:
    current = store.peek(key)  # type: ignore[attr-defined]
    assert current is not None
    status: InstanceStatus = current.record.status
    return status


class SlowStore(MemoryStore):
    """A store whose updates wait until ``free`` is set (a JetStream under load)."""

    def __init__(self) -> None:
        super().__init__()
        self.free = asyncio.Event()
        self.free.set()

    async def update(self, rec: InstanceRecord, expected_revision: int) -> int:
        await self.free.wait()
        return await super().update(rec, expected_revision)


async def unhealthy_and_crowded(
    store: MemoryStore | None = None,
) -> tuple[Registry, FakeClock, ListSink, MemoryStore]:
    """A registry holding KEY UNHEALTHY (silent past unhealthy_after), with as many
    heartbeat writes in flight as make the next one deferred."""
    registry, clock, sink, store = make_registry(store)
    with capture_logs():
        await registry.register(register_request())
        clock.at(10 + LATE)
        await registry.liveness.sweep()
    registry.recoveries.inline = INLINE_MAX
    return registry, clock, sink, store


async def test_while_many_writes_are_in_flight_a_recovery_is_answered_now_and_written_once() -> (
    None
):
    registry, clock, sink, store = await unhealthy_and_crowded()
    assert status_in_store(store) is UNHEALTHY
    sink.events.clear()

    replies = []
    for beat in range(3):
        clock.at(11 + beat)
        replies.append(await registry.heartbeat(KEY, SESSION))
    deferred = status_in_store(store)
    registry.recoveries.inline = 0
    with capture_logs() as logs:
        await eventually(lambda: registry.recoveries.pending == 0, "written")
        await eventually(lambda: status_in_store(store) is ONLINE, "ONLINE in the store")

    assert [r.check for r in replies] == [OwnerCheck.OK] * 3
    assert all(r.record is not None and r.record.status is ONLINE for r in replies)
    assert deferred is UNHEALTHY, "not on the request path"
    assert [(e.event.value, e.instance.status.value) for e in sink.events] == [
        ("status_changed", "ONLINE")
    ], "one write, one event"
    assert "recoveries_written" in [e["event"] for e in logs]


async def test_a_deferred_recovery_keeps_the_instance_from_expiring_until_written() -> None:
    registry, clock, _, store = await unhealthy_and_crowded(SlowStore())
    assert isinstance(store, SlowStore)
    store.free.clear()  # the store is slow: the sweep comes first
    clock.at(19)
    await registry.heartbeat(KEY, SESSION)
    clock.at(20 + LATE)  # offline_after past the stored contact, 1.1 s past the heard one
    with capture_logs():
        await registry.liveness.sweep()
    swept = status_in_store(store)
    store.free.set()
    await eventually(lambda: status_in_store(store) is ONLINE, "ONLINE in the store")

    assert swept is UNHEALTHY, "the contact heard counted, not the stored one"


async def test_an_instance_offline_by_age_is_not_recovered_from_memory() -> None:
    registry, clock, _, _ = await unhealthy_and_crowded()
    clock.at(20 + LATE)  # past offline_after, before any sweep wrote it

    result = await registry.heartbeat(KEY, SESSION)
    await asyncio.sleep(0)

    assert result.check is OwnerCheck.NOT_FOUND
    assert registry.recoveries.pending == 0


async def test_a_refresh_due_is_answered_now_from_memory_and_written_in_the_background() -> None:
    # The refreshes of a storm's instances fall due together; on the request path a
    # slow store held the replies past the clients' timeouts while the sweep, not
    # seeing the contacts, declared the instances dead.
    store = SlowStore()
    registry, clock, sink, _ = make_registry(store)
    with capture_logs():
        await registry.register(register_request())
    refresh_after = registry.timings.refresh_after
    for t in range(5, int(refresh_after), 5):  # steady: in memory only
        clock.at(t)
        assert (await registry.heartbeat(KEY, SESSION)).check is OwnerCheck.OK
    store.free.clear()  # the store is slow from now on
    clock.at(refresh_after + 1)  # the refresh is due
    fast_lane = registry.liveness.heard(KEY, SESSION, clock.now.timestamp())
    result = await asyncio.wait_for(registry.heartbeat(KEY, SESSION), 1.0)
    stored_at = status_and_contact(store)[1]
    clock.at(refresh_after + 6)  # 11 s after the contact before it: UNHEALTHY without
    with capture_logs():
        sweep = asyncio.create_task(registry.liveness.sweep())
        await asyncio.sleep(0.05)
        swept = status_and_contact(store)[0]
        store.free.set()
        await sweep
        await registry.recoveries.drained()

    assert fast_lane is not None, "the fast lane answers a heartbeat whose refresh is due"
    assert result.check is OwnerCheck.OK
    assert result.record is not None
    assert result.record.status is ONLINE
    assert swept is ONLINE, "the contact kept in memory counted"
    assert status_and_contact(store)[1] > stored_at, "the refresh was written"
    assert [e.event.value for e in sink.events] == ["registered"], "a refresh is no news"


def status_and_contact(store: MemoryStore) -> tuple[InstanceStatus, datetime]:
    current = store.peek(KEY)
    assert current is not None
    return current.record.status, current.record.last_heartbeat_at
