"""The synchronous ``ServiceClient`` on a scripted NATS connection: what a WSGI service or a
script calls and sees, and that it leaves no thread behind."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from aegis.connect.connection import ConnectFailedError
from aegis.sdk import (
    ClientConfig,
    DuplicateInstanceError,
    Instance,
    NoHealthyInstanceError,
    RegistrationState,
    RegistrationValidationError,
    ServiceUnavailableError,
)
from aegis.sdk.sync import ClientClosedError, ServiceClient
from aegis.wire.messages import DEREGISTER_SUBJECT as DEREGISTER
from aegis.wire.messages import DISCOVER_SUBJECT as DISCOVER
from aegis.wire.messages import HEARTBEAT_SUBJECT as HEARTBEAT
from aegis.wire.messages import REGISTER_SUBJECT as REGISTER

from tests.support.blocking import wait_for
from tests.support.wire import instance_body
from tests.unit.sdk.fakes import ALIVE, HANG, INSTANCE, TAKEN, FakeNats, reply

OFFLINE = reply(200, instance={**INSTANCE, "status": "OFFLINE"})
BEAT_EVERY = 0.02  # seconds: real time, so heartbeats run while the test thread waits


def created(body: dict[str, Any]) -> bytes:
    """A 201 for whichever instance ``body`` registers, asking for fast heartbeats."""
    instance = instance_body(body["service_name"], body["instance_id"])
    return reply(201, instance=instance, heartbeat_interval=BEAT_EVERY)


def scripted() -> FakeNats:
    return FakeNats().answer(REGISTER, created).answer(HEARTBEAT, HANG).answer(DEREGISTER, OFFLINE)


def sync_client(fake: FakeNats, **config: Any) -> ServiceClient:
    config.setdefault("backoff_base", 0)
    config.setdefault("shared_subjects", True)  # the fake answers the v1 subjects
    return ServiceClient(config=ClientConfig(**config), connect=fake.connect, rand=lambda: 0.5)


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    """Every test ends with exactly the threads it started with."""
    before = set(threading.enumerate())
    yield
    assert set(threading.enumerate()) - before == set()


def test_register_discover_deregister_block_and_answer_like_the_async_client() -> None:
    fake = scripted().answer(DISCOVER, reply(200, instances=[INSTANCE]))
    with sync_client(fake) as client:
        instance = client.register("billing", "b-1", {"v": "1"})
        found = client.discover("billing", status="any")
        offline = client.deregister("billing", "b-1")

    assert (instance.service_name, instance.instance_id) == ("billing", "b-1")
    assert found == [Instance.model_validate(INSTANCE)]
    assert offline is not None
    assert offline.status == "OFFLINE"
    assert [body["session_id"] for body in fake.sent(REGISTER)] == [client.session_id]
    assert fake.sent(DISCOVER) == [{"service_name": "billing", "status": "ANY"}]


def test_heartbeats_run_between_calls() -> None:
    fake = FakeNats().answer(REGISTER, created).answer(HEARTBEAT, ALIVE).answer(DEREGISTER, OFFLINE)
    with sync_client(fake) as client:
        client.register("billing", "b-1")
        # The test thread makes no call meanwhile: the background thread beats on its own.
        wait_for(lambda: len(fake.sent(HEARTBEAT)) >= 3, "three heartbeats")
        state = client.instances[("billing", "b-1")].state

    assert state is RegistrationState.REGISTERED


def test_leaving_the_block_deregisters_and_ends_the_thread_even_on_an_exception() -> None:
    fake = scripted()
    client = sync_client(fake)
    held = []

    def handle_a_request() -> None:
        with client:
            client.register("billing", "b-1")
            client.register("billing", "b-2")
            held.extend(client.instances.values())
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        handle_a_request()

    assert sorted(body["instance_id"] for body in fake.sent(DEREGISTER)) == ["b-1", "b-2"]
    assert {reg.state for reg in held} == {RegistrationState.DEREGISTERED}
    assert fake.is_closed
    assert not client.connected


def test_connect_and_close_without_with() -> None:
    fake = scripted()
    client = sync_client(fake)
    client.connect()
    client.connect()  # already connected: nothing happens
    client.register("billing", "b-1")
    client.close()
    client.close()  # closed: nothing happens

    assert fake.connects == 1
    assert [body["instance_id"] for body in fake.sent(DEREGISTER)] == ["b-1"]


def test_calls_before_connect_or_after_close_say_how() -> None:
    fake = scripted()
    client = sync_client(fake)
    with pytest.raises(ClientClosedError, match="with ServiceClient") as before:
        client.register("billing", "b-1")
    with client:
        pass
    with pytest.raises(ClientClosedError, match="connect"):
        client.discover("billing")

    assert (before.value.status_code, before.value.code) == (503, "NOT_CONNECTED")
    assert isinstance(before.value, ServiceUnavailableError)  # as the async client says it
    assert client.instances == {}
    assert fake.calls == []


def test_errors_are_the_async_clients_typed_errors() -> None:
    fake = scripted().answer(REGISTER, TAKEN)
    with sync_client(fake) as client:
        with pytest.raises(DuplicateInstanceError) as taken:
            client.register("billing", "b-1")
        with pytest.raises(RegistrationValidationError):
            client.register("bad name", "b-1")

    assert taken.value.retry_after == 3.0
    assert taken.value.existing == Instance.model_validate(INSTANCE)
    assert client.instances == {}


def test_a_failed_connect_leaves_no_thread_and_may_be_retried() -> None:
    fake = scripted()
    attempts = 0

    async def flaky_connect(servers: object, **options: Any) -> FakeNats:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectFailedError("could not connect to NATS")
        return await fake.connect(servers, **options)

    client = ServiceClient(
        config=ClientConfig(backoff_base=0, shared_subjects=True), connect=flaky_connect
    )
    with pytest.raises(ServiceUnavailableError) as info:
        client.connect()
    assert not client.connected
    with client:
        client.register("billing", "b-1")

    assert info.value.code == "NATS_UNREACHABLE"
    assert attempts == 2


def test_threads_may_call_one_client_at_once() -> None:
    fake = scripted()
    ids = [f"b-{n}" for n in range(16)]
    with sync_client(fake) as client, ThreadPoolExecutor(8) as pool:
        registered = list(pool.map(lambda i: client.register("billing", i).instance_id, ids))
        listed = sorted(key[1] for key in client.instances)

    assert registered == ids
    assert listed == sorted(ids)
    assert sorted(body["instance_id"] for body in fake.sent(DEREGISTER)) == sorted(ids)


def test_works_from_a_thread_whose_own_event_loop_is_running() -> None:
    fake = scripted()

    async def main() -> str:
        with sync_client(fake) as client:  # blocks this loop briefly, never deadlocks
            return client.register("billing", "b-1").instance_id

    assert asyncio.run(main()) == "b-1"
    assert [body["instance_id"] for body in fake.sent(DEREGISTER)] == ["b-1"]


def versioned(instance_id: str, **metadata: Any) -> dict[str, Any]:
    return {**instance_body("pay", instance_id), "metadata": metadata, "version": 1}


def test_a_resolver_picks_from_memory_and_says_why_when_it_cannot() -> None:
    fake = scripted().answer(
        DISCOVER,
        reply(200, instances=[versioned("p-1", zone="eu"), versioned("p-2", zone="eu")]),
        reply(200, instances=[versioned("p-3", zone="us")]),
    )
    with sync_client(fake) as client:
        payments = client.resolver("pay", where={"zone": "eu"})
        loaded = len(fake.sent(DISCOVER))
        picks = [payments.pick().instance_id for _ in range(100)]
        listed_instances = payments.instances()
        listed = [i.instance_id for i in listed_instances]
        asked = len(fake.sent(DISCOVER))
        elsewhere = client.resolver("pay", where={"zone": "eu"})
        with pytest.raises(NoHealthyInstanceError) as info:
            elsewhere.pick()

    assert (loaded, asked) == (1, 1), "picks and lists read memory"
    assert picks == ["p-1", "p-2"] * 50  # round robin
    assert listed == ["p-1", "p-2"]
    assert (payments.service_name, payments.where, payments.stale) == ("pay", {"zone": "eu"}, False)
    assert info.value.reason == "filtered_out"  # p-3 is ONLINE, but in another zone
    assert payments.instances() == listed_instances, "as in async: the last view stays readable"
    with pytest.raises(ClientClosedError):
        elsewhere.pick()  # saying why needs the background thread, which is gone
