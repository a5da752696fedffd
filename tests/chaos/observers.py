"""What the harness watches: change events on the bus, every router's REST view, and
how far the registry's stream has gone.

Events are heard by one subscriber per node, so a frozen or dead node does
not blind the history; an event heard on several nodes is written once (by
its service, instance, version, kind and status), with the node that heard
it first.

Before each view the router's ``aegis_store_watch_revision`` is read: the
view lists every change up to that revision at least. The registry stream's
last sequence is sampled every ``STREAM_EVERY`` seconds: every write
committed before a sample was asked for is at or below it. Together they
prove a view fresh (the checker's ``History.fresh_since``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from typing import Any

import httpx
import msgpack
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from .cluster import STREAM, Node, Router, connect_quietly
from .recording import Recorder

EVENTS = "ipc.events.service.*"
VIEW_EVERY = 1.0
VIEW_TIMEOUT = 1.5
STREAM_EVERY = 0.5
# The registry bucket's watch revision, in the router's Prometheus text.
WATCH_REVISION = re.compile(
    "^"
    + re.escape(f'aegis_store_watch_revision{{bucket="{STREAM.removeprefix("KV_")}"}} ')
    + r"(\S+)$",
    re.MULTILINE,
)
LOOP_LAG = re.compile(r"^aegis_event_loop_lag_seconds (\S+)$", re.MULTILINE)


class EventLog:
    """Subscribers on every node writing each change event once."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self._seen: set[tuple[Any, ...]] = set()
        self._connections: list[NatsClient] = []
        self.count = 0

    async def start(self, nodes: list[Node]) -> None:
        """Subscribe on each node (a connection per node, reconnecting to it forever)."""
        for node in nodes:
            nc = await connect_quietly([node.url], f"chaos-events-{node.name}")

            async def heard(msg: Msg, node_name: str = node.name) -> None:
                self._heard(msg, node_name)

            await nc.subscribe(EVENTS, cb=heard, pending_msgs_limit=1_000_000)
            await nc.flush()
            self._connections.append(nc)

    def _heard(self, msg: Msg, node: str) -> None:
        t = time.time()
        try:
            event = msgpack.unpackb(msg.data)
            instance = event["instance"]
            key = (
                instance["service_name"],
                instance["instance_id"],
                instance.get("version"),
                event["event"],
                instance["status"],
            )
        except Exception:
            self.recorder.write({"type": "event", "t": t, "node": node, "raw": repr(msg.data)})
            return
        if key in self._seen:
            return
        self._seen.add(key)
        self.count += 1
        self.recorder.write(
            {
                "type": "event",
                "t": t,
                "event": event["event"],
                "service": instance["service_name"],
                "instance": instance["instance_id"],
                "status": instance["status"],
                "previous_status": event.get("previous_status"),
                "version": instance.get("version"),
                "node": node,
                "subject": msg.subject,
            }
        )

    async def stop(self) -> None:
        """Close every subscriber."""
        for nc in self._connections:
            with contextlib.suppress(Exception):
                await nc.close()


async def router_gauges(http: httpx.AsyncClient, router: Router) -> dict[str, Any]:
    """How far ``router``'s registry watch has read (``revision``) and how late its
    event loop ran lately (``loop_lag``, the worst of 2 s): None each if unknown."""
    gauges: dict[str, Any] = {"revision": None, "loop_lag": None}
    try:
        response = await http.get(f"{router.url}/metrics", timeout=VIEW_TIMEOUT)
        response.raise_for_status()
    except Exception:
        return gauges
    if found := WATCH_REVISION.search(response.text):
        gauges["revision"] = int(float(found.group(1)))
    if found := LOOP_LAG.search(response.text):
        gauges["loop_lag"] = float(found.group(1))
    return gauges


async def view(http: httpx.AsyncClient, router: Router, recorder: Recorder, **extra: Any) -> None:
    """Read one router's instances over REST and write the ``view`` record, with the
    watch revision read just before (``revision``: the view is at least that fresh) and
    the router's loop lag then (``loop_lag``, for whoever reads the history)."""
    gauges = await router_gauges(http, router)
    invoke = time.time()
    record: dict[str, Any] = {"type": "view", "router": router.name, "invoke": invoke, **extra}
    record |= gauges
    try:
        response = await http.get(f"{router.url}/api/v1/admin/instances", timeout=VIEW_TIMEOUT)
        response.raise_for_status()
        record["instances"] = [
            {"service": i["service_name"], "instance": i["instance_id"], "status": i["status"]}
            for i in response.json()["instances"]
        ]
    except Exception as exc:
        record["error"] = repr(exc)
    record["complete"] = record["t"] = time.time()
    recorder.write(record)


async def poll_views(routers: list[Router], recorder: Recorder) -> None:
    """Every router's view each second, until cancelled (each router on its own
    task, so one that hangs does not delay the others)."""
    async with httpx.AsyncClient() as http:

        async def one(router: Router) -> None:
            while True:
                started = time.monotonic()
                await view(http, router, recorder)
                await asyncio.sleep(max(0.0, VIEW_EVERY - (time.monotonic() - started)))

        async with asyncio.TaskGroup() as tasks:
            for router in routers:
                tasks.create_task(one(router))


async def sample_stream(nc: NatsClient, recorder: Recorder) -> None:
    """The registry stream's last sequence every STREAM_EVERY seconds, as ``stream``
    records with the node that answered as its leader, until cancelled (a sample that
    gets no answer is skipped). A node cut off while it led may still answer, from
    its own stale copy: the checker trusts no sample from such a node."""
    js = nc.jetstream(timeout=1.0)
    while True:
        invoke = time.time()
        with contextlib.suppress(Exception):
            info: Any = await js.stream_info(STREAM)
            last = int(info.state.last_seq)
            leader = info.cluster.leader if info.cluster is not None else None
            now = time.time()
            recorder.write(
                {"type": "stream", "t": now, "stream": STREAM, "invoke": invoke, "complete": now}
                | {"last_seq": last, "leader": leader}
            )
        await asyncio.sleep(max(0.0, invoke + STREAM_EVERY - time.time()))
