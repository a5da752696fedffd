"""Recoveries under load: an UNHEALTHY instance heard again is ONLINE in the reply at once
and in the store soon after, with one write however often it beats meanwhile."""

from __future__ import annotations

import asyncio

from aegis.router.domain import InstanceKey, OwnerCheck
from aegis.router.registry.recoveries import INLINE_MAX
from aegis.wire.messages import InstanceStatus
from structlog.testing import capture_logs

from tests.support import eventually
from tests.unit.router.fakes import LATE, SESSION, make_registry, register_request

KEY = InstanceKey("billing", "b-1")
ONLINE, UNHEALTHY, OFFLINE = InstanceStatus.ONLINE, InstanceStatus.UNHEALTHY, InstanceStatus.OFFLINE


def status_in_store(store: object, key: InstanceKey = KEY) -> InstanceStatus:
    current = store.peek(key)  # type: ignore[attr-defined]
    assert current is not None
    status: InstanceStatus = current.record.status
    return status


async def test_while_many_writes_are_in_flight_a_recovery_is_answered_now_and_written_once() -> (
    None
):
    registry, clock, sink, store = make_registry()
    with capture_logs():
        await registry.register(register_request())
        clock.at(10 + LATE)
        await registry.sweep()
    assert status_in_store(store) is UNHEALTHY
    sink.events.clear()
    registry.recoveries.inline = INLINE_MAX  # as if that many heartbeat writes were waiting

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
    registry, clock, _, store = make_registry()
    with capture_logs():
        await registry.register(register_request())
        clock.at(10 + LATE)
        await registry.sweep()
    registry.recoveries.inline = INLINE_MAX
    store_free = asyncio.Event()
    write = registry.recoveries._write

    async def slow_store(key: InstanceKey, session: str) -> None:
        await store_free.wait()  # the store is slow: the sweep comes first
        await write(key, session)

    registry.recoveries._write = slow_store
    clock.at(19)
    await registry.heartbeat(KEY, SESSION)
    clock.at(20 + LATE)  # offline_after past the stored contact, 1.1 s past the heard one
    with capture_logs():
        await registry.sweep()
    swept = status_in_store(store)
    store_free.set()
    await eventually(lambda: status_in_store(store) is ONLINE, "ONLINE in the store")

    assert swept is UNHEALTHY, "the contact heard counted, not the stored one"


async def test_an_instance_offline_by_age_is_not_recovered_from_memory() -> None:
    registry, clock, _, _ = make_registry()
    with capture_logs():
        await registry.register(register_request())
        clock.at(10 + LATE)
        await registry.sweep()
    registry.recoveries.inline = INLINE_MAX
    clock.at(20 + LATE)  # past offline_after, before any sweep wrote it

    result = await registry.heartbeat(KEY, SESSION)
    await asyncio.sleep(0)

    assert result.check is OwnerCheck.NOT_FOUND
    assert registry.recoveries.pending == 0
