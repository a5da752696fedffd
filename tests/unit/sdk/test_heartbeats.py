"""Keeping instances alive, as a service sees it through ``client.instances`` and the log.

Time is a FakeClock: every wait the client makes is recorded in ``clock.sleeps``
and returns at once. A heartbeat script ends in ``HANG`` where a test needs the
loop to hold still.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aegis.sdk import DuplicateInstanceError, RegisteredInstance, RegistrationState, ServiceClient
from aegis.wire.messages import DEREGISTER_SUBJECT as DEREGISTER
from aegis.wire.messages import HEARTBEAT_SUBJECT as HEARTBEAT
from aegis.wire.messages import REGISTER_SUBJECT as REGISTER

from tests.support import T0, FakeClock, eventually
from tests.unit.sdk.fakes import (
    ALIVE,
    CREATED,
    FORBIDDEN,
    HANG,
    INSTANCE,
    NOT_FOUND,
    SWALLOW,
    TAKEN,
    FakeNats,
    created,
    error,
    events,
    make_client,
    reply,
)

KEY = ("billing", "b-1")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake() -> FakeNats:
    return FakeNats().answer(REGISTER, created).answer(DEREGISTER, ALIVE)


@pytest.fixture(autouse=True)
def sdk_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="aegis.sdk")


@pytest.fixture
async def client(fake: FakeNats, clock: FakeClock) -> AsyncIterator[ServiceClient]:
    async with make_client(fake, clock, draw=0.25) as client:
        yield client


async def registered(client: ServiceClient, instance_id: str = "b-1") -> RegisteredInstance:
    await client.register("billing", instance_id, {"v": "1"})
    return client.instances[("billing", instance_id)]


async def settle() -> None:
    """Let every ready task run a good many steps (a loop would send again meanwhile)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def test_heartbeats_at_the_announced_interval_as_the_owner(
    client: ServiceClient, fake: FakeNats, clock: FakeClock
) -> None:
    fake.answer(HEARTBEAT, ALIVE, ALIVE, ALIVE, HANG)
    reg = await registered(client)
    await eventually(lambda: len(fake.sent(HEARTBEAT)) == 4, "four heartbeats")

    owner = {"service_name": "billing", "instance_id": "b-1", "session_id": client.session_id}
    # Each in the session's order, after the registration's seq 1.
    assert fake.sent(HEARTBEAT) == [{**owner, "seq": seq} for seq in (2, 3, 4, 5)]
    assert clock.sleeps == [2.0] * 4  # the interval the router announced
    # A heartbeat waits at most one interval for its reply (the configured timeout is 5 s).
    assert {c.timeout for c in fake.calls if c.subject == HEARTBEAT} == {2.0}
    assert reg.state is RegistrationState.REGISTERED
    assert reg.last_contact_at == T0 + timedelta(seconds=6)  # the third heartbeat's answer


async def test_a_failed_heartbeat_is_kept_and_logged_not_raised(
    client: ServiceClient, fake: FakeNats, caplog: pytest.LogCaptureFixture
) -> None:
    fake.answer(HEARTBEAT, TimeoutError(), error(500, "INTERNAL_ERROR"), HANG)
    reg = await registered(client)
    await eventually(lambda: len(fake.sent(HEARTBEAT)) == 3, "three heartbeats")

    assert (reg.state, reg.failures, reg.last_error) == (
        RegistrationState.RETRYING,
        2,
        "INTERNAL_ERROR happened",
    )
    assert [e["failures"] for e in events(caplog, "heartbeat_failed")] == [1, 2]


async def test_the_next_successful_heartbeat_clears_the_failure(
    client: ServiceClient, fake: FakeNats
) -> None:
    fake.answer(HEARTBEAT, TimeoutError(), ALIVE, HANG)
    reg = await registered(client)
    await eventually(lambda: len(fake.sent(HEARTBEAT)) == 3, "three heartbeats")

    assert (reg.state, reg.failures, reg.last_error) == (RegistrationState.REGISTERED, 0, None)
    assert reg.last_contact_at == T0 + timedelta(seconds=4)


async def test_heartbeats_that_get_through_again_say_so_once(
    client: ServiceClient, fake: FakeNats, caplog: pytest.LogCaptureFixture
) -> None:
    # Two beats lost: the first's one try, the second's three (SHARED_TRIES).
    fake.answer(HEARTBEAT, *[TimeoutError()] * 4, ALIVE, ALIVE, HANG)
    await registered(client)
    await eventually(lambda: len(fake.sent(HEARTBEAT)) == 7, "four beats")

    # The last contact was the registration, three 2 s intervals before the recovery.
    assert events(caplog, "heartbeat_recovered") == [
        {"service": "billing", "instance": "b-1", "failures": 2, "seconds_without_contact": 6.0}
    ]


async def test_404_registers_again_after_a_jittered_pause(
    client: ServiceClient, fake: FakeNats, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    fake.answer(HEARTBEAT, NOT_FOUND, ALIVE, HANG)
    reg = await registered(client)
    await eventually(lambda: len(fake.sent(HEARTBEAT)) == 3, "heartbeating again")

    first, again = fake.sent(REGISTER)
    assert again["session_id"] == first["session_id"] == client.session_id
    assert again["metadata"] == first["metadata"] == {"v": "1"}
    # heartbeat wait, then a quarter (the draw) of the interval, then heartbeats again
    assert clock.sleeps[:3] == [2.0, 0.5, 2.0]
    assert reg.state is RegistrationState.REGISTERED
    assert [e["status"] for e in events(caplog, "heartbeat_rejected")] == [404]
    assert len(events(caplog, "reregistered")) == 1


async def test_reregistering_is_visible_while_it_waits(
    client: ServiceClient, fake: FakeNats
) -> None:
    fake.answer(HEARTBEAT, NOT_FOUND)
    reg = await registered(client)
    fake.answer(REGISTER, HANG)
    await eventually(lambda: len(fake.sent(REGISTER)) == 2, "registering again")

    assert reg.state is RegistrationState.REREGISTERING


async def test_403_supersedes_the_instance_and_stops_its_heartbeats(
    client: ServiceClient, fake: FakeNats, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    fake.answer(HEARTBEAT, ALIVE, FORBIDDEN)
    reg = await registered(client)
    await eventually(lambda: reg.state is RegistrationState.SUPERSEDED, "superseded")
    await settle()

    assert len(fake.sent(HEARTBEAT)) == 2, "no heartbeat after the 403"
    assert len(fake.sent(REGISTER)) == 1, "no attempt to take it back (it would get 409)"
    assert clock.sleeps == [2.0, 2.0]
    assert reg.last_error == "SESSION_MISMATCH happened"
    assert [(e["instance"], e["status"]) for e in events(caplog, "instance_superseded")] == [
        ("b-1", 403)
    ]
    assert client.instances[KEY] is reg, "still listed, for the service to see"


async def test_409_on_registering_again_supersedes_too(
    client: ServiceClient, fake: FakeNats, caplog: pytest.LogCaptureFixture
) -> None:
    fake.answer(HEARTBEAT, NOT_FOUND)
    reg = await registered(client)
    fake.answer(REGISTER, TAKEN)
    await eventually(lambda: reg.state is RegistrationState.SUPERSEDED, "superseded")
    await settle()

    assert (len(fake.sent(HEARTBEAT)), len(fake.sent(REGISTER))) == (1, 2)
    assert reg.last_error == "DUPLICATE_INSTANCE happened"
    assert [e["status"] for e in events(caplog, "instance_superseded")] == [409]


async def test_a_stale_reply_is_neither_a_failure_nor_a_loss(
    client: ServiceClient, fake: FakeNats
) -> None:
    # 409 STALE_REQUEST: a later request of this session reached the router first
    # (a re-registration overtook a delayed heartbeat); that later one holds.
    stale = error(409, "STALE_REQUEST", instance=INSTANCE)
    fake.answer(HEARTBEAT, stale, ALIVE, HANG)
    reg = await registered(client)
    await eventually(lambda: len(fake.sent(HEARTBEAT)) == 3, "heartbeating on")

    assert (reg.state, reg.failures, reg.last_error) == (RegistrationState.REGISTERED, 0, None)
    assert len(fake.sent(REGISTER)) == 1, "not registered again"


async def test_a_superseded_instance_is_not_deregistered_on_close(
    fake: FakeNats, clock: FakeClock
) -> None:
    fake.answer(HEARTBEAT, lambda body: FORBIDDEN if body["instance_id"] == "b-1" else HANG)
    async with make_client(fake, clock) as client:
        lost = await registered(client, "b-1")
        kept = await registered(client, "b-2")
        await eventually(lambda: lost.state is RegistrationState.SUPERSEDED, "superseded")

    assert [body["instance_id"] for body in fake.sent(DEREGISTER)] == ["b-2"]
    assert (lost.state, kept.state) == (
        RegistrationState.SUPERSEDED,
        RegistrationState.DEREGISTERED,
    )


async def test_registering_a_superseded_instance_again_starts_afresh(
    client: ServiceClient, fake: FakeNats
) -> None:
    fake.answer(HEARTBEAT, FORBIDDEN)
    lost = await registered(client)
    await eventually(lambda: lost.state is RegistrationState.SUPERSEDED, "superseded")
    fake.answer(HEARTBEAT, ALIVE, HANG)
    beats = len(fake.sent(HEARTBEAT))

    back = await registered(client)
    await eventually(lambda: len(fake.sent(HEARTBEAT)) == beats + 2, "heartbeating again")
    assert back is not lost
    assert (back.state, back.last_error) == (RegistrationState.REGISTERED, None)


async def test_a_nats_reconnect_registers_every_owned_instance_again(
    client: ServiceClient, fake: FakeNats, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    fake.answer(HEARTBEAT, lambda body: FORBIDDEN if body["instance_id"] == "lost" else HANG)
    lost = await registered(client, "lost")
    await registered(client, "b-1")
    await registered(client, "b-2")
    await registered(client, "gone")
    await client.deregister("billing", "gone")
    await eventually(lambda: lost.state is RegistrationState.SUPERSEDED, "superseded")
    before = len(fake.sent(REGISTER))

    await fake.reconnect()
    await eventually(lambda: len(fake.sent(REGISTER)) == before + 2, "registered again")
    await settle()

    again = fake.sent(REGISTER)[before:]
    assert sorted(body["instance_id"] for body in again) == ["b-1", "b-2"]
    assert {body["session_id"] for body in again} == {client.session_id}
    assert clock.sleeps.count(0.5) == 2  # each after its own jittered pause
    assert [e["instances"] for e in events(caplog, "nats_reconnected")] == [2]


@pytest.mark.parametrize(
    ("outcomes", "wait_if_taken", "takes_it", "waits"),
    [
        ((TAKEN, CREATED), 10.0, True, [3.5]),  # retry_after 3 s plus the sweeper's margin
        ((TAKEN, CREATED), 3.0, False, []),  # 3.5 s would already pass the bound
        ((TAKEN,), 10.0, False, [3.5, 3.5]),  # the holder stays; a third wait would pass 10 s
        ((error(409, "DUPLICATE_INSTANCE"), CREATED), 10.0, False, []),  # no retry_after
    ],
    ids=["holder-expires", "bound-too-short", "holder-stays", "no-retry-after"],
)
async def test_wait_if_taken_waits_for_the_stale_holder_within_its_bound(
    client: ServiceClient,
    fake: FakeNats,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    outcomes: tuple[bytes, ...],
    wait_if_taken: float,
    takes_it: bool,
    waits: list[float],
) -> None:
    fake.answer(REGISTER, *outcomes).answer(HEARTBEAT, HANG)

    try:
        await client.register("billing", "b-1", wait_if_taken=wait_if_taken)
    except DuplicateInstanceError:
        assert not takes_it
    else:
        assert takes_it
        assert client.instances[KEY].state is RegistrationState.REGISTERED
    assert clock.sleeps == waits
    assert len(fake.sent(REGISTER)) == len(waits) + 1
    assert [e["seconds"] for e in events(caplog, "waiting_for_stale_registration")] == waits


async def test_a_holder_that_keeps_heartbeating_is_named_a_running_copy(
    client: ServiceClient, fake: FakeNats, clock: FakeClock
) -> None:
    def held(last_heartbeat_at: str) -> bytes:
        holder = {**INSTANCE, "last_heartbeat_at": last_heartbeat_at}
        return error(409, "DUPLICATE_INSTANCE", existing=holder, retry_after=3.0)

    fake.answer(REGISTER, held("2026-01-01T00:00:00Z"), held("2026-01-01T00:00:03Z"))

    with pytest.raises(DuplicateInstanceError) as taken:
        await client.register("billing", "b-1", wait_if_taken=5.0)

    assert clock.sleeps == [3.5]
    assert str(taken.value) == (
        "instance b-1 is still held after waiting 3.5s: its owner keeps heartbeating it, "
        "so another copy of it is running; stop that copy, or give this one another instance id"
    )
    assert taken.value.retry_after == 3.0


DIRECT = "ipc.router.r1.heartbeat"
OTHER_DIRECT = "ipc.router.r2.heartbeat"


async def test_heartbeats_go_to_the_lease_holder_the_router_named(
    client: ServiceClient, fake: FakeNats
) -> None:
    fake.answer(
        REGISTER, reply(201, instance=INSTANCE, heartbeat_interval=2.0, heartbeat_subject=DIRECT)
    )
    fake.answer(DIRECT, reply(200, instance=INSTANCE, heartbeat_subject=DIRECT), HANG)
    reg = await registered(client)
    await eventually(lambda: len(fake.sent(DIRECT)) == 2, "two direct heartbeats")

    assert fake.sent(HEARTBEAT) == [], "nothing on the shared subject while the holder answers"
    assert reg.heartbeat_subject == DIRECT
    assert reg.state is RegistrationState.REGISTERED


async def test_a_silent_holder_falls_back_to_the_shared_subject_and_follows_the_new_name(
    client: ServiceClient, fake: FakeNats, caplog: pytest.LogCaptureFixture
) -> None:
    fake.answer(
        REGISTER, reply(201, instance=INSTANCE, heartbeat_interval=2.0, heartbeat_subject=DIRECT)
    )
    # DIRECT first times out, then (the router died) has no responders at all.
    fake.answer(DIRECT, TimeoutError())
    fake.answer(HEARTBEAT, reply(200, instance=INSTANCE, heartbeat_subject=OTHER_DIRECT))
    fake.answer(OTHER_DIRECT, reply(200, instance=INSTANCE, heartbeat_subject=OTHER_DIRECT), HANG)
    reg = await registered(client)
    await eventually(lambda: len(fake.sent(OTHER_DIRECT)) == 2, "heartbeats to the new holder")

    assert len(fake.sent(DIRECT)) == 1
    assert len(fake.sent(HEARTBEAT)) == 1
    # The direct try had half the heartbeat's time; the fallback still had it all.
    assert [c.timeout for c in fake.calls if c.subject in (DIRECT, HEARTBEAT)] == [1.0, 2.0]
    assert (reg.state, reg.failures, reg.heartbeat_subject) == (
        RegistrationState.REGISTERED,
        0,
        OTHER_DIRECT,
    )
    assert [e["subject"] for e in events(caplog, "heartbeat_fallback")] == [DIRECT]


async def test_a_v1_router_that_names_no_subject_keeps_heartbeats_on_the_shared_one(
    client: ServiceClient, fake: FakeNats
) -> None:
    fake.answer(HEARTBEAT, ALIVE, ALIVE, HANG)
    reg = await registered(client)
    await eventually(lambda: len(fake.sent(HEARTBEAT)) == 3, "three heartbeats")
    assert reg.heartbeat_subject is None
    assert [c.subject for c in fake.calls if c.subject.startswith("ipc.router")] == []


async def test_closing_ends_even_a_heartbeat_loop_whose_cancellation_was_lost(
    fake: FakeNats, clock: FakeClock
) -> None:
    fake.answer(HEARTBEAT, SWALLOW)
    async with make_client(fake, clock, draw=0.25) as client:
        await registered(client)
        await eventually(lambda: len(fake.sent(HEARTBEAT)) == 1, "a heartbeat in flight")
    # Leaving the block returned: the loop saw the client stopping and ended.
    assert len(fake.sent(HEARTBEAT)) == 1


async def test_after_a_lost_beat_a_silent_shared_subject_is_tried_again_within_the_beat(
    client: ServiceClient, fake: FakeNats, caplog: pytest.LogCaptureFixture
) -> None:
    # A router that cannot send stays in the queue group and swallows what NATS
    # hands it: once a beat was lost, the next one draws again, twice more.
    fake.answer(
        REGISTER, reply(201, instance=INSTANCE, heartbeat_interval=2.0, heartbeat_subject=None)
    )
    fake.answer(HEARTBEAT, TimeoutError(), TimeoutError(), TimeoutError(), ALIVE, ALIVE, HANG)
    reg = await registered(client)
    await eventually(lambda: len(fake.sent(HEARTBEAT)) == 6, "the retried beat, then two more")

    timeouts = [round(c.timeout, 3) for c in fake.calls if c.subject == HEARTBEAT]
    assert timeouts == [2.0, 0.667, 0.667, 0.667, 2.0, 2.0], "one try again once it got through"
    seqs = [c.body["seq"] for c in fake.calls if c.subject == HEARTBEAT]
    assert len(set(seqs)) == len(seqs), "each try is a request of its own"
    assert (reg.state, reg.failures) == (RegistrationState.REGISTERED, 0)
    assert [e["attempt"] for e in events(caplog, "heartbeat_retried")] == [1, 2]


async def test_an_answer_that_refuses_is_not_retried(
    client: ServiceClient, fake: FakeNats, caplog: pytest.LogCaptureFixture
) -> None:
    # 503: the router is there and overloaded; asking again at once would add to it.
    busy = error(503, "OVERLOADED", retry_after=1.0)
    fake.answer(HEARTBEAT, TimeoutError(), busy, ALIVE, HANG)
    reg = await registered(client)
    await eventually(lambda: len(fake.sent(HEARTBEAT)) == 4, "three beats")

    assert reg.failures == 0
    assert events(caplog, "heartbeat_retried") == []
