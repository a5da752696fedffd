"""The storage port and its in-memory adapter.

The port offers atomic create-if-absent and compare-and-set by revision, the
two primitives a replicated key-value store (JetStream KV) also has, so the
registry never does a racy read-then-write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from aegis.router.domain import InstanceKey, InstanceRecord

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient


@dataclass(frozen=True, slots=True)
class Versioned:
    """A stored record and the revision it was stored at."""

    record: InstanceRecord
    revision: int


ChangeListener = Callable[[InstanceKey, "InstanceRecord | None"], None]
"""Told of every change to the store, by this router or another: the record, or None."""


class StoreError(Exception):
    """The store cannot serve the request (unreachable, overloaded)."""


class AlreadyExists(Exception):  # noqa: N818 - reads as a condition, like KeyError
    """``create`` found the key taken."""


class RevisionMismatch(Exception):  # noqa: N818
    """``update`` found the key at another revision than expected (or gone)."""


class InstanceStore(Protocol):
    """What the registry needs of a store, and what the runtime opens and closes."""

    async def start(self, nc: NatsClient) -> None:
        """Open the store on the router's NATS connection; load what it holds."""
        ...

    async def stop(self) -> None:
        """Close it; nothing is lost (a NATS-backed store keeps its data)."""
        ...

    def set_listener(self, listener: ChangeListener | None) -> None:
        """Call ``listener`` after every change, including other routers' changes."""
        ...

    def peek(self, key: InstanceKey) -> Versioned | None:
        """The record as this router last saw it, with no round trip: may lag behind
        other routers' writes, so decide on it only to write by compare-and-set."""
        ...

    async def get(self, key: InstanceKey) -> Versioned | None:
        """The record under ``key`` with its revision, or None (authoritative)."""
        ...

    async def create(self, record: InstanceRecord) -> int:
        """Store ``record`` if its key is absent; return the new revision.

        Raises ``AlreadyExists`` when the key is taken.
        """
        ...

    async def update(self, record: InstanceRecord, expected_revision: int) -> int:
        """Replace the record if it is still at ``expected_revision``.

        Raises ``RevisionMismatch`` otherwise.
        """
        ...

    async def delete(self, key: InstanceKey, expected_revision: int) -> None:
        """Remove the record if it is still at ``expected_revision``.

        Raises ``RevisionMismatch`` otherwise.
        """
        ...

    async def list_service(self, service_name: str) -> list[InstanceRecord]:
        """Every record of one service (empty if none)."""
        ...

    async def list_all(self) -> list[InstanceRecord]:
        """Every record."""
        ...


class MemoryStore:
    """Single-process store: a dict per service; each call is atomic on one loop."""

    def __init__(self) -> None:
        self._services: dict[str, dict[str, Versioned]] = {}
        self._revision = 0
        self._listener: ChangeListener | None = None

    async def start(self, nc: NatsClient) -> None:
        """Nothing to open: the memory store lives in this process."""

    async def stop(self) -> None:
        """Nothing to close."""

    def set_listener(self, listener: ChangeListener | None) -> None:
        """See ``InstanceStore.set_listener``."""
        self._listener = listener

    def _changed(self, key: InstanceKey, record: InstanceRecord | None) -> None:
        if self._listener is not None:
            self._listener(key, record)

    def _next_revision(self) -> int:
        self._revision += 1
        return self._revision

    def peek(self, key: InstanceKey) -> Versioned | None:
        """See ``InstanceStore.peek`` (in one process, never behind)."""
        return self._services.get(key.service_name, {}).get(key.instance_id)

    async def get(self, key: InstanceKey) -> Versioned | None:
        """See ``InstanceStore.get``."""
        return self.peek(key)

    async def create(self, record: InstanceRecord) -> int:
        """See ``InstanceStore.create``."""
        instances = self._services.setdefault(record.service_name, {})
        if record.instance_id in instances:
            raise AlreadyExists(record.key)
        revision = self._next_revision()
        instances[record.instance_id] = Versioned(record, revision)
        self._changed(record.key, record)
        return revision

    async def update(self, record: InstanceRecord, expected_revision: int) -> int:
        """See ``InstanceStore.update``."""
        instances = self._services.get(record.service_name, {})
        current = instances.get(record.instance_id)
        if current is None or current.revision != expected_revision:
            raise RevisionMismatch(record.key)
        revision = self._next_revision()
        instances[record.instance_id] = Versioned(record, revision)
        self._changed(record.key, record)
        return revision

    async def delete(self, key: InstanceKey, expected_revision: int) -> None:
        """See ``InstanceStore.delete``."""
        instances = self._services.get(key.service_name, {})
        current = instances.get(key.instance_id)
        if current is None or current.revision != expected_revision:
            raise RevisionMismatch(key)
        del instances[key.instance_id]
        if not instances:
            del self._services[key.service_name]
        self._changed(key, None)

    async def list_service(self, service_name: str) -> list[InstanceRecord]:
        """See ``InstanceStore.list_service``."""
        return [v.record for v in self._services.get(service_name, {}).values()]

    async def list_all(self) -> list[InstanceRecord]:
        """See ``InstanceStore.list_all``."""
        return [v.record for inst in self._services.values() for v in inst.values()]
