"""The ``ServiceClient`` facade on a scripted NATS connection: what a service calls and sees."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest
from aegis.sdk import (
    CircuitOpenError,
    ClientConfig,
    EventStream,
    Instance,
    RegistrationState,
    RegistrationValidationError,
    RouterError,
    ServiceClient,
    ServiceUnavailableError,
)
from aegis.wire.messages import DEREGISTER_SUBJECT as DEREGISTER
from aegis.wire.messages import DISCOVER_SUBJECT as DISCOVER
from aegis.wire.messages import HEARTBEAT_SUBJECT as HEARTBEAT
from aegis.wire.messages import REGISTER_SUBJECT as REGISTER

from tests.support import T0, FakeClock, eventually
from tests.unit.sdk.fakes import (
    ALIVE,
    CREATED,
    HANG,
    INSTANCE,
    FakeNats,
    created,
    error,
    events,
    make_client,
    reply,
)

OFFLINE = reply(200, instance={**INSTANCE, "status": "OFFLINE"})


def scripted() -> FakeNats:
    return FakeNats().answer(REGISTER, created).answer(HEARTBEAT, HANG).answer(DEREGISTER, OFFLINE)


async def test_register_returns_instance_and_sends_contract_body() -> None:
    fake = scripted().answer(REGISTER, CREATED)
    async with make_client(fake, FakeClock(), timeout=1.5) as client:
        instance = await client.register("billing", "b-1", {"v": "1"})

    assert instance == Instance.model_validate(INSTANCE)
    [call] = [c for c in fake.calls if c.subject == REGISTER]
    assert call.timeout == 1.5
    assert call.body == {
        "service_name": "billing",
        "instance_id": "b-1",
        "metadata": {"v": "1"},
        "timestamp": T0.isoformat(),  # the client's clock
        "session_id": client.session_id,
        "seq": 1,  # the session's first request
    }


async def test_one_session_per_client() -> None:
    fake = scripted()
    async with make_client(fake) as client, make_client(fake) as other:
        await client.register("billing", "b-1")
        await client.register("billing", "b-2")
        await other.register("billing", "b-3")

    sessions = [body["session_id"] for body in fake.sent(REGISTER)]
    assert sessions == [client.session_id] * 2 + [other.session_id]
    assert client.session_id != other.session_id


@pytest.mark.parametrize(
    ("service", "instance", "metadata"),
    [
        ("bad name", "b-1", None),
        ("billing", "", None),
        ("billing", "b-1", {"k": b"bytes"}),
        ("billing", "b-1", {"k": 2**64}),
    ],
)
async def test_invalid_input_fails_before_sending(
    service: str, instance: str, metadata: dict[str, Any] | None
) -> None:
    fake = scripted()
    async with make_client(fake) as client:
        with pytest.raises(RegistrationValidationError) as info:
            await client.register(service, instance, metadata)

    assert info.value.status_code == 400
    assert info.value.details
    assert fake.calls == []


async def test_a_success_without_an_instance_is_a_router_error() -> None:
    fake = scripted().answer(REGISTER, reply(201))
    async with make_client(fake) as client:
        with pytest.raises(RouterError) as info:
            await client.register("billing", "b-1")

    assert info.value.status_code == 502
    assert client.instances == {}


async def test_instances_shows_each_registration_read_only() -> None:
    fake = scripted().answer(
        REGISTER, created, reply(201, instance=INSTANCE | {"instance_id": "x"})
    )
    clock = FakeClock()
    async with make_client(fake, clock) as client:
        await client.register("billing", "b-1")
        await client.register("billing", "x")
        view = client.instances
        with pytest.raises(TypeError):
            view[("billing", "y")] = view[("billing", "b-1")]  # type: ignore[index]
        states = {key: (reg.state, reg.heartbeat_interval) for key, reg in view.items()}
        contact = view[("billing", "b-1")].last_contact_at

    assert states == {
        ("billing", "b-1"): (RegistrationState.REGISTERED, 2.0),  # as the router announced
        ("billing", "x"): (RegistrationState.REGISTERED, 5.0),  # the default: none announced
    }
    assert contact == T0
    assert client.instances == {}, "closing forgets them"


async def test_deregister_stops_heartbeats_and_returns_the_offline_instance() -> None:
    fake = scripted()
    async with make_client(fake) as client:
        await client.register("billing", "b-1")
        reg = client.instances[("billing", "b-1")]
        await eventually(lambda: fake.sent(HEARTBEAT), "heartbeating")

        offline = await client.deregister("billing", "b-1")
        listed = dict(client.instances)
        beats = len(fake.sent(HEARTBEAT))
        unknown_reply = error(404, "INSTANCE_NOT_FOUND")
        fake.answer(DEREGISTER, unknown_reply)
        unknown = await client.deregister("billing", "never-registered")

    assert offline is not None
    assert offline.status == "OFFLINE"
    assert reg.state is RegistrationState.DEREGISTERED
    assert listed == {}
    assert len(fake.sent(HEARTBEAT)) == beats
    assert unknown is None
    assert [body["session_id"] for body in fake.sent(DEREGISTER)] == [client.session_id] * 2


async def test_every_request_of_a_session_carries_a_higher_seq() -> None:
    # The router orders a session's requests by it: a deregistration delayed in
    # the network must not undo the registration the client sent after it.
    fake = scripted().answer(HEARTBEAT, ALIVE, ALIVE, HANG)
    async with make_client(fake) as client:
        await client.register("billing", "b-1")
        await eventually(lambda: len(fake.sent(HEARTBEAT)) >= 2, "heartbeating")
        await client.deregister("billing", "b-1")
        await client.register("billing", "b-1")
        seqs = [call.body["seq"] for call in fake.calls if "seq" in call.body]

    assert len(seqs) >= 5
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)


async def test_discover_returns_the_instances_the_router_lists() -> None:
    fake = scripted().answer(DISCOVER, reply(200, instances=[INSTANCE]))
    async with make_client(fake) as client:
        found = await client.discover("billing", status="any")
        with pytest.raises(RegistrationValidationError):
            await client.discover("billing", status="SLEEPING")

    assert found == [Instance.model_validate(INSTANCE)]
    assert fake.sent(DISCOVER) == [{"service_name": "billing", "status": "ANY"}]


async def test_close_deregisters_every_instance_and_drains() -> None:
    fake = scripted()
    async with make_client(fake) as client:
        await client.register("billing", "b-1")
        await client.register("billing", "b-2")
        held = list(client.instances.values())

    assert sorted(body["instance_id"] for body in fake.sent(DEREGISTER)) == ["b-1", "b-2"]
    assert {reg.state for reg in held} == {RegistrationState.DEREGISTERED}
    assert fake.is_closed


async def test_a_failed_deregistration_on_close_is_logged_and_closing_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="aegis.sdk")
    fake = scripted().answer(DEREGISTER, error(500, "INTERNAL_ERROR"))
    async with make_client(fake) as client:
        await client.register("billing", "b-1")
        reg = client.instances[("billing", "b-1")]

    assert [e["instance"] for e in events(caplog, "deregister_on_close_failed")] == ["b-1"]
    assert reg.state is not RegistrationState.DEREGISTERED
    assert fake.is_closed


async def test_watch_subscribes_to_the_service_events() -> None:
    fake = scripted()
    async with make_client(fake) as client:
        stream = client.watch("orders")
        every = client.watch()

    assert isinstance(stream, EventStream)
    assert (stream.subject, every.subject) == ("ipc.events.service.orders", "ipc.events.service.*")


async def test_not_connected_says_how() -> None:
    fake = scripted()
    client = make_client(fake)

    with pytest.raises(ServiceUnavailableError, match="async with") as register_info:
        await client.register("billing", "b-1")
    with pytest.raises(ServiceUnavailableError, match="async with"):
        client.watch("orders")
    assert register_info.value.code == "NOT_CONNECTED"
    assert not isinstance(register_info.value, CircuitOpenError)
    assert fake.calls == []


async def test_connect_passes_the_urls_name_and_config() -> None:
    fake = scripted()
    client = ServiceClient(
        "nats://a:4222,nats://b:4222",
        ClientConfig(retries=1),
        name="billing-svc",
        connect=fake.connect,
    )
    await client.connect()
    await client.connect()  # already connected: nothing more
    await client.close()

    options = fake.connect_options
    assert fake.connects == 1
    assert (options["servers"], options["name"], options["attempts"]) == (
        "nats://a:4222,nats://b:4222",
        "billing-svc",
        2,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connect_to_unreachable_server_is_503() -> None:
    config = ClientConfig(retries=1, backoff_base=0.01, connect_timeout=0.5)
    client = ServiceClient(f"nats://127.0.0.1:{closed_port()}", config)
    with pytest.raises(ServiceUnavailableError) as info:
        await client.connect()
    assert (info.value.status_code, info.value.code) == (503, "NATS_UNREACHABLE")
