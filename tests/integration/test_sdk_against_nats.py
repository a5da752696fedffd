"""The SDK against a real nats-server, with stand-ins for the router's behaviour."""

from __future__ import annotations

import asyncio
import logging

import msgpack
import pytest
from aegis.sdk import (
    CircuitOpenError,
    ClientConfig,
    RequestTimeoutError,
    ServiceClient,
    ServiceUnavailableError,
)
from aegis.wire.messages import REQUEST_ID_HEADER
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from tests.support.procs import NatsServer, free_port
from tests.support.wire import instance_body

FAST = ClientConfig(timeout=0.3, retries=3, backoff_base=0.01, backoff_max=0.05)


def events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, object]]:
    """The fields of each SDK log event called ``name``."""
    return [
        r.aegis_fields  # type: ignore[attr-defined]
        for r in caplog.records
        if getattr(r, "aegis_event", None) == name
    ]


async def test_no_router_retries_then_503(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aegis.sdk")
    async with ServiceClient(nats_server.url, FAST) as client:
        with pytest.raises(ServiceUnavailableError) as caught:
            await client.register("svc", "i-1")

    assert caught.value.status_code == 503
    assert caught.value.code == "NO_RESPONDERS"
    assert [e["attempt"] for e in events(caplog, "request_retry")] == [1, 2, 3]


async def test_silent_router_times_out_with_504(
    nats_server: NatsServer, raw_nats: NatsClient
) -> None:
    seen: list[bytes] = []

    async def swallow(msg: Msg) -> None:
        seen.append(msg.data)  # a hung router: takes the request, never replies

    await raw_nats.subscribe("ipc.svc.*.register", cb=swallow)
    await raw_nats.flush()
    config = ClientConfig(timeout=0.2, retries=1, backoff_base=0.01)
    async with ServiceClient(nats_server.url, config) as client:
        with pytest.raises(RequestTimeoutError) as caught:
            await client.register("svc", "i-1")

    assert caught.value.status_code == 504
    assert len(seen) == 2, "one try and one retry"
    sessions = {msgpack.unpackb(data)["session_id"] for data in seen}
    assert len(sessions) == 1, "a retry carries the same session, so it is idempotent"


async def test_reply_after_a_lost_one_is_accepted(
    nats_server: NatsServer, raw_nats: NatsClient
) -> None:
    request_ids: list[str] = []

    async def flaky(msg: Msg) -> None:
        request_ids.append((msg.headers or {}).get(REQUEST_ID_HEADER, ""))
        if len(request_ids) == 1:
            return  # the first reply is lost
        instance = instance_body("svc", "i-1")
        await msg.respond(msgpack.packb({"ok": True, "status": 200, "instance": instance}))

    await raw_nats.subscribe("ipc.svc.*.register", cb=flaky)
    await raw_nats.flush()
    async with ServiceClient(nats_server.url, FAST) as client:
        instance = await client.register("svc", "i-1")

    assert instance.instance_id == "i-1"
    assert len(request_ids) == 2
    assert request_ids[0] == request_ids[1] != "", "a retry carries the request id it first had"


async def test_breaker_opens_and_fails_fast(nats_server: NatsServer) -> None:
    config = ClientConfig(retries=0, breaker_threshold=2, breaker_cooldown=60)
    async with ServiceClient(nats_server.url, config) as client:
        for _ in range(2):
            with pytest.raises(ServiceUnavailableError):
                await client.register("svc", "i-1")
        with pytest.raises(CircuitOpenError) as caught:
            await client.register("svc", "i-1")

    assert caught.value.status_code == 503
    assert "circuit open" in str(caught.value)


async def test_unreachable_nats_is_503_after_retries(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="aegis.sdk")
    config = ClientConfig(retries=2, backoff_base=0.01, connect_timeout=0.5)
    client = ServiceClient(f"nats://127.0.0.1:{free_port()}", config)
    with pytest.raises(ServiceUnavailableError) as caught:
        await client.connect()

    assert caught.value.status_code == 503
    assert caught.value.code == "NATS_UNREACHABLE"
    assert len(events(caplog, "nats_connect_failed")) == 3


async def test_register_outside_async_with_says_how(nats_server: NatsServer) -> None:
    client = ServiceClient(nats_server.url, FAST)
    with pytest.raises(ServiceUnavailableError, match="async with"):
        await client.register("svc", "i-1")


async def test_connection_survives_a_nats_restart(nats_server: NatsServer) -> None:
    async with ServiceClient(nats_server.url, ClientConfig(timeout=1, retries=5)) as client:
        nats_server.stop()
        nats_server.start()
        responder = NatsClient()
        await responder.connect(nats_server.url)

        async def answer(msg: Msg) -> None:
            body = msgpack.unpackb(msg.data)
            instance = instance_body(body["service_name"], body["instance_id"])
            await msg.respond(msgpack.packb({"ok": True, "status": 201, "instance": instance}))

        await responder.subscribe("ipc.svc.*.register", cb=answer)
        await responder.flush()
        try:
            instance = await asyncio.wait_for(client.register("svc", "after-restart"), 30)
        finally:
            await responder.close()

    assert instance.instance_id == "after-restart"
