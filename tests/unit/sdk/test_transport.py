"""The transport against a scripted NATS connection: retries, request ids, breaker, errors."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest
from aegis.connect.connection import ConnectFailedError, ConnectRejectedError
from aegis.sdk import (
    AegisError,
    CircuitOpenError,
    ClientConfig,
    DuplicateInstanceError,
    RegistrationValidationError,
    RequestTimeoutError,
    RouterError,
    ServiceUnavailableError,
)
from aegis.sdk.transport import Transport
from aegis.wire.messages import (
    REGISTER,
    REGISTER_SUBJECT,
    InstanceRequest,
    RegisterRequest,
    service_subject,
)
from nats import errors as nats_errors

from tests.support import FakeClock
from tests.unit.sdk.fakes import CREATED, HANG, FakeNats, error

BODY = RegisterRequest(service_name="billing", instance_id="b-1", session_id="s")


async def on(fake: FakeNats, clock: FakeClock | None = None, **config: Any) -> Transport:
    """A transport connected to ``fake``, sleeping on ``clock``, drawing 0.5 for jitter."""
    clock = clock or FakeClock()
    config.setdefault("backoff_base", 0)
    transport = Transport(
        ClientConfig(**config),
        connect=fake.connect,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        rand=lambda: 0.5,
    )
    await transport.open("nats://fake:4222", name="test", on_reconnect=_nothing)
    return transport


async def _nothing() -> None:
    pass


async def register(transport: Transport) -> int:
    return (await transport.request(REGISTER_SUBJECT, BODY)).status


async def test_sends_the_packed_body_with_the_configured_timeout() -> None:
    fake = FakeNats().answer(REGISTER_SUBJECT, CREATED)
    transport = await on(fake, timeout=1.5)

    assert await register(transport) == 201
    [call] = fake.calls
    assert (call.subject, call.timeout) == (REGISTER_SUBJECT, 1.5)
    assert call.body == {
        "service_name": "billing",
        "instance_id": "b-1",
        "metadata": {},
        "session_id": "s",
    }


async def test_open_passes_the_config_to_the_connector() -> None:
    fake = FakeNats()
    await on(fake, retries=4, connect_timeout=0.7, backoff_base=0.2, backoff_max=3.0)

    options = fake.connect_options
    assert (options["servers"], options["name"], options["attempts"]) == (
        "nats://fake:4222",
        "test",
        5,
    )
    assert (options["connect_timeout"], options["backoff_base"], options["backoff_max"]) == (
        0.7,
        0.2,
        3.0,
    )


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (ConnectFailedError("nobody there"), "NATS_UNREACHABLE"),
        (ConnectRejectedError("authorization violation"), "NATS_AUTH_FAILED"),
    ],
)
async def test_a_connection_it_cannot_get_is_503(failure: Exception, code: str) -> None:
    async def connector(servers: object, **options: object) -> FakeNats:
        raise failure

    transport = Transport(ClientConfig(), connect=connector)
    with pytest.raises(ServiceUnavailableError) as info:
        await transport.open("nats://x", name="t", on_reconnect=_nothing)
    assert (info.value.status_code, info.value.code) == (503, code)
    assert str(failure) in str(info.value)


# failure raised by nc.request -> (SDK error once retries are exhausted, status_code, code)
TRANSPORT_FAILURES: dict[str, tuple[Exception, type[AegisError], int, str]] = {
    "no-responders": (
        nats_errors.NoRespondersError(),
        ServiceUnavailableError,
        503,
        "NO_RESPONDERS",
    ),
    "nats-timeout": (nats_errors.TimeoutError(), RequestTimeoutError, 504, "TIMEOUT"),
    "timeout": (TimeoutError(), RequestTimeoutError, 504, "TIMEOUT"),
    "closed": (nats_errors.ConnectionClosedError(), ServiceUnavailableError, 503, "NATS"),
}


@pytest.mark.parametrize(
    "failure", [f for f, *_ in TRANSPORT_FAILURES.values()], ids=TRANSPORT_FAILURES.keys()
)
async def test_transport_failure_is_retried_with_backoff(failure: Exception) -> None:
    clock = FakeClock()
    fake = FakeNats().answer(REGISTER_SUBJECT, failure, failure, CREATED)
    transport = await on(fake, clock, backoff_base=0.1, jitter=False)

    assert await register(transport) == 201
    assert len(fake.calls) == 3
    assert clock.sleeps == pytest.approx([0.1, 0.2])


async def test_jitter_draws_below_the_exponential_delay() -> None:
    clock = FakeClock()
    fake = FakeNats().answer(REGISTER_SUBJECT, TimeoutError(), TimeoutError(), CREATED)
    transport = await on(fake, clock, backoff_base=0.1, jitter=True)

    await register(transport)
    assert clock.sleeps == pytest.approx([0.05, 0.1])  # the draws are all 0.5


async def test_every_retry_of_one_call_carries_the_same_request_id() -> None:
    fake = FakeNats().answer(REGISTER_SUBJECT, TimeoutError(), TimeoutError(), CREATED)
    transport = await on(fake)

    await register(transport)
    await register(transport)
    ids = [call.request_id for call in fake.calls]
    assert len(ids) == 4
    assert ids[0] == ids[1] == ids[2] != ids[3]


@pytest.mark.parametrize(
    ("failure", "error_type", "status", "code"),
    TRANSPORT_FAILURES.values(),
    ids=TRANSPORT_FAILURES.keys(),
)
async def test_exhausted_retries_raise_typed_error(
    failure: Exception, error_type: type[AegisError], status: int, code: str
) -> None:
    fake = FakeNats().answer(REGISTER_SUBJECT, failure)
    transport = await on(fake, retries=2)

    with pytest.raises(error_type) as info:
        await register(transport)
    assert (info.value.status_code, info.value.code) == (status, code)
    assert len(fake.calls) == 3


@pytest.mark.parametrize(
    ("answer", "error_type"),
    [
        (error(400, "VALIDATION_ERROR"), RegistrationValidationError),
        (error(409, "DUPLICATE_INSTANCE"), DuplicateInstanceError),
        (error(500, "INTERNAL_ERROR"), RouterError),
    ],
)
async def test_error_replies_are_raised_not_retried(
    answer: bytes, error_type: type[AegisError]
) -> None:
    fake = FakeNats().answer(REGISTER_SUBJECT, answer, CREATED)
    transport = await on(fake)

    with pytest.raises(error_type):
        await register(transport)
    assert len(fake.calls) == 1


async def test_store_unavailable_is_retried_like_a_lost_reply() -> None:
    fake = FakeNats().answer(REGISTER_SUBJECT, error(503, "STORE_UNAVAILABLE"), CREATED)
    transport = await on(fake)

    assert await register(transport) == 201
    assert len(fake.calls) == 2


async def test_store_unavailable_after_every_retry_is_503() -> None:
    fake = FakeNats().answer(REGISTER_SUBJECT, error(503, "STORE_UNAVAILABLE"))
    transport = await on(fake, retries=2)

    with pytest.raises(ServiceUnavailableError) as info:
        await register(transport)
    assert (info.value.status_code, info.value.code) == (503, "STORE_UNAVAILABLE")
    assert len(fake.calls) == 3


async def test_overloaded_is_retried_after_the_routers_advice_with_jitter() -> None:
    clock = FakeClock()
    busy = error(503, "OVERLOADED", retry_after=4.0)
    fake = FakeNats().answer(REGISTER_SUBJECT, busy, busy, CREATED)
    transport = await on(fake, clock)

    assert await register(transport) == 201
    # 4 s times 1 to 1.1 (the draw is 0.5: 1.05), not the backoff's 0 s.
    assert clock.sleeps == pytest.approx([4.2, 4.2])


async def test_overloaded_after_every_retry_says_when_and_leaves_the_breaker_closed() -> None:
    fake = FakeNats().answer(REGISTER_SUBJECT, error(503, "OVERLOADED", retry_after=2.0))
    transport = await on(fake, retries=1, breaker_threshold=1)

    for _ in range(2):
        with pytest.raises(ServiceUnavailableError) as info:
            await register(transport)
        assert (info.value.code, info.value.retry_after) == ("OVERLOADED", 2.0)
    assert len(fake.calls) == 4, "a busy router is no reason to fail fast"


@pytest.mark.parametrize(
    "answer",
    [b"\xc1\xc1", msgpack.packb([1, 2]), msgpack.packb({"ok": "perhaps"})],
    ids=["garbage", "array", "bad-envelope"],
)
async def test_an_undecodable_reply_is_502(answer: bytes) -> None:
    fake = FakeNats().answer(REGISTER_SUBJECT, answer)
    transport = await on(fake)

    with pytest.raises(RouterError) as info:
        await register(transport)
    assert info.value.status_code == 502
    assert "undecodable" in str(info.value)


async def test_send_is_one_try_and_leaves_the_reply_unchecked() -> None:
    fake = FakeNats().answer(REGISTER_SUBJECT, error(404, "INSTANCE_NOT_FOUND"))
    transport = await on(fake)
    owner = InstanceRequest(service_name="billing", instance_id="b-1", session_id="s")

    answered = await transport.send(REGISTER_SUBJECT, owner, 0.25)
    assert (answered.ok, answered.status) == (False, 404)
    assert [call.timeout for call in fake.calls] == [0.25]


@pytest.mark.parametrize("subject", [REGISTER_SUBJECT, service_subject("billing", REGISTER)])
async def test_no_router_listening_asks_first_whether_one_runs(subject: str) -> None:
    # A router restarting is the common case: the message named only an older router.
    fake = FakeNats().answer(subject, nats_errors.NoRespondersError())
    transport = await on(fake, retries=0)
    with pytest.raises(ServiceUnavailableError) as info:
        await transport.request(subject, BODY)
    assert str(info.value).startswith(f"no router is listening on {subject} (is one running?")


async def test_circuit_opens_after_threshold_failed_calls() -> None:
    fake = FakeNats().answer(REGISTER_SUBJECT, nats_errors.NoRespondersError())
    transport = await on(fake, retries=1, breaker_threshold=2)

    for _ in range(2):
        with pytest.raises(ServiceUnavailableError):
            await register(transport)
    calls = len(fake.calls)
    with pytest.raises(CircuitOpenError) as info:
        await register(transport)
    assert info.value.status_code == 503
    assert len(fake.calls) == calls == 4


async def test_the_breaker_lets_a_trial_through_after_its_cooldown() -> None:
    clock = FakeClock()
    fake = FakeNats().answer(REGISTER_SUBJECT, nats_errors.NoRespondersError(), CREATED)
    transport = await on(fake, clock, retries=0, breaker_threshold=1, breaker_cooldown=30)
    with pytest.raises(ServiceUnavailableError):
        await register(transport)
    with pytest.raises(CircuitOpenError, match=r"next try in 30\.0s"):
        await register(transport)

    clock.advance(30)
    assert await register(transport) == 201


async def test_cancelled_trial_does_not_wedge_the_breaker() -> None:
    # Cooldown 0: once open, every call may be a half-open trial.
    fake = FakeNats().answer(REGISTER_SUBJECT, nats_errors.NoRespondersError(), HANG, CREATED)
    transport = await on(fake, retries=0, breaker_threshold=1, breaker_cooldown=0)
    with pytest.raises(ServiceUnavailableError):
        await register(transport)
    fake.requested.clear()
    trial = asyncio.create_task(register(transport))
    await fake.requested.wait()
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    # The caller gave up on the trial (e.g. asyncio.timeout); the next call must get through.
    assert await register(transport) == 201


@pytest.mark.parametrize("closed", [False, True], ids=["never-opened", "closed"])
async def test_not_connected_fails_at_once(closed: bool) -> None:
    fake = FakeNats().answer(REGISTER_SUBJECT, CREATED)
    transport = Transport(ClientConfig(), connect=fake.connect)
    if closed:
        await transport.open("nats://x", name="t", on_reconnect=_nothing)
        await transport.close()

    with pytest.raises(ServiceUnavailableError, match="async with") as info:
        await register(transport)
    assert info.value.code == "NOT_CONNECTED"
    assert fake.calls == []
    assert fake.is_closed is closed
