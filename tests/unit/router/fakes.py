"""Fakes the router's unit tests share: an event sink that keeps events, the
requests, records and registry (on a FakeClock) they start from, and what they
read back."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import msgpack
from aegis.router.domain import InstanceKey, InstanceRecord, Timings
from aegis.router.registry.expiry_budget import ExpiryBudget
from aegis.router.registry.operations import Registry
from aegis.router.store.port import MemoryStore, Versioned
from aegis.wire.messages import ChangeEvent, InstanceStatus, RegisterRequest

from tests.support import T0, FakeClock

SESSION = "sess-Liveness-4xQ9"  # distinctive, so a leak into logs or replies is easy to spot
OTHER_SESSION = "sess-Intruder-7kP2"
# Distinct, fractional where it matters: heartbeat 2.5, UNHEALTHY 10, OFFLINE 20, removed 100.
TIMINGS = Timings(heartbeat_interval=2.5, unhealthy_after=10, offline_after=20, remove_after=100)
# The deadline index hands a key out at most one resolution (0.05 s) after its deadline.
LATE = 0.1
KEY = InstanceKey("billing", "b-1")  # register_request()'s
ONLINE, UNHEALTHY, OFFLINE = InstanceStatus.ONLINE, InstanceStatus.UNHEALTHY, InstanceStatus.OFFLINE


class ListSink:
    """An EventSink that keeps every event."""

    def __init__(self) -> None:
        self.events: list[ChangeEvent] = []

    async def publish(self, service_name: str, event: dict[str, Any], data: bytes) -> None:
        # Through the model: what a subscriber decodes, checked against the contract.
        self.events.append(ChangeEvent.model_validate(msgpack.unpackb(data)))
        assert msgpack.unpackb(data) == event
        assert self.events[-1].instance.service_name == service_name

    def summary(self) -> list[tuple[str, str, str | None]]:
        """(event, instance status, previous status) of each event, in order."""
        return [
            (e.event.value, e.instance.status.value, e.previous_status and e.previous_status.value)
            for e in self.events
        ]


def register_request(
    instance: str = "b-1", session: str | None = SESSION, service: str = "billing"
) -> RegisterRequest:
    return RegisterRequest(
        service_name=service, instance_id=instance, session_id=session, metadata={"v": 1}
    )


def register_body(service: str, instance: str, session: str = "s") -> bytes:
    """A register request as it comes off the wire."""
    return msgpack.packb({"service_name": service, "instance_id": instance, "session_id": session})


def stored(
    instance: str,
    status: InstanceStatus,
    service: str = "billing",
    session: str | None = SESSION,
    at: datetime = T0,
) -> InstanceRecord:
    return InstanceRecord(service, instance, status, {}, at, at, session)


def make_registry(
    store: MemoryStore | None = None, expiry_budget: ExpiryBudget | None = None
) -> tuple[Registry, FakeClock, ListSink, MemoryStore]:
    store = store if store is not None else MemoryStore()
    clock, sink = FakeClock(), ListSink()
    registry = Registry(store, TIMINGS, sink, clock=clock, expiry_budget=expiry_budget)
    return registry, clock, sink, store


async def current(store: MemoryStore, key: InstanceKey = KEY) -> InstanceRecord | None:
    """The record ``store`` holds for ``key``, if any."""
    found = await store.get(key)
    return found.record if found else None


async def status_of(store: MemoryStore, key: InstanceKey = KEY) -> InstanceStatus:
    """The status of the record ``store`` holds for ``key`` (there must be one)."""
    record = await current(store, key)
    assert record is not None
    return record.status


async def sweep_at(registry: Registry, clock: FakeClock, seconds: float) -> int:
    """Sweep with the clock ``seconds`` past its start; how many changed."""
    clock.at(seconds)
    return await registry.liveness.sweep()


class RoundTrips(MemoryStore):
    """Records each call a networked store would make a round trip for.

    ``stale`` makes ``peek`` answer as a router whose cache lags behind would.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.stale: dict[InstanceKey, Versioned | None] = {}
        self.in_flight = self.most_in_flight = 0

    def peek(self, key: InstanceKey) -> Versioned | None:
        return self.stale[key] if key in self.stale else super().peek(key)

    async def get(self, key: InstanceKey) -> Versioned | None:
        self.calls.append("get")
        return super().peek(key)

    async def create(self, rec: InstanceRecord) -> int:
        self.calls.append("create")
        return await super().create(rec)

    async def update(self, rec: InstanceRecord, expected_revision: int) -> int:
        self.calls.append("update")
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(0)  # a round trip: others run meanwhile
        self.in_flight -= 1
        return await super().update(rec, expected_revision)
