"""Shared fixtures: real nats-server and aegis-router processes on free ports, certificates.

Helpers that are not fixtures live in tests/support.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient

from tests.support.pki import Pki, make_pki
from tests.support.procs import NatsServer, RouterProcess, router_process
from tests.support.proxy import ProxyHub

pytest_plugins = ["tests.support.hangs"]


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: two workers per CPU. Most end-to-end tests wait on the processes they
    start (a router's start, a liveness deadline), so one worker per CPU leaves the CPUs
    idle much of the run."""
    return 2 * (os.cpu_count() or 1)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, object, object]:
    """Under pytest-xdist, a test marked ``exclusive`` runs with no other test beside it.

    Such a test holds its timings to bounds a machine shared with other tests cannot
    keep (the chaos run counts a request that times out with no fault injected as a
    fault of the system). Each worker takes the run's lock shared around every other
    test and exclusively around an ``exclusive`` one, after a turnstile, so a worker
    waiting to go alone is not kept out by the others taking turns.
    """
    workerinput = getattr(item.config, "workerinput", None)
    if workerinput is None:  # one process: nothing runs beside anything
        return (yield)
    locks = Path(tempfile.gettempdir()) / f"aegis-xdist-{workerinput['testrunuid']}"
    locks.mkdir(exist_ok=True)
    exclusive = item.get_closest_marker("exclusive") is not None
    with (
        (locks / "exclusive.turnstile").open("a") as turnstile,
        (locks / "exclusive.lock").open("a") as lock,
    ):
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        if not exclusive:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            return (yield)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            fcntl.flock(turnstile, fcntl.LOCK_UN)


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


@pytest.fixture
def proxies() -> Iterator[ProxyHub]:
    """Fault-injecting TCP proxies (add a link per connection to cut), closed after the test."""
    hub = ProxyHub()
    yield hub
    hub.close()


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA with server and client certificates, made once per session."""
    return make_pki(tmp_path_factory.mktemp("pki"))
