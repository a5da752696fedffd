"""A heartbeat answered where the lease's holder may not hear of it is written to the store.

Both cases come from chaos histories (issue 14), where a live instance whose
heartbeats were answered 200 every 0.4 s was marked UNHEALTHY by the router
that held its lease, because the contacts stayed in another router's memory:

- seed 1: router-2 had just heard itself again after a frozen node, so it
  still counted the SIGKILLed router-1 alive and held it for the lease's
  holder. Its forwards got no responders; it answered and kept the contacts
  itself, while router-0, the holder in everyone else's view, expired the
  instance 0.26 s after a 200.
- seed 14: router-2 could not hear itself (its membership puts failed while
  the stream elected a leader), so the others counted it gone and router-1
  took its partitions; router-2 went on answering that instance's
  heartbeats as its holder, in memory, and router-1 expired it.

- seed 14 again, with those two fixed: router-2, its membership watch lost
  with a killed node, could not hear itself; its last sighting of router-0,
  the holder, was 6 s old, so it took a live instance for OFFLINE by age and
  gave it to a new session with 201, 0.19 s after router-0 had answered the
  owner's heartbeat.

Two registries over one store stand for two routers over one bucket.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import msgpack
from aegis.router.bus.endpoints import RegistryActions
from aegis.router.domain import InstanceKey, Outcome
from aegis.router.leases.contacts import Leases
from aegis.router.leases.membership import Membership
from aegis.router.registry.operations import Registry
from aegis.router.store.port import MemoryStore
from aegis.wire.messages import InstanceRequest, InstanceStatus, Reply

from tests.support import T0, FakeClock
from tests.unit.router.fakes import LATE, SESSION, TIMINGS, ListSink, register_request

TTL = 3.0  # the membership's: a router not heard from for this long is gone


def router(name: str, store: MemoryStore, clock: FakeClock, *others: str) -> Registry:
    """Router ``name`` counting ``others`` alive, and hearing itself."""
    membership = Membership(name, TTL, 0.0)
    for other in others:
        membership.seen(other, T0.timestamp())
    membership.heard_self_at = T0.timestamp()
    leases = Leases(membership, clock=lambda: clock.now.timestamp())
    return Registry(store, TIMINGS, ListSink(), clock, leases=leases)


def key_held_by(membership: Membership, holder: str) -> InstanceKey:
    """An instance whose partition ``membership`` gives to ``holder``."""
    n = 0
    while membership.owner(key := InstanceKey("billing", f"b-{n}")) != holder:
        n += 1
    return key


async def no_answer(router_id: str, request: InstanceRequest) -> Reply | None:
    """A forward to a router that is gone: no responders."""
    return None


async def heartbeat(actions: RegistryActions, key: InstanceKey) -> int:
    handled = await actions.heartbeat(
        InstanceRequest(
            service_name=key.service_name, instance_id=key.instance_id, session_id=SESSION
        )
    )
    reply = handled.reply
    if isinstance(reply, bytes):  # the steady path's reply comes packed
        return int(msgpack.unpackb(reply)["status"])
    return reply.status if isinstance(reply, Reply) else int(reply["status"])


async def keep_alive_for(
    actions: RegistryActions, key: InstanceKey, clock: FakeClock, holder: Registry
) -> None:
    """Heartbeat through ``actions`` every interval for two ``unhealthy_after``s, the
    holder sweeping all along: each answered 200, and the instance stays ONLINE."""
    step = TIMINGS.heartbeat_interval
    for n in range(1, int(2 * TIMINGS.unhealthy_after / step) + 1):
        clock.at(n * step)
        assert await heartbeat(actions, key) == 200
        clock.at(n * step + LATE)
        assert await holder.liveness.sweep() == 0, f"swept at {n * step + LATE} s"
        await asyncio.sleep(0)


async def test_a_contact_whose_forward_got_no_answer_reaches_the_real_holder() -> None:
    clock, store = FakeClock(), MemoryStore()
    # Router c still counts the dead router b alive; router a, the holder for
    # everyone who knows b is gone, never hears the heartbeats.
    a = router("a", store, clock)
    c = router("c", store, clock, "a", "b")
    key = key_held_by(c.leases.membership, "b")
    assert a.leases.holds(key)
    await a.register(register_request(key.instance_id))

    await keep_alive_for(RegistryActions(c, forward=no_answer), key, clock, holder=a)

    (record,) = await a.instances()
    assert record.status is InstanceStatus.ONLINE
    assert record.last_heartbeat_at == clock.now - timedelta(seconds=LATE), "stored"


async def test_a_router_that_cannot_hear_itself_stores_the_contacts_it_answers() -> None:
    clock, store = FakeClock(), MemoryStore()
    # Router b still holds the lease in its own view, but it has not heard itself
    # for longer than the TTL: the others took its partitions, a among them.
    a = router("a", store, clock)
    b = router("b", store, clock)
    b.leases.membership.heard_self_at = T0.timestamp() - 2 * TTL
    key = key_held_by(b.leases.membership, "b")
    await a.register(register_request(key.instance_id))

    await keep_alive_for(RegistryActions(b, forward=no_answer), key, clock, holder=a)

    (record,) = await a.instances()
    assert record.status is InstanceStatus.ONLINE


async def test_a_holder_that_hears_itself_keeps_steady_contacts_in_memory() -> None:
    clock, store = FakeClock(), MemoryStore()
    a = router("a", store, clock)
    key = key_held_by(a.leases.membership, "a")
    await a.register(register_request(key.instance_id))
    written = store.peek(key)

    clock.at(TIMINGS.heartbeat_interval)
    assert await heartbeat(RegistryActions(a, forward=no_answer), key) == 200

    assert store.peek(key) == written, "a steady heartbeat writes nothing"
    assert a.leases.heard_count == 1


async def test_a_router_that_cannot_hear_itself_takes_no_live_registration_over() -> None:
    clock, store = FakeClock(), MemoryStore()
    a = router("a", store, clock)
    b = router("b", store, clock, "a")
    key = key_held_by(b.leases.membership, "a")
    await a.register(register_request(key.instance_id))
    # a keeps the owner's heartbeats in memory (steady: nothing stored) well past
    # offline_after; b last heard a, and itself, at the start.
    clock.at(TIMINGS.offline_after + 5)

    decision = await b.register(register_request(key.instance_id, session="a-new-session"))

    assert decision.outcome is Outcome.DUPLICATE
    (record,) = await a.instances()
    assert record.session_id == SESSION
