"""The nemesis: faults on a seeded random schedule, each written as a ``fault`` record.

Two lanes run side by side, each one fault at a time, so faults overlap but
at most one node and one router are away at once (the R3 bucket keeps its
quorum):

- routers: SIGKILL then restart, or SIGSTOP then SIGCONT (a paused process);
- nodes: SIGSTOP then SIGCONT (stands in for a partition), SIGKILL of the node
  leading the bucket's stream (found through the JetStream API) then restart,
  or SIGKILL of any node then restart.

Each lane draws from its own ``random.Random`` seeded from the run's seed,
so a seed gives the same sequence of faults, holds and gaps every time (the
stream leader, chosen by NATS, may differ).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

from aegis.router.membership_kv import members_bucket
from nats.aio.client import Client as NatsClient

from .cluster import BUCKET, Cluster, Router, stream_leader
from .recording import Recorder

GAP = (1.5, 5.0)  # seconds between two faults of a lane
ROUTER_HOLD = (1.0, 6.0)  # how long a router stays away (around the 3 s membership TTL)
NODE_HOLD = (1.0, 7.0)
START_ATTEMPTS = 10
# The streams every router uses: the registry's bucket and its membership's.
ROUTER_STREAMS = (f"KV_{BUCKET}", f"KV_{members_bucket(BUCKET)}")


class HarnessError(RuntimeError):
    """The harness itself failed (a process would not come back), not the system."""


class Nemesis:
    """Runs both fault lanes for a duration, then heals everything."""

    def __init__(self, cluster: Cluster, recorder: Recorder, seed: int, admin: NatsClient) -> None:
        self.cluster = cluster
        self.recorder = recorder
        self.admin = admin
        self.router_rng = random.Random(f"{seed}/routers")
        self.node_rng = random.Random(f"{seed}/nodes")
        self.last_fault: float | None = None
        self.counts: Counter[str] = Counter()

    def _fault(
        self, kind: str, target: str, detail: str = "", start: float | None = None, **extra: Any
    ) -> None:
        self.recorder.fault(kind, target, detail, start, **extra)
        self.last_fault = time.time()
        self.counts[kind] += 1
        print(f"  fault {kind} {target} {detail}".rstrip(), flush=True)

    async def run(self, duration: float) -> None:
        """Inject faults for ``duration`` seconds; returns once every process is back."""
        end = asyncio.get_running_loop().time() + duration
        async with asyncio.TaskGroup() as lanes:
            lanes.create_task(self._router_lane(end))
            lanes.create_task(self._node_lane(end))

    async def _gap(self, rng: random.Random, end: float) -> bool:
        """Wait before the next fault; False if it would start past the end."""
        gap = rng.uniform(*GAP)
        if asyncio.get_running_loop().time() + gap >= end:
            return False
        await asyncio.sleep(gap)
        return True

    async def _router_lane(self, end: float) -> None:
        rng, cluster = self.router_rng, self.cluster
        while await self._gap(rng, end):
            router = rng.choice(cluster.routers)
            hold = rng.uniform(*ROUTER_HOLD)
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

    async def _node_lane(self, end: float) -> None:
        rng, cluster = self.node_rng, self.cluster
        while await self._gap(rng, end):
            hold = rng.uniform(*NODE_HOLD)
            choice = rng.random()
            # Which nodes a fault may stall every router through (the checker's excuse).
            leaders = await stream_leaders(self.admin)
            if choice < 0.4:
                node = rng.choice(cluster.nodes)
                node.pause()
                self._fault("node_pause", node.name, "SIGSTOP", leaders=leaders)
                await asyncio.sleep(hold)
                node.resume()
                self._fault("node_resume", node.name, f"SIGCONT after {hold:.1f}s")
                continue
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
            self._fault("node_start", node.name, start=started)


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
