"""The router's NATS responder on a real nats-server: concurrency and always replying."""

from __future__ import annotations

import asyncio

from aegis.router.nats_responder import NatsResponder
from nats.aio.client import Client as NatsClient

from tests.procs import NatsServer


async def test_requests_run_concurrently_up_to_the_bound(
    nats_server: NatsServer, raw_nats: NatsClient
) -> None:
    running = 0
    most = 0
    release = asyncio.Event()

    async def slow(data: bytes) -> bytes:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1
        return data

    responder = NatsResponder({"t.slow": slow}, max_in_flight=4)
    server_side = NatsClient()
    await server_side.connect(nats_server.url)
    await responder.start(server_side)
    requests = [
        asyncio.create_task(raw_nats.request("t.slow", str(i).encode(), timeout=10))
        for i in range(10)
    ]
    async with asyncio.timeout(10):
        while most < 4:
            failed = [t.exception() for t in requests if t.done()]
            assert not failed, f"requests failed before reaching the handler: {failed}"
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # give a fifth a chance to sneak past the bound
    release.set()
    replies = await asyncio.gather(*requests)
    await responder.stop()
    await server_side.close()

    assert most == 4, "one at a time would be 1; unbounded would be 10"
    assert sorted(int(r.data) for r in replies) == list(range(10))


async def test_stop_lets_in_flight_requests_finish(
    nats_server: NatsServer, raw_nats: NatsClient
) -> None:
    started = asyncio.Event()

    async def handler(data: bytes) -> bytes:
        started.set()
        await asyncio.sleep(0.2)
        return b"done"

    responder = NatsResponder({"t.drain": handler}, max_in_flight=2)
    server_side = NatsClient()
    await server_side.connect(nats_server.url)
    await responder.start(server_side)
    pending = asyncio.create_task(raw_nats.request("t.drain", b"x", timeout=5))
    await asyncio.wait_for(started.wait(), 10)
    await responder.stop()
    reply = await pending
    await server_side.close()

    assert reply.data == b"done"
