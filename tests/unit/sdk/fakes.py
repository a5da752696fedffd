"""Shared fakes for the SDK unit tests: a scripted NATS connection and a client wired to it."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest
from aegis.sdk import ClientConfig, ServiceClient
from aegis.wire.messages import REQUEST_ID_HEADER
from nats.errors import NoRespondersError

from tests.support import FakeClock
from tests.support.wire import instance_body

INSTANCE = {**instance_body("billing", "b-1"), "metadata": {"v": "1"}}
HANG = object()  # an outcome: the request never gets a reply
# An outcome: the reply arrives as the request is cancelled, and the cancellation
# is lost (as Python 3.11's asyncio.wait_for, which nats-py uses, can lose it).
SWALLOW = object()


def reply(status: int, **members: Any) -> bytes:
    """A router reply body."""
    return msgpack.packb({"ok": 200 <= status < 300, "status": status, **members})


def error(status: int, code: str, **members: Any) -> bytes:
    """A failed router reply body with ``error.code`` ``code``."""
    return reply(status, error={"code": code, "message": f"{code} happened"}, **members)


CREATED = reply(201, instance=INSTANCE, heartbeat_interval=2.0)


def created(body: dict[str, Any]) -> bytes:
    """A 201 for whichever instance ``body`` registers (heartbeat interval 2 s)."""
    instance = instance_body(body["service_name"], body["instance_id"])
    return reply(
        201, instance={**instance, "metadata": body.get("metadata", {})}, heartbeat_interval=2.0
    )


ALIVE = reply(200, instance=INSTANCE)
NOT_FOUND = error(404, "INSTANCE_NOT_FOUND")
FORBIDDEN = error(403, "SESSION_MISMATCH")
TAKEN = error(409, "DUPLICATE_INSTANCE", existing=INSTANCE, retry_after=3.0)


@dataclass
class Call:
    """One request the fake received."""

    subject: str
    body: Any  # the unpacked payload, or the raw bytes if not MessagePack
    timeout: float
    request_id: str


class FakeNats:
    """A NATS connection that answers each subject from a script; records every request.

    ``answer(subject, *outcomes)``: replies (bytes), exceptions to raise,
    ``HANG``, or a function of the request body giving one of those; used in
    order, the last one repeats. A subject with no script
    has no responders, as on a NATS server with no router.
    """

    def __init__(self) -> None:
        self.script: dict[str, list[object]] = {}
        self.calls: list[Call] = []
        self.is_closed = False
        self.connect_options: dict[str, Any] = {}
        self.connects = 0
        self.requested = asyncio.Event()

    def answer(self, subject: str, *outcomes: object) -> FakeNats:
        self.script[subject] = list(outcomes)
        return self

    def sent(self, subject: str) -> list[Any]:
        """The bodies sent on ``subject``, in order."""
        return [call.body for call in self.calls if call.subject == subject]

    async def connect(self, servers: object, **options: Any) -> FakeNats:
        """Stands in for ``aegis.connect.connection.connect``."""
        self.connect_options = {"servers": servers, **options}
        self.connects += 1
        self.is_closed = False
        return self

    async def reconnect(self) -> None:
        """What nats-py does after it got the connection back."""
        await self.connect_options["reconnected_cb"]()

    async def request(
        self, subject: str, payload: bytes, timeout: float, *, headers: dict[str, str] | None
    ) -> SimpleNamespace:
        try:
            body = msgpack.unpackb(payload)
        except ValueError:
            body = payload
        self.calls.append(Call(subject, body, timeout, (headers or {})[REQUEST_ID_HEADER]))
        self.requested.set()
        outcomes = self.script.get(subject)
        if outcomes is None:
            raise NoRespondersError
        outcome = outcomes.pop(0) if len(outcomes) > 1 else outcomes[0]
        if callable(outcome):
            outcome = outcome(body)
        if outcome is HANG:
            await asyncio.Event().wait()
        if outcome is SWALLOW:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()
            outcome = reply(200, instance=INSTANCE)
        if isinstance(outcome, BaseException):
            raise outcome
        return SimpleNamespace(data=outcome)

    async def subscribe(self, subject: str, *, cb: Any) -> SimpleNamespace:
        async def unsubscribe() -> None:
            pass

        return SimpleNamespace(subject=subject, cb=cb, unsubscribe=unsubscribe)

    async def flush(self) -> None:
        pass

    async def drain(self) -> None:
        self.is_closed = True


def make_client(
    fake: FakeNats, clock: FakeClock | None = None, *, draw: float = 0.5, **config: Any
) -> ServiceClient:
    """A ServiceClient on ``fake``, its time on ``clock``, its jitter draws all ``draw``."""
    clock = clock or FakeClock()
    config.setdefault("backoff_base", 0)
    # The scripts of these tests answer the v1 shared subjects; the per-service ones
    # (the default) have their own tests (test_transport_permissions.py).
    config.setdefault("shared_subjects", True)
    return ServiceClient(
        config=ClientConfig(**config),
        connect=fake.connect,
        sleep=clock.sleep,
        clock=clock,
        monotonic=clock.monotonic,
        rand=lambda: draw,
    )


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, object]]:
    """The fields of each SDK log event called ``name``."""
    return [
        r.aegis_fields  # type: ignore[attr-defined]
        for r in caplog.records
        if getattr(r, "aegis_event", None) == name
    ]
