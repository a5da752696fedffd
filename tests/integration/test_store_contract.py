"""Both storage adapters keep the same contract: atomic create, compare-and-set, listeners.

The JetStream adapter runs against a real nats-server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import nats
import pytest
from aegis.router.domain import InstanceKey, InstanceRecord, MaintenanceMark
from aegis.router.store import kv_watch
from aegis.router.store.jetstream import (
    BucketMismatchError,
    JetStreamStore,
    check_existing_bucket,
    decode_key,
    encode_key,
    encode_record,
)
from aegis.router.store.port import (
    AlreadyExists,
    InstanceStore,
    MemoryStore,
    RevisionMismatch,
)
from aegis.wire.messages import InstanceStatus
from prometheus_client import REGISTRY

from tests.support import eventually
from tests.support.procs import NatsServer

T0 = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)


def record(instance_id: str = "host-1:8080", **changes: object) -> InstanceRecord:
    base = InstanceRecord(
        service_name="billing",
        instance_id=instance_id,
        status=InstanceStatus.ONLINE,
        metadata={"zone": "a", "tags": ["x"], "n": 3},
        registered_at=T0,
        last_heartbeat_at=T0,
        session_id="owner-session",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "jetstream"])
async def store(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[InstanceStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    server = NatsServer(data_dir=tmp_path / "nats")
    server.start()
    nc = await nats.connect(server.url)
    kv = JetStreamStore(bucket="contract")
    await kv.start(nc)
    yield kv
    await kv.stop()
    await nc.close()
    server.stop()


async def test_create_is_atomic_and_update_is_compare_and_set(store: InstanceStore) -> None:
    first = record()
    revision = await store.create(first)
    with pytest.raises(AlreadyExists):
        await store.create(record(metadata={}))
    later = replace(first, status=InstanceStatus.UNHEALTHY)
    newer = await store.update(later, revision)
    with pytest.raises(RevisionMismatch):
        await store.update(first, revision)  # stale revision
    stored = await store.get(first.key)

    assert newer > revision
    assert stored is not None
    assert (stored.record, stored.revision) == (later, newer)


async def test_delete_is_compare_and_set_and_the_key_can_be_created_again(
    store: InstanceStore,
) -> None:
    revision = await store.create(record())
    with pytest.raises(RevisionMismatch):
        await store.delete(record().key, revision + 100)
    await store.delete(record().key, revision)

    assert await store.get(record().key) is None
    assert await store.list_all() == []
    again = await store.create(record(session_id="new-owner"))
    stored = await store.get(record().key)
    assert stored is not None
    assert (stored.record.session_id, stored.revision) == ("new-owner", again)


async def test_lists_and_listener(store: InstanceStore) -> None:
    seen: list[tuple[InstanceKey, InstanceRecord | None]] = []
    store.set_listener(lambda key, rec: seen.append((key, rec)))
    a, b = record("a.1"), record("b:2")
    other = replace(record("c"), service_name="orders")
    revisions = [await store.create(r) for r in (a, b, other)]
    await store.delete(a.key, revisions[0])

    assert sorted(r.instance_id for r in await store.list_service("billing")) == ["b:2"]
    assert {r.service_name for r in await store.list_all()} == {"billing", "orders"}
    assert (a.key, a) in seen
    assert (a.key, None) in seen
    assert await store.list_service("nobody") == []


def test_keys_escape_to_one_token_and_back() -> None:
    for instance_id in ("plain", "host:8080", "a.b.c", "x..y", "end.", ":.-_"):
        key = InstanceKey("svc", instance_id)
        encoded = encode_key(key)

        assert encoded.count(".") == 1
        assert decode_key(encoded) == key


async def test_two_routers_share_one_bucket(nats_server: NatsServer) -> None:
    nc_a, nc_b = await nats.connect(nats_server.url), await nats.connect(nats_server.url)
    store_a, store_b = JetStreamStore("shared"), JetStreamStore("shared")
    await store_a.start(nc_a)
    await store_b.start(nc_b)
    heard: list[InstanceRecord | None] = []
    store_b.set_listener(lambda key, rec: heard.append(rec))
    try:
        outcomes = await asyncio.gather(
            *(s.create(record(session_id=f"s-{i}")) for i, s in enumerate([store_a, store_b] * 5)),
            return_exceptions=True,
        )
        await eventually(store_b.list_all, "the winner in the other router's view", within=5)
        winner = await store_a.get(record().key)
    finally:
        await store_a.stop()
        await store_b.stop()
        await nc_a.close()
        await nc_b.close()

    assert sum(isinstance(o, int) for o in outcomes) == 1
    assert all(isinstance(o, AlreadyExists) for o in outcomes if not isinstance(o, int))
    assert winner is not None
    assert [r.session_id for r in await store_b.list_all()] == [winner.record.session_id]
    assert heard
    assert heard[-1] == winner.record


async def test_a_restarted_store_finds_what_was_written(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    first = JetStreamStore("durable")
    await first.start(nc)
    # Everything a record holds comes back: version and maintenance mark included.
    written = record(version=4, maintenance=MaintenanceMark("kernel upgrade", T0))
    await first.create(written)
    await first.stop()
    second = JetStreamStore("durable")
    await second.start(nc)
    listed = await second.list_all()
    await second.stop()
    await nc.close()

    assert listed == [written]


async def test_a_bucket_with_other_replicas_is_refused_not_changed(
    nats_server: NatsServer,
) -> None:
    nc = await nats.connect(nats_server.url)
    created = JetStreamStore("replicated", replicas=1)
    await created.start(nc)
    await created.stop()
    try:
        with pytest.raises(BucketMismatchError, match="AEGIS_KV_REPLICAS=1"):
            await JetStreamStore("replicated", replicas=3).start(nc)
        with pytest.raises(BucketMismatchError):
            await check_existing_bucket(nc, "replicated", 3)
        await check_existing_bucket(nc, "replicated", 1)  # as configured: fine
        await check_existing_bucket(nc, "not-there-yet", 3)  # will be created as configured
        status = await (await nc.jetstream().key_value("replicated")).status()
    finally:
        await nc.close()

    assert status.stream_info.config.num_replicas == 1


async def test_a_watch_whose_consumer_is_gone_is_restarted_within_seconds(
    nats_server: NatsServer,
) -> None:
    # From a chaos history (issue 14, seed 2): a router's bucket watch died with
    # the NATS node that held its consumer; for 20 s its cache answered lists and
    # steady heartbeats with records other routers had changed long before.
    # Deleting the consumer does the same here; nats-py alone notices after 10 s.
    nc_a, nc_b = await nats.connect(nats_server.url), await nats.connect(nats_server.url)
    store_a, store_b = JetStreamStore("guarded"), JetStreamStore("guarded")
    await store_a.start(nc_a)
    await store_b.start(nc_b)
    try:
        js = nc_b.jetstream()
        for consumer in await js.consumers_info("KV_guarded"):
            await js.delete_consumer("KV_guarded", consumer.name)
        await store_a.create(record())
        within = 2 * kv_watch.WATCH_CHECK + 2.0  # two checks, and a new snapshot
        await eventually(lambda: store_b.peek(record().key), "b's cache has it", within)
    finally:
        await store_a.stop()
        await store_b.stop()
        await nc_a.close()
        await nc_b.close()


async def test_the_watch_revision_metric_says_how_far_the_cache_has_read(
    nats_server: NatsServer,
) -> None:
    # The chaos harness reads it before each listing to prove the listing fresh.
    def read() -> float:
        return REGISTRY.get_sample_value("aegis_store_watch_revision", {"bucket": "gauged"}) or 0

    nc = await nats.connect(nats_server.url)
    store = JetStreamStore("gauged")
    await store.start(nc)
    try:
        kv = await nc.jetstream().key_value("gauged")  # another router's writes
        await kv.put(encode_key(record().key), encode_record(record()))
        second = await kv.put(encode_key(record("b").key), encode_record(record("b")))

        await eventually(lambda: read() >= second, "the metric reaches the last write", 5.0)
        assert read() == second
        # Every change up to it is in the cache.
        assert store.peek(record().key) is not None
        assert store.peek(record("b").key) is not None
    finally:
        await store.stop()
        await nc.close()


def test_a_watch_is_stalled_when_behind_at_two_checks_without_moving() -> None:
    lag = kv_watch.WatchLag()
    assert not lag.stalled(delivered=10, last=10)
    assert not lag.stalled(delivered=10, last=12), "behind once: maybe in flight"
    assert not lag.stalled(delivered=11, last=14), "behind, but moving"
    assert lag.stalled(delivered=11, last=15), "behind twice without moving"
    assert not lag.stalled(delivered=11, last=15), "restarted: judged afresh"
    assert not lag.stalled(delivered=15, last=15)
