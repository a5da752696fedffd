"""aegis.router.registry.operations over the in-memory store, on a fake clock: no real time passes.

Registration, heartbeats, deregistration and operator actions (force-deregistration,
maintenance), and the services and instances views.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
from aegis.router.domain import InstanceKey, Outcome, OwnerCheck
from aegis.router.registry.operations import OwnerResult, Registry
from aegis.router.store.port import (
    MemoryStore,
)
from aegis.wire.messages import InstanceStatus, RegisterRequest
from structlog.testing import capture_logs

from tests.support import T0, FakeClock
from tests.unit.router.fakes import (
    KEY,
    LATE,
    OFFLINE,
    ONLINE,
    OTHER_SESSION,
    SESSION,
    UNHEALTHY,
    current,
    make_registry,
    register_request,
    status_of,
    stored,
    sweep_at,
)


def request(
    service: str = "billing", instance: str = "b-1", session: str | None = "s-1", **metadata: object
) -> RegisterRequest:
    return RegisterRequest(
        service_name=service, instance_id=instance, session_id=session, metadata=metadata
    )


async def test_register_create_renew_duplicate() -> None:
    clock = FakeClock()
    store = MemoryStore()
    registry = Registry(store, clock=clock)

    first = await registry.register(request(version="1"))
    assert first.outcome is Outcome.CREATED
    clock.now = T0 + timedelta(seconds=7)
    again = await registry.register(request(version="2"))
    assert again.outcome is Outcome.RENEWED
    other = await registry.register(request(session="s-2"))
    assert other.outcome is Outcome.DUPLICATE

    current = await store.get(InstanceKey("billing", "b-1"))
    assert current is not None
    kept = current.record
    assert kept.metadata == {"version": "1"}
    assert (kept.registered_at, kept.last_heartbeat_at) == (T0, T0 + timedelta(seconds=7))
    assert kept.session_id == "s-1"


async def filled_registry() -> Registry:
    store = MemoryStore()
    for rec in [
        stored("p-2", OFFLINE, "payments"),
        stored("b-2", UNHEALTHY),
        stored("p-1", ONLINE, "payments"),
        stored("b-1", ONLINE),
        stored("b-3", OFFLINE),
        stored("a-1", UNHEALTHY, "audit"),
    ]:
        await store.create(rec)
    registry = Registry(store)
    await registry.load()  # what the router does at start-up
    return registry


async def test_services_counts_by_status_sorted_by_name() -> None:
    summaries = await (await filled_registry()).services()
    assert [(s.name, s.instance_count, dict(s.statuses)) for s in summaries] == [
        (
            "audit",
            1,
            {InstanceStatus.ONLINE: 0, InstanceStatus.UNHEALTHY: 1, InstanceStatus.OFFLINE: 0},
        ),
        (
            "billing",
            3,
            {InstanceStatus.ONLINE: 1, InstanceStatus.UNHEALTHY: 1, InstanceStatus.OFFLINE: 1},
        ),
        (
            "payments",
            2,
            {InstanceStatus.ONLINE: 1, InstanceStatus.UNHEALTHY: 0, InstanceStatus.OFFLINE: 1},
        ),
    ]


async def test_services_empty_registry() -> None:
    assert await Registry(MemoryStore()).services() == []


@pytest.mark.parametrize(
    ("service", "status", "expected"),
    [
        (
            None,
            None,
            [
                "audit/a-1",
                "billing/b-1",
                "billing/b-2",
                "billing/b-3",
                "payments/p-1",
                "payments/p-2",
            ],
        ),
        ("billing", None, ["billing/b-1", "billing/b-2", "billing/b-3"]),
        (None, InstanceStatus.UNHEALTHY, ["audit/a-1", "billing/b-2"]),
        ("payments", InstanceStatus.OFFLINE, ["payments/p-2"]),
        ("payments", InstanceStatus.UNHEALTHY, []),
        ("nope", None, []),
    ],
)
async def test_instances_filters_and_sorts(
    service: str | None, status: InstanceStatus | None, expected: list[str]
) -> None:
    found = await (await filled_registry()).instances(service, status)
    assert [f"{r.service_name}/{r.instance_id}" for r in found] == expected


async def deregistered(registry: Registry, clock: FakeClock) -> None:
    await registry.deregister(KEY, SESSION)


async def expired(registry: Registry, clock: FakeClock) -> None:
    assert await sweep_at(registry, clock, 20 + LATE) == 1


async def removed(registry: Registry, clock: FakeClock) -> None:
    assert await sweep_at(registry, clock, 100 + LATE) == 1


@pytest.mark.parametrize("gone", [deregistered, expired, removed])
@pytest.mark.parametrize("session", [SESSION, OTHER_SESSION])
async def test_heartbeat_and_deregister_of_an_instance_that_is_gone_are_not_found(
    gone: Callable[[Registry, FakeClock], Awaitable[None]], session: str
) -> None:
    registry, clock, sink, store = make_registry()
    await registry.register(register_request())
    await gone(registry, clock)
    before, events = await current(store), len(sink.events)

    assert (await registry.heartbeat(KEY, session)).check is OwnerCheck.NOT_FOUND
    assert (await registry.deregister(KEY, session)).check is OwnerCheck.NOT_FOUND
    assert await current(store) == before
    assert len(sink.events) == events


async def test_unknown_instance_is_not_found() -> None:
    registry, _, sink, store = make_registry()
    assert (await registry.heartbeat(KEY, SESSION)).check is OwnerCheck.NOT_FOUND
    assert (await registry.deregister(KEY, SESSION)).check is OwnerCheck.NOT_FOUND
    assert await store.list_all() == []
    assert sink.events == []


@pytest.mark.parametrize(("owner", "caller"), [(SESSION, OTHER_SESSION), (None, SESSION)])
@pytest.mark.parametrize("action", [Registry.heartbeat, Registry.deregister])
@pytest.mark.parametrize("unhealthy", [False, True])
async def test_wrong_session_is_refused_and_nothing_changes(
    owner: str | None,
    caller: str,
    action: Callable[[Registry, InstanceKey, str], Awaitable[OwnerResult]],
    unhealthy: bool,
) -> None:
    registry, clock, sink, store = make_registry()
    await registry.register(register_request(session=owner))
    if unhealthy:
        await sweep_at(registry, clock, 10 + LATE)
    before, events = await store.get(KEY), list(sink.events)
    clock.at(15)

    result = await action(registry, KEY, caller)

    assert result.check is OwnerCheck.SESSION_MISMATCH
    assert await store.get(KEY) == before  # same record, same revision
    assert sink.events == events
    # The refused call was no contact: the instance still expires on its own schedule.
    assert await sweep_at(registry, clock, 20 + LATE) == 1
    assert await status_of(store) is OFFLINE


async def test_deregister_is_offline_at_once_and_removal_counts_from_then() -> None:
    registry, clock, sink, store = make_registry()
    await registry.register(register_request())
    clock.at(5)  # still ONLINE (unhealthy after 10)
    result = await registry.deregister(KEY, SESSION)

    assert result.check is OwnerCheck.OK
    assert result.record == await current(store)
    assert result.record is not None
    assert (result.record.status, result.record.last_heartbeat_at) == (OFFLINE, clock.now)
    assert sink.summary() == [
        ("registered", "ONLINE", None),
        ("deregistered", "OFFLINE", "ONLINE"),
    ]
    assert await sweep_at(registry, clock, 100 + LATE) == 0
    assert await sweep_at(registry, clock, 105 + LATE) == 1
    assert await current(store) is None
    assert sink.summary()[-1] == ("removed", "OFFLINE", "OFFLINE")


@pytest.mark.parametrize("owner", [SESSION, None])
async def test_force_deregister_takes_a_live_instance_offline_whatever_its_session(
    owner: str | None,
) -> None:
    registry, clock, sink, store = make_registry()
    await registry.register(register_request(session=owner))
    clock.at(4)
    record = await registry.force_deregister(KEY)

    assert record is not None
    assert record == await current(store)
    assert (record.status, record.last_heartbeat_at) == (OFFLINE, clock.now)
    assert sink.summary()[-1] == ("deregistered", "OFFLINE", "ONLINE")
    assert (await registry.heartbeat(KEY, SESSION)).check is OwnerCheck.NOT_FOUND


async def test_force_deregister_of_unknown_is_none() -> None:
    registry, _, sink, store = make_registry()
    assert await registry.force_deregister(KEY) is None
    assert await store.list_all() == []
    assert sink.events == []


async def test_force_deregister_of_offline_changes_nothing() -> None:
    registry, clock, sink, store = make_registry()
    await registry.register(register_request())
    await registry.deregister(KEY, SESSION)
    before, events = await store.get(KEY), len(sink.events)
    clock.at(60)

    record = await registry.force_deregister(KEY)

    assert before is not None
    assert record == before.record
    assert await store.get(KEY) == before
    assert len(sink.events) == events
    assert await sweep_at(registry, clock, 100 + LATE) == 1  # removal was not postponed


async def test_discovery_by_status() -> None:
    registry, clock, _, _ = make_registry()
    for name in ("gone", "quiet", "fresh"):
        await registry.register(register_request(name))
    await registry.register(register_request("other", service="payments"))
    await registry.deregister(InstanceKey("billing", "gone"), SESSION)
    clock.at(8)
    await registry.heartbeat(InstanceKey("billing", "fresh"), SESSION)
    await registry.heartbeat(InstanceKey("payments", "other"), SESSION)
    await sweep_at(registry, clock, 10 + LATE)

    async def ids(status: InstanceStatus | None) -> list[str]:
        return [r.instance_id for r in await registry.instances("billing", status)]

    assert await ids(ONLINE) == ["fresh"]
    assert await ids(UNHEALTHY) == ["quiet"]
    assert await ids(OFFLINE) == ["gone"]
    assert await ids(None) == ["fresh", "gone", "quiet"]
    assert await registry.instances("nope", ONLINE) == []


async def test_takeover_of_an_offline_instance_is_announced_as_registered() -> None:
    registry, clock, sink, _ = make_registry()
    await registry.register(register_request())
    await registry.deregister(KEY, SESSION)
    clock.at(1)
    decision = await registry.register(register_request(session=OTHER_SESSION))
    assert decision.outcome is Outcome.CREATED
    assert sink.summary()[-1] == ("registered", "ONLINE", "OFFLINE")


async def test_takeover_in_the_same_clock_tick_is_still_registered() -> None:
    """A coarse clock (or a quick restart) can give the new registration the old timestamp."""
    registry, _, sink, _ = make_registry()
    await registry.register(register_request())
    await registry.deregister(KEY, SESSION)
    with capture_logs() as logs:
        decision = await registry.register(register_request(session=OTHER_SESSION))
    assert decision.outcome is Outcome.CREATED
    assert [e["event"] for e in logs] == ["instance_registered"]
    assert sink.summary()[-1] == ("registered", "ONLINE", "OFFLINE")


async def test_maintenance_keeps_liveness_survives_heartbeats_and_is_announced() -> None:
    registry, clock, sink, store = make_registry()
    await registry.register(register_request())
    clock.at(1)
    marked = await registry.set_maintenance(KEY, "kernel upgrade")
    assert marked is not None
    assert marked.maintenance is not None
    assert (marked.maintenance.reason, marked.maintenance.since) == ("kernel upgrade", clock.now)
    assert await registry.set_maintenance(KEY, "kernel upgrade") == marked  # no second write
    clock.at(5)
    await registry.heartbeat(KEY, SESSION)
    await registry.register(register_request())  # a renewal keeps it too
    stored_record = await current(store)
    assert stored_record is not None
    assert stored_record.maintenance == marked.maintenance
    assert stored_record.status is ONLINE
    cleared = await registry.set_maintenance(KEY, None)
    assert cleared is not None
    assert cleared.maintenance is None
    assert [e.event.value for e in sink.events] == ["registered", "maintenance", "maintenance"]
    assert sink.events[1].instance.maintenance is not None
    assert sink.events[2].instance.maintenance is None
    assert await registry.set_maintenance(InstanceKey("billing", "nope"), "x") is None


async def test_a_drain_survives_a_restart_of_its_instance_until_an_operator_clears_it() -> None:
    # Issue 25: "kernel upgrade", then the service restarts (deregisters, and a new
    # run registers under a new session): it must not be back in rotation unmarked.
    registry, clock, sink, store = make_registry()
    await registry.register(register_request())
    clock.at(1)
    marked = await registry.set_maintenance(KEY, "kernel upgrade")
    assert marked is not None
    clock.at(2)
    await registry.deregister(KEY, SESSION)
    clock.at(3)
    again = await registry.register(register_request(session=OTHER_SESSION))
    assert again.outcome is Outcome.CREATED
    assert again.record.maintenance == marked.maintenance
    assert sink.events[-1].instance.maintenance is not None, "the event shows it"
    await registry.deregister(KEY, OTHER_SESSION)
    assert await sweep_at(registry, clock, 1000) == 0  # OFFLINE, far past remove_after
    kept = await current(store)
    assert kept is not None
    assert (kept.status, kept.maintenance) == (OFFLINE, marked.maintenance)

    cleared = await registry.set_maintenance(KEY, None)

    assert cleared is not None
    assert cleared.maintenance is None
    assert await registry.set_maintenance(KEY, "again") is None, "only a live one is drained"
    assert await sweep_at(registry, clock, 1001) == 1
    assert await current(store) is None


async def test_a_silent_instance_in_maintenance_goes_offline_and_stays() -> None:
    registry, clock, _, store = make_registry()
    await registry.register(register_request())
    await registry.set_maintenance(KEY, "kernel upgrade")
    await sweep_at(registry, clock, 20 + LATE)
    await sweep_at(registry, clock, 1000)
    kept = await current(store)
    assert kept is not None
    assert kept.status is OFFLINE
    assert await registry.set_service_maintenance("billing", None) is not None
    await sweep_at(registry, clock, 1001)
    assert await current(store) is None


async def test_a_service_goes_into_maintenance_whole() -> None:
    registry, _, _, _ = make_registry()
    for n in range(3):
        await registry.register(register_request(f"b-{n}"))
    await registry.deregister(InstanceKey("billing", "b-2"), SESSION)  # OFFLINE: left alone
    marked = await registry.set_service_maintenance("billing", "migration")
    assert marked is not None
    assert [(r.instance_id, r.maintenance is not None) for r in marked] == [
        ("b-0", True),
        ("b-1", True),
    ]
    assert await registry.set_service_maintenance("nope", "x") is None


async def test_a_duplicate_is_told_when_the_holder_may_be_taken_over_from_its_lease() -> None:
    registry, clock, _, store = make_registry()
    await registry.register(register_request())
    clock.at(8)
    await registry.heartbeat(KEY, SESSION)  # steady: only the lease knows it
    stored_record = await current(store)
    assert stored_record is not None
    assert stored_record.last_heartbeat_at == T0
    # Counted from the contact the lease holds (8 s), not the stored one (0 s).
    assert registry.offline_at(stored_record) == T0 + timedelta(seconds=8 + 20)
