"""The per-service subjects the SDK uses by default, and a NATS permissions violation
turned into ``PermissionDeniedError`` at once: never a timeout, a retry, or a breaker
failure.

nats-py reports the server's ``-ERR 'Permissions Violation for Publish to "<subject>"'``
only through the connection's error callback, lowercased, while the request waits for a
reply that never comes; ``DenyingNats`` does the same.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest
from aegis.sdk import ClientConfig, PermissionDeniedError, ServiceClient, ServiceUnavailableError
from aegis.sdk.transport import denied_subject
from nats import errors as nats_errors

from tests.support import FakeClock, eventually
from tests.unit.sdk.fakes import (
    ALIVE,
    HANG,
    INSTANCE,
    Call,
    FakeNats,
    created,
    events,
    make_client,
    reply,
)

OWN = {verb: f"ipc.svc.billing.{verb}" for verb in ("register", "heartbeat", "deregister")}
DIRECT = "ipc.svc.billing.heartbeat.r-1"


class DenyingNats(FakeNats):
    """A NATS server that refuses to carry publishes on ``denied`` subjects, saying so the
    way nats-py passes it on: later, to the error callback, lowercased."""

    def __init__(self, *denied: str) -> None:
        super().__init__()
        self.denied = set(denied)
        self.reported: list[asyncio.Future[None]] = []

    async def request(
        self, subject: str, payload: bytes, timeout: float, *, headers: dict[str, str] | None
    ) -> SimpleNamespace:
        if subject not in self.denied:
            return await super().request(subject, payload, timeout, headers=headers)
        self.calls.append(Call(subject, None, timeout, ""))
        line = f'Permissions Violation for Publish to "{subject}"'.lower()
        error_cb = self.connect_options["error_cb"]

        def report() -> None:
            self.reported.append(
                asyncio.ensure_future(error_cb(nats_errors.Error(f"nats: {line}")))
            )

        asyncio.get_running_loop().call_later(0.01, report)
        await asyncio.sleep(timeout)  # the reply that never comes
        raise nats_errors.TimeoutError


def per_service(fake: FakeNats, clock: FakeClock | None = None, **config: Any) -> ServiceClient:
    return make_client(fake, clock, shared_subjects=False, **config)


def test_denied_subject_reads_what_nats_py_hands_the_error_callback() -> None:
    lowered = 'nats: permissions violation for publish to "ipc.svc.billing.register"'
    assert denied_subject(nats_errors.Error(lowered)) == "ipc.svc.billing.register"
    assert denied_subject(Exception('Permissions Violation for Publish to "a.b"')) == "a.b"
    subscribe = 'nats: permissions violation for subscription to "ipc.svc.>"'
    assert denied_subject(nats_errors.Error(subscribe)) is None
    assert denied_subject(nats_errors.StaleConnectionError()) is None


async def test_requests_go_on_the_services_own_subjects_by_default() -> None:
    fake = FakeNats().answer(OWN["register"], created).answer(OWN["heartbeat"], ALIVE, HANG)
    fake.answer(OWN["deregister"], reply(200, instance=INSTANCE))
    fake.answer("ipc.svc.checkout.discover", reply(200, instances=[]))
    assert ClientConfig().shared_subjects is False
    async with per_service(fake) as client:
        await client.register("billing", "b-1")
        await eventually(lambda: fake.sent(OWN["heartbeat"]), "a heartbeat")
        await client.discover("checkout")
        await client.deregister("billing", "b-1")

    assert [c.subject for c in fake.calls if not c.subject.endswith("heartbeat")] == [
        OWN["register"],
        "ipc.svc.checkout.discover",
        OWN["deregister"],
    ]
    assert not [c for c in fake.calls if c.subject.startswith("ipc.service.")]


async def test_a_refused_registration_fails_at_once_naming_the_subject_and_is_not_retried() -> None:
    fake = DenyingNats("ipc.svc.checkout.register")
    async with per_service(fake, timeout=30.0, retries=3) as client:
        started = time.monotonic()
        with pytest.raises(PermissionDeniedError) as caught:
            await client.register("checkout", "c-1")
        took = time.monotonic() - started

    error = caught.value
    assert took < 5  # the error callback's word, not the 30 s timeout
    assert (error.status_code, error.code, error.subject) == (
        403,
        "PERMISSION_DENIED",
        "ipc.svc.checkout.register",
    )
    assert "ipc.svc.checkout.register" in str(error)
    assert "'checkout'" in str(error)
    assert len(fake.sent("ipc.svc.checkout.register")) == 1  # no retries
    assert client.instances == {}


async def test_refusals_do_not_open_the_circuit_breaker() -> None:
    fake = DenyingNats("ipc.svc.checkout.register").answer(OWN["register"], created)
    fake.answer(OWN["heartbeat"], HANG)
    async with per_service(fake, breaker_threshold=2) as client:
        for _ in range(4):
            with pytest.raises(PermissionDeniedError):
                await client.register("checkout", "c-1")
        instance = await client.register("billing", "b-1")  # the router is fine

    assert instance.instance_id == "b-1"


async def test_a_refusal_fails_only_the_requests_waiting_on_its_subject(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = DenyingNats("ipc.svc.checkout.register")
    fake.answer(OWN["register"], created).answer(OWN["heartbeat"], HANG)
    async with per_service(fake) as client:
        results = await asyncio.gather(
            client.register("checkout", "c-1"),
            client.register("billing", "b-1"),
            return_exceptions=True,
        )

    denied, allowed = results
    assert isinstance(denied, PermissionDeniedError)
    assert not isinstance(allowed, BaseException)
    assert allowed.instance_id == "b-1"
    [said] = events(caplog, "nats_permission_denied")
    assert said["subject"] == "ipc.svc.checkout.register"


async def test_a_refused_lease_holder_subject_falls_back_to_the_services_own_for_good() -> None:
    clock = FakeClock()
    fake = DenyingNats(DIRECT).answer(
        OWN["register"],
        reply(201, instance=INSTANCE, heartbeat_interval=2.0, heartbeat_subject=DIRECT),
    )
    fake.answer(OWN["heartbeat"], reply(200, instance=INSTANCE, heartbeat_subject=DIRECT))
    async with per_service(fake, clock, timeout=0.5) as client:
        await client.register("billing", "b-1")
        await eventually(lambda: len(fake.sent(OWN["heartbeat"])) >= 3, "three heartbeats")
        [reg] = client.instances.values()

    assert len(fake.sent(DIRECT)) == 1  # refused once, not tried again
    assert reg.failures == 0


async def test_no_responders_on_a_per_service_subject_says_how_to_reach_an_older_router() -> None:
    async with per_service(FakeNats(), retries=0) as client:
        with pytest.raises(ServiceUnavailableError) as caught:
            await client.discover("billing")

    assert caught.value.code == "NO_RESPONDERS"
    assert "ipc.svc.billing.discover" in str(caught.value)
    assert "shared_subjects=True" in str(caught.value)


async def test_shared_subjects_reach_an_older_router_on_ipc_service() -> None:
    fake = FakeNats().answer("ipc.service.discover", reply(200, instances=[]))
    async with make_client(fake, shared_subjects=True) as client:
        assert await client.discover("billing") == []
    assert [c.subject for c in fake.calls] == ["ipc.service.discover"]
