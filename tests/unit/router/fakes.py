"""Fakes the router's unit tests share: an event sink that keeps events, and the
requests, records and registry (on a FakeClock) they start from."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgpack
from aegis.router.domain import InstanceRecord, Timings
from aegis.router.registry.expiry_budget import ExpiryBudget
from aegis.router.registry.operations import Registry
from aegis.router.store.port import MemoryStore
from aegis.wire.messages import ChangeEvent, InstanceStatus, RegisterRequest

from tests.support import T0, FakeClock

SESSION = "sess-Liveness-4xQ9"  # distinctive, so a leak into logs or replies is easy to spot
OTHER_SESSION = "sess-Intruder-7kP2"
# Distinct, fractional where it matters: heartbeat 2.5, UNHEALTHY 10, OFFLINE 20, removed 100.
TIMINGS = Timings(heartbeat_interval=2.5, unhealthy_after=10, offline_after=20, remove_after=100)
# The deadline index hands a key out at most one resolution (0.05 s) after its deadline.
LATE = 0.1


class ListSink:
    """An EventSink that keeps every event."""

    def __init__(self) -> None:
        self.events: list[ChangeEvent] = []

    async def publish(self, service_name: str, event: dict[str, Any]) -> None:
        # Through the model: what a subscriber decodes, checked against the contract.
        self.events.append(ChangeEvent.model_validate(event))
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
