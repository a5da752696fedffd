"""Shared fixtures: real nats-server and aegis-router processes on free ports, certificates.

Helpers that are not fixtures live in tests/support.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient

from tests.support.pki import Pki, make_pki
from tests.support.procs import NatsServer, RouterProcess, router_process


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
    with router_process(tmp_path, nats_url=nats_server.url) as process:
        yield process


@pytest.fixture
async def raw_nats(nats_server: NatsServer) -> AsyncIterator[NatsClient]:
    """A plain nats-py connection, as a client in another language would use."""
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA with server and client certificates, made once per session."""
    return make_pki(tmp_path_factory.mktemp("pki"))
