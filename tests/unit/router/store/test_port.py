"""aegis.router.store.port: the in-memory adapter's create and compare-and-set.

Both adapters are held to the same contract against a real nats-server in
tests/integration/test_store_contract.py.
"""

from __future__ import annotations

import pytest
from aegis.router.domain import InstanceKey
from aegis.router.store.port import AlreadyExists, MemoryStore, RevisionMismatch, Versioned
from aegis.wire.messages import InstanceStatus

from tests.unit.router.fakes import stored


async def test_memory_store_create_and_update_revisions() -> None:
    store = MemoryStore()
    key = InstanceKey("billing", "b-1")
    assert await store.get(key) is None

    rev1 = await store.create(stored("b-1", InstanceStatus.ONLINE))
    with pytest.raises(AlreadyExists):
        await store.create(stored("b-1", InstanceStatus.OFFLINE))
    assert await store.get(key) == Versioned(stored("b-1", InstanceStatus.ONLINE), rev1)

    changed = stored("b-1", InstanceStatus.UNHEALTHY)
    rev2 = await store.update(changed, rev1)
    assert rev2 > rev1
    with pytest.raises(RevisionMismatch):
        await store.update(stored("b-1", InstanceStatus.ONLINE), rev1)  # stale revision
    assert await store.get(key) == Versioned(changed, rev2)

    with pytest.raises(RevisionMismatch):
        await store.update(stored("absent", InstanceStatus.ONLINE), rev2)
    assert await store.list_service("billing") == [changed]
    assert await store.list_service("absent") == []
