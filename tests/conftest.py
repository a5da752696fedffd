"""Shared fixtures: real nats-server and aegis-router processes on free ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgpack
import nats
import pytest
from nats.aio.client import Client as NatsClient

from tests.procs import NatsServer, RouterProcess


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A fresh nats-server with JetStream, stopped after the test."""
    server = NatsServer(data_dir=tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def router(nats_server: NatsServer, tmp_path: Path) -> Iterator[RouterProcess]:
    """An aegis-router process connected to ``nats_server``."""
    process = RouterProcess(
        log_path=tmp_path / "router.log", env={"AEGIS_NATS_URL": nats_server.url}
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture
async def raw_nats(nats_server: NatsServer) -> AsyncIterator[NatsClient]:
    """A plain nats-py connection, as a client in another language would use."""
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


async def raw_request(
    nc: NatsClient, body: object, subject: str = "ipc.service.register"
) -> dict[str, object]:
    """Send ``body`` (MessagePack-encoded unless already bytes) and decode the reply."""
    data = body if isinstance(body, bytes) else msgpack.packb(body)
    msg = await nc.request(subject, data, timeout=5)
    reply: dict[str, object] = msgpack.unpackb(msg.data)
    return reply
