"""Router membership over its JetStream key-value bucket, on a real nats-server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import nats
import pytest
from aegis.router.bus.connection import check_nats
from aegis.router.leases.membership import MEMBER_TTL, Membership
from aegis.router.leases.membership_kv import KvMembership
from aegis.router.settings import Settings
from aegis.router.store import kv_watch
from aegis.router.store.jetstream import BucketMismatchError

from tests.support import eventually
from tests.support.procs import NatsServer

BUCKET = "aegis_registry_routers"

Join = Callable[[str], Awaitable[KvMembership]]


@pytest.fixture
async def routers(nats_server: NatsServer) -> AsyncIterator[Join]:
    """``join(router_id)``: a started ``KvMembership`` on its own connection, stopped
    (and its connection closed) after the test."""
    async with AsyncExitStack() as stack:

        async def join(router_id: str) -> KvMembership:
            nc = await nats.connect(nats_server.url)
            stack.push_async_callback(nc.close)
            members = KvMembership(Membership(router_id, MEMBER_TTL, time.time()), BUCKET, 1)
            await members.start(nc)
            stack.push_async_callback(members.stop)
            return members

        yield join


async def test_a_membership_watch_whose_consumer_is_gone_is_restarted_within_seconds(
    nats_server: NatsServer, routers: Join
) -> None:
    # docs/reliability.md, known limit 2: a membership watch that lost its consumer
    # (its NATS node died) left its router deaf, judging no router gone and
    # sweeping nothing, until nats-py noticed after 10-20 s.
    router_a = await routers("router-a")
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        for consumer in await js.consumers_info(f"KV_{BUCKET}"):
            await js.delete_consumer(f"KV_{BUCKET}", consumer.name)
        await routers("router-b")
        within = 2 * kv_watch.WATCH_CHECK + 2.0  # two checks, and a new snapshot
        await eventually(
            lambda: "router-b" in router_a.membership.member_ids, "router-b seen by a", within
        )
    finally:
        await nc.close()

    assert router_a.membership.hearing(time.time()), "a hears itself again"


async def test_a_members_bucket_with_other_replicas_is_refused_not_changed(
    nats_server: NatsServer, routers: Join, tmp_path: Path
) -> None:
    # As the registry's bucket is: a router must not run on a membership bucket
    # replicated otherwise than AEGIS_KV_REPLICAS says (losing the one node of
    # an R1 bucket on a cluster stops every router's lease handover).
    await routers("router-a")  # creates the bucket, with 1 replica
    nc = await nats.connect(nats_server.url)
    try:
        members = KvMembership(Membership("router-b", MEMBER_TTL, time.time()), BUCKET, 3)
        with pytest.raises(BucketMismatchError, match="AEGIS_KV_REPLICAS=1"):
            await members.start(nc)
        # Several workers: the main process checks the buckets before they start.
        settings = Settings(data_dir=tmp_path, nats_url=nats_server.url, kv_replicas=3)
        with pytest.raises(BucketMismatchError, match=BUCKET):
            await check_nats(settings)
        bucket = await nc.jetstream().key_value(BUCKET)
        status, joined = await bucket.status(), await bucket.keys()
    finally:
        await nc.close()

    assert status.stream_info.config.num_replicas == 1
    assert joined == ["router-a"], "the refused router never announced itself"
