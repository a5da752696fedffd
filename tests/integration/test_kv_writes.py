"""The lean KV writer against a real nats-server: revisions, lost races, no stream, no ack."""

from __future__ import annotations

import asyncio

import nats
import pytest
from aegis.router.store import kv_writes
from aegis.router.store.kv_writes import KvWriter, WrongLastSequence
from aegis.router.store.port import StoreError
from nats.js.api import KeyValueConfig, StorageType

from tests.support.procs import NatsServer


async def test_writes_compare_and_set_as_nats_py_does(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    kv = await nc.jetstream().create_key_value(
        KeyValueConfig(bucket="lean", history=1, storage=StorageType.FILE)
    )
    writer = KvWriter(nc, "lean", timeout=2.0)
    await writer.start()
    try:
        first = await writer.write("svc.a", b"one", 0)
        with pytest.raises(WrongLastSequence):
            await writer.write("svc.a", b"again", 0)  # create of a key taken
        second = await writer.write("svc.a", b"two", first)
        with pytest.raises(WrongLastSequence):
            await writer.write("svc.a", b"stale", first)
        entry = await kv.get("svc.a")
        # Many in flight at once, each told its own revision.
        revisions = await asyncio.gather(*(writer.write(f"svc.m{i}", b"x", 0) for i in range(50)))
        deleted = await writer.write("svc.a", b"", second, delete=True)
        with pytest.raises(nats.js.errors.KeyNotFoundError):  # deleted
            await kv.get("svc.a")
    finally:
        await writer.stop()
        await nc.close()

    assert (entry.value, entry.revision) == (b"two", second)
    assert second > first
    assert len(set(revisions)) == 50
    assert deleted > max(revisions)


async def test_a_subject_no_stream_takes_is_a_store_error(nats_server: NatsServer) -> None:
    nc = await nats.connect(nats_server.url)
    writer = KvWriter(nc, "no_such_bucket", timeout=2.0)
    await writer.start()
    try:
        with pytest.raises(StoreError, match="no stream answered"):
            await writer.write("svc.a", b"one", 0)
    finally:
        await writer.stop()
        await nc.close()


async def test_a_write_with_no_ack_times_out_as_a_store_error(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kv_writes, "REAP_EVERY", 0.05)
    nc = await nats.connect(nats_server.url)
    # A plain subscriber on the bucket's subjects: it takes the write and never acks.
    silent = await nc.subscribe("$KV.mute.>")
    writer = KvWriter(nc, "mute", timeout=0.2)
    await writer.start()
    try:
        with pytest.raises(StoreError, match="within the timeout"):
            await asyncio.wait_for(writer.write("svc.a", b"one", 0), 2.0)
    finally:
        await writer.stop()
        await silent.unsubscribe()
        await nc.close()


def test_an_error_ack_says_its_code() -> None:
    ack = nats.aio.msg.Msg(
        _client=None,  # type: ignore[arg-type]
        subject="_INBOX.x.1",
        data=b'{"error":{"code":503,"err_code":10077,"description":"resource limits"}}',
    )
    with pytest.raises(StoreError, match="resource limits \\(err_code 10077\\)"):
        kv_writes._revision("svc.a", ack)
