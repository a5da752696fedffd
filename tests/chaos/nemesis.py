"""The nemesis: faults on a seeded random schedule, each written as a ``fault`` record.

The schedule is rounds with quiet between them, so that most of a run is
judged without excuses: a round in which one, two or all lanes inject one
fault each, held 1-5 s, then healed; then a quiet gap (``quiet``, 16-22 s by
default) before the next. Lanes:

- routers: SIGKILL then restart, or SIGSTOP then SIGCONT (a paused process);
- nodes: SIGSTOP then SIGCONT, SIGKILL of the node leading the bucket's
  stream (found through the JetStream API) then restart, or SIGKILL of any
  node then restart;
- partitions (on unless turned off), through the proxies of support/proxy.py:
  isolate a node (its routes, and every client's and router's link to it,
  cut), split 2/1 (its routes alone cut: its clients and routers still
  reach it, and only it), cut a router from NATS (its links cut: it serves
  REST, its clients reach the other routers), drop one direction of a router's
  or a client's links (the connection stays open, half its data vanishes),
  or add 100-500 ms per chunk to one client's, router's or node's routes' links.

A round never takes away two nodes: when both the node lane and the partition
lane fault, the partition lane leaves the nodes alone (so the R3 bucket keeps
its quorum); nor does it cut or pause two routers: with the router lane, the
partition lane leaves the routers' links whole. (A node fault and a router
fault may meet, as they always could: the node's own router is away too.)

Each lane draws from its own ``random.Random`` seeded from the run's seed,
and the schedule (gaps, which lanes fault) from one more, so a seed gives the
same sequence of faults, holds and gaps every time (the stream leader,
chosen by NATS, may differ).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from aegis.router.leases.membership_kv import members_bucket
from nats.aio.client import Client as NatsClient

from tests.support.proxy import Direction, Link

from .cluster import BUCKET, Cluster, Node, Router, stream_leader
from .recording import Recorder

QUIET = (16.0, 22.0)  # seconds of quiet after each round
HOLD = (1.0, 5.0)  # how long a fault lasts (around the 3 s membership TTL)
LANES_PER_ROUND = (0.4, 0.45, 0.15)  # weights of a round having faults from 1, 2, 3 lanes
LATENCY = (0.1, 0.5)  # added per chunk by a latency fault
START_ATTEMPTS = 10
# A node fault ends once both streams are led again, or after this long at most.
RECOVERY_TIMEOUT = 30.0
# The streams every router uses: the registry's bucket and its membership's.
ROUTER_STREAMS = (f"KV_{BUCKET}", f"KV_{members_bucket(BUCKET)}")
# The partition lane's faults, by what they take away.
NODE_PARTITIONS = ("node_isolate", "node_split")
ROUTER_PARTITIONS = ("router_cut", "router_drop")
LINK_PARTITIONS = ("link_latency", "client_drop")
# Every kind that opens a fault window (the others end one).
OPENING = frozenset(
    {"router_kill", "router_pause", "node_pause", "node_kill"}
    | {*NODE_PARTITIONS, *ROUTER_PARTITIONS, *LINK_PARTITIONS}
)

Lane = Callable[[frozenset[str]], Coroutine[Any, Any, None]]


class HarnessError(RuntimeError):
    """The harness itself failed (a process would not come back), not the system."""


class Nemesis:
    """Runs rounds of faults for a duration, then heals everything."""

    def __init__(
        self,
        cluster: Cluster,
        recorder: Recorder,
        seed: int,
        admin: NatsClient,
        *,
        partitions: bool = True,
        quiet: tuple[float, float] = QUIET,
    ) -> None:
        self.cluster = cluster
        self.recorder = recorder
        self.admin = admin
        self.quiet = quiet
        self.schedule_rng = random.Random(f"{seed}/schedule")
        self.router_rng = random.Random(f"{seed}/routers")
        self.node_rng = random.Random(f"{seed}/nodes")
        self.partition_rng = random.Random(f"{seed}/partitions")
        self.lanes: dict[str, Lane] = {"routers": self._router_fault, "nodes": self._node_fault}
        if partitions:
            self.lanes["partitions"] = self._partition_fault
        self.last_fault: float | None = None
        self.counts: Counter[str] = Counter()  # every record written, by kind

    @property
    def started(self) -> Counter[str]:
        """The faults injected, by kind (their ends not counted)."""
        return Counter({k: n for k, n in self.counts.items() if k in OPENING})

    def _fault(
        self, kind: str, target: str, detail: str = "", start: float | None = None, **extra: Any
    ) -> None:
        self.recorder.fault(kind, target, detail, start, **extra)
        self.last_fault = time.time()
        self.counts[kind] += 1
        print(f"  fault {kind} {target} {detail}".rstrip(), flush=True)

    async def run(self, duration: float) -> None:
        """Inject rounds of faults for ``duration`` seconds; returns once every process
        is back and every link healed."""
        loop = asyncio.get_running_loop()
        end = loop.time() + duration
        rng = self.schedule_rng
        while True:
            names = sorted(self.lanes)
            (many,) = rng.choices(range(1, len(names) + 1), LANES_PER_ROUND[: len(names)])
            chosen = frozenset(rng.sample(names, many))
            async with asyncio.TaskGroup() as faults:
                for name in sorted(chosen):
                    faults.create_task(self.lanes[name](chosen))
            gap = rng.uniform(*self.quiet)
            if loop.time() + gap + HOLD[1] > end:
                return
            await asyncio.sleep(gap)

    # --- routers -------------------------------------------------------------

    async def _router_fault(self, busy: frozenset[str]) -> None:
        rng, cluster = self.router_rng, self.cluster
        router = rng.choice(cluster.routers)
        hold = rng.uniform(*HOLD)
        if rng.random() < 0.5:
            cluster.kill_router(router)
            self._fault("router_kill", router.name, "SIGKILL")
            await asyncio.sleep(hold)
            await self.start_router(router)
        else:
            router.pause()
            self._fault("router_pause", router.name, "SIGSTOP")
            await asyncio.sleep(hold)
            router.resume()
            self._fault("router_resume", router.name, f"SIGCONT after {hold:.1f}s")

    async def start_router(self, router: Router) -> None:
        """Restart ``router``, retrying a failed start (say, mid leader election)."""
        started = time.time()
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                await asyncio.to_thread(self.cluster.start_router, router)
            except (RuntimeError, TimeoutError) as exc:
                print(f"  {router.name} start attempt {attempt} failed: {exc}", flush=True)
                await asyncio.sleep(1.0)
                continue
            self._fault("router_start", router.name, f"attempt {attempt}", start=started)
            return
        raise HarnessError(f"{router.name} did not start in {START_ATTEMPTS} attempts")

    # --- nodes ---------------------------------------------------------------

    async def _node_fault(self, busy: frozenset[str]) -> None:
        rng, cluster = self.node_rng, self.cluster
        hold = rng.uniform(*HOLD)
        choice = rng.random()
        # Which nodes a fault may stall every router through (the checker's excuse).
        leaders = await stream_leaders(self.admin)
        if choice < 0.4:
            node = rng.choice(cluster.nodes)
            node.pause()
            self._fault("node_pause", node.name, "SIGSTOP", leaders=leaders)
            await asyncio.sleep(hold)
            node.resume()
            await self.recovered()
            self._fault("node_resume", node.name, f"SIGCONT after {hold:.1f}s")
            return
        if choice < 0.75:
            leader = await stream_leader(self.admin)
            node = cluster.node(leader) if leader else rng.choice(cluster.nodes)
            detail = "stream leader" if leader else "leader unknown: a random node"
        else:
            node, detail = rng.choice(cluster.nodes), "any node"
        cluster.kill_node(node)
        self._fault("node_kill", node.name, f"SIGKILL, {detail}", leaders=leaders)
        await asyncio.sleep(hold)
        started = time.time()
        await asyncio.to_thread(cluster.start_node, node)
        await self.recovered()
        self._fault("node_start", node.name, start=started)

    async def recovered(self) -> None:
        """Wait until both streams the routers use are led again (at most
        RECOVERY_TIMEOUT), so a node fault's window ends when the cluster has
        recovered from it: an election outlasting a short fault is still its doing
        (seen: a registry stream without a leader 6 s after its node restarted)."""
        deadline = asyncio.get_running_loop().time() + RECOVERY_TIMEOUT
        while asyncio.get_running_loop().time() < deadline:
            if await stream_leaders(self.admin) is not None:
                return
            await asyncio.sleep(0.2)

    # --- partitions ----------------------------------------------------------

    async def _partition_fault(self, busy: frozenset[str]) -> None:
        rng = self.partition_rng
        kinds = [*NODE_PARTITIONS, *ROUTER_PARTITIONS, *LINK_PARTITIONS]
        # Never a second node or router away in one round (the quorum, the leases).
        if "nodes" in busy:
            kinds = [k for k in kinds if k not in NODE_PARTITIONS]
        if "routers" in busy:
            kinds = [k for k in kinds if k not in ROUTER_PARTITIONS]
        kind = rng.choice(kinds)
        hold = rng.uniform(*HOLD)
        if kind in NODE_PARTITIONS:
            await self._partition_node(kind, rng.choice(self.cluster.nodes), hold)
        elif kind in ROUTER_PARTITIONS:
            router = rng.choice(self.cluster.routers)
            direction: Direction = rng.choice(("forward", "reverse"))
            await self._partition_router(kind, router, direction, hold)
        elif kind == "client_drop":
            client = rng.choice(self.clients())
            direction = rng.choice(("forward", "reverse"))
            links = self.cluster.proxies.select(owner=client)
            self.cluster.proxies.drop(links, direction)
            detail = f"{_DIRECTIONS[direction]} dropped"
            await self._hold(kind, f"{client}>*", detail, links, hold, client=client)
        else:
            await self._latency(rng, hold)

    def clients(self) -> list[str]:
        """The clients with links of their own (not the routers, not the routes)."""
        others = {"route", *(r.name for r in self.cluster.routers)}
        return sorted({link.owner for link in self.cluster.proxies.all()} - others)

    async def _partition_node(self, kind: str, node: Node, hold: float) -> None:
        """Cut ``node``'s routes (both those dialled to it and those it dialled), and
        for an isolation every client's and router's link to it too."""
        proxies = self.cluster.proxies
        leaders = await stream_leaders(self.admin)
        links = proxies.select(node=node.name, owner="route")
        if kind == "node_isolate":
            links = proxies.select(node=node.name)
        node.away = True
        proxies.cut(links)
        proxies.block_dialer(node.name)
        detail = "routes and clients cut" if kind == "node_isolate" else "routes cut: 2/1"
        try:
            await self._hold(kind, node.name, detail, links, hold, leaders=leaders, end=False)
        finally:
            proxies.unblock_dialer(node.name)
            node.away = False
        await self.recovered()
        self._fault("node_rejoin", node.name, f"after {hold:.1f}s", links=_names(links))

    async def _partition_router(
        self, kind: str, router: Router, direction: Direction, hold: float
    ) -> None:
        """Cut ``router``'s links to every node, or drop one direction on them."""
        proxies = self.cluster.proxies
        links = proxies.select(owner=router.name)
        if kind == "router_cut":
            proxies.cut(links)
            detail = "cut from NATS"
        else:
            proxies.drop(links, direction)
            detail = f"{_DIRECTIONS[direction]} dropped"
        await self._hold(kind, router.name, detail, links, hold, end=False)
        self._fault("router_rejoin", router.name, f"after {hold:.1f}s", links=_names(links))

    async def _latency(self, rng: random.Random, hold: float) -> None:
        """Delay one client's, one router's, or one node's routes' links."""
        proxies = self.cluster.proxies
        which = rng.choice(("client", "router", "route"))
        client: str | None = None
        if which == "client":
            client = rng.choice(self.clients())
            links, target = proxies.select(owner=client), f"{client}>*"
        elif which == "router":
            router = rng.choice(self.cluster.routers).name
            links, target = proxies.select(owner=router), f"{router}>*"
        else:
            node = rng.choice(self.cluster.nodes).name
            links, target = proxies.select(node=node, owner="route"), f"route>{node}"
        delay = rng.uniform(*LATENCY)
        proxies.delay(links, delay)
        await self._hold(
            "link_latency", target, f"+{delay * 1000:.0f} ms", links, hold, client=client
        )

    async def _hold(
        self,
        kind: str,
        target: str,
        detail: str,
        links: list[Link],
        hold: float,
        *,
        end: bool = True,
        **extra: Any,
    ) -> None:
        """Record the fault on ``links``, hold it, restore them (and, if ``end``,
        record its end as ``link_heal``)."""
        self._fault(kind, target, detail, links=_names(links), **extra)
        try:
            await asyncio.sleep(hold)
        finally:
            self.cluster.proxies.restore(links)
        if end:
            self._fault("link_heal", target, f"after {hold:.1f}s", links=_names(links))


_DIRECTIONS: dict[Direction, str] = {
    "forward": "towards the node",
    "reverse": "from the node",
}


def _names(links: list[Link]) -> list[str]:
    return sorted(link.name for link in links)


async def stream_leaders(nc: NatsClient) -> list[str] | None:
    """The nodes leading the streams the routers use, or None if any leader is unknown."""
    try:
        infos: list[Any] = await asyncio.gather(
            *(nc.jetstream(timeout=1.0).stream_info(name) for name in ROUTER_STREAMS)
        )
        leaders = [info.cluster.leader for info in infos]
    except Exception:
        return None  # no answer, or a stream without a cluster: unknown, never "none"
    return None if None in leaders else sorted(set(leaders))
