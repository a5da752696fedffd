"""ServiceClient against a fake NATS connection: retries, error mapping, circuit breaker."""

from __future__ import annotations

import asyncio
import socket
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest
from aegis.sdk import (
    AegisError,
    CircuitOpenError,
    ClientConfig,
    DuplicateInstanceError,
    ErrorDetail,
    Instance,
    RegistrationValidationError,
    RequestTimeoutError,
    RouterError,
    ServiceClient,
    ServiceUnavailableError,
)
from nats import errors as nats_errors

INSTANCE = {
    "service_name": "billing",
    "instance_id": "b-1",
    "status": "ONLINE",
    "metadata": {"v": "1"},
    "registered_at": "2026-01-01T00:00:00.000Z",
    "last_heartbeat_at": "2026-01-01T00:00:00.000Z",
}
HANG = object()


def reply(status: int, **members: Any) -> bytes:
    return msgpack.packb({"ok": 200 <= status < 300, "status": status, **members})


def error(status: int, code: str, **members: Any) -> bytes:
    return reply(status, error={"code": code, "message": f"{code} happened"}, **members)


CREATED = reply(201, instance=INSTANCE)


class FakeNats:
    """Answers requests from a script of outcomes; the last one repeats."""

    def __init__(self, *outcomes: object) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[tuple[str, bytes, float]] = []
        self.is_closed = False
        self.requested = asyncio.Event()

    async def request(
        self, subject: str, payload: bytes, timeout: float, headers: dict[str, str] | None = None
    ) -> SimpleNamespace:
        self.headers = headers
        self.calls.append((subject, payload, timeout))
        self.requested.set()
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if outcome is HANG:
            await asyncio.Event().wait()
        if isinstance(outcome, BaseException):
            raise outcome
        return SimpleNamespace(data=outcome)

    async def drain(self) -> None:
        self.is_closed = True


def make_client(*outcomes: object, **config: Any) -> tuple[ServiceClient, FakeNats]:
    config.setdefault("backoff_base", 0)
    client = ServiceClient(config=ClientConfig(**config))
    fake = FakeNats(*outcomes)
    client._nc = fake  # type: ignore[assignment]
    return client, fake


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record backoff delays instead of sleeping."""
    delays: list[float] = []

    async def fake_sleep(delay: float) -> None:
        delays.append(delay)

    monkeypatch.setattr("aegis.sdk.client.asyncio.sleep", fake_sleep)
    return delays


async def test_register_returns_instance_and_sends_contract_body() -> None:
    client, fake = make_client(CREATED, timeout=1.5)
    instance = await client.register("billing", "b-1", {"v": "1"})
    assert instance == Instance.model_validate(INSTANCE)

    [(subject, payload, timeout)] = fake.calls
    assert (subject, timeout) == ("ipc.service.register", 1.5)
    sent = msgpack.unpackb(payload)
    assert set(sent) == {"service_name", "instance_id", "metadata", "timestamp", "session_id"}
    assert (sent["service_name"], sent["instance_id"], sent["metadata"]) == (
        "billing",
        "b-1",
        {"v": "1"},
    )
    assert sent["session_id"] == client.session_id
    assert datetime.fromisoformat(sent["timestamp"]).utcoffset() is not None


async def test_one_session_per_client() -> None:
    client, fake = make_client(CREATED)
    await client.register("billing", "b-1")
    await client.register("billing", "b-2")
    sessions = {msgpack.unpackb(payload)["session_id"] for _, payload, _ in fake.calls}
    assert sessions == {client.session_id}
    assert ServiceClient().session_id != client.session_id


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
async def test_transport_failure_is_retried_with_backoff(
    failure: Exception, sleeps: list[float]
) -> None:
    client, fake = make_client(failure, failure, CREATED, backoff_base=0.1, jitter=False)
    assert (await client.register("billing", "b-1")).instance_id == "b-1"
    assert len(fake.calls) == 3
    assert sleeps == pytest.approx([0.1, 0.2])


@pytest.mark.parametrize(
    ("failure", "error_type", "status", "code"),
    TRANSPORT_FAILURES.values(),
    ids=TRANSPORT_FAILURES.keys(),
)
async def test_exhausted_retries_raise_typed_error(
    failure: Exception, error_type: type[AegisError], status: int, code: str
) -> None:
    client, fake = make_client(failure, retries=2)
    with pytest.raises(error_type) as info:
        await client.register("billing", "b-1")
    assert (info.value.status_code, info.value.code) == (status, code)
    assert len(fake.calls) == 3


@pytest.mark.parametrize(
    "answer",
    [
        error(400, "VALIDATION_ERROR"),
        error(409, "DUPLICATE_INSTANCE"),
        error(500, "INTERNAL_ERROR"),
    ],
)
async def test_error_replies_are_not_retried(answer: bytes) -> None:
    client, fake = make_client(answer, CREATED)
    with pytest.raises(AegisError):
        await client.register("billing", "b-1")
    assert len(fake.calls) == 1


async def test_store_unavailable_is_retried_like_a_lost_reply() -> None:
    client, fake = make_client(error(503, "STORE_UNAVAILABLE"), CREATED)
    instance = await client.register("billing", "b-1")
    assert instance.instance_id == "b-1"
    assert len(fake.calls) == 2


async def test_store_unavailable_after_every_retry_is_503() -> None:
    client, fake = make_client(error(503, "STORE_UNAVAILABLE"), retries=2)
    with pytest.raises(ServiceUnavailableError) as info:
        await client.register("billing", "b-1")
    assert (info.value.status_code, info.value.code) == (503, "STORE_UNAVAILABLE")
    assert len(fake.calls) == 3


async def test_409_raises_duplicate_with_existing() -> None:
    client, _ = make_client(error(409, "DUPLICATE_INSTANCE", existing=INSTANCE))
    with pytest.raises(DuplicateInstanceError) as info:
        await client.register("billing", "b-1")
    assert (info.value.status_code, info.value.code) == (409, "DUPLICATE_INSTANCE")
    assert info.value.existing == Instance.model_validate(INSTANCE)


async def test_400_raises_validation_error_with_details() -> None:
    details = [{"loc": ["metadata"], "msg": "too big", "type": "value_error"}]
    answer = reply(400, error={"code": "VALIDATION_ERROR", "message": "bad", "details": details})
    client, _ = make_client(answer)
    with pytest.raises(RegistrationValidationError) as info:
        await client.register("billing", "b-1")
    assert info.value.status_code == 400
    assert info.value.details == [ErrorDetail(loc=["metadata"], msg="too big", type="value_error")]


@pytest.mark.parametrize(
    ("answer", "error_type", "status"),
    [
        (error(503, "STORE_UNAVAILABLE"), ServiceUnavailableError, 503),
        (error(500, "INTERNAL_ERROR"), RouterError, 500),
        (error(413, "PAYLOAD_TOO_LARGE"), RouterError, 413),
        (b"\xc1\xc1", RouterError, 502),
        (msgpack.packb([1, 2]), RouterError, 502),
        (msgpack.packb({"ok": "perhaps"}), RouterError, 502),
        (reply(201), RouterError, 502),
    ],
    ids=["503", "500", "413", "garbage", "array", "bad-envelope", "201-without-instance"],
)
async def test_reply_mapping(answer: bytes, error_type: type[AegisError], status: int) -> None:
    client, _ = make_client(answer)
    with pytest.raises(error_type) as info:
        await client.register("billing", "b-1")
    assert info.value.status_code == status


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
    client, fake = make_client(CREATED)
    with pytest.raises(RegistrationValidationError) as info:
        await client.register(service, instance, metadata)
    assert info.value.details
    assert fake.calls == []


async def test_circuit_opens_after_threshold_failed_calls() -> None:
    client, fake = make_client(nats_errors.NoRespondersError(), retries=1, breaker_threshold=2)
    for _ in range(2):
        with pytest.raises(ServiceUnavailableError):
            await client.register("billing", "b-1")
    calls = len(fake.calls)
    with pytest.raises(CircuitOpenError) as info:
        await client.register("billing", "b-1")
    assert info.value.status_code == 503
    assert len(fake.calls) == calls == 4


async def test_cancelled_trial_does_not_wedge_the_breaker() -> None:
    # Cooldown 0: once open, every call may be a half-open trial.
    client, fake = make_client(
        nats_errors.NoRespondersError(),
        HANG,
        CREATED,
        retries=0,
        breaker_threshold=1,
        breaker_cooldown=0,
    )
    with pytest.raises(ServiceUnavailableError):
        await client.register("billing", "b-1")
    fake.requested.clear()
    trial = asyncio.create_task(client.register("billing", "b-1"))
    await fake.requested.wait()
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    # The caller gave up on the trial (e.g. asyncio.timeout); the next call must get through.
    assert (await client.register("billing", "b-1")).instance_id == "b-1"


@pytest.mark.parametrize("closed", [False, True])
async def test_not_connected(closed: bool) -> None:
    client = ServiceClient(config=ClientConfig(backoff_base=0))
    fake = FakeNats(CREATED)
    fake.is_closed = closed
    if closed:
        client._nc = fake  # type: ignore[assignment]
    with pytest.raises(ServiceUnavailableError) as info:
        await client.register("billing", "b-1")
    assert info.value.status_code == 503
    assert fake.calls == []


async def test_context_manager_keeps_open_connection_and_drains_on_exit() -> None:
    client, fake = make_client(CREATED)
    async with client as entered:
        assert entered is client
        await client.register("billing", "b-1")
    assert fake.is_closed
    assert client._nc is None


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
    assert info.value.status_code == 503
    assert not isinstance(info.value, CircuitOpenError)
