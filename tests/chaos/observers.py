"""What the harness watches: change events on the bus, and every router's REST view.

Events are heard by one subscriber per node, so a frozen or dead node does
not blind the history; an event heard on several nodes is written once (by
its service, instance, version, kind and status), with the node that heard
it first.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
import msgpack
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from .cluster import Node, Router, connect_quietly
from .recording import Recorder

EVENTS = "ipc.events.service.*"
VIEW_EVERY = 1.0
VIEW_TIMEOUT = 1.5


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


async def view(http: httpx.AsyncClient, router: Router, recorder: Recorder, **extra: Any) -> None:
    """Read one router's instances over REST and write the ``view`` record."""
    invoke = time.time()
    record: dict[str, Any] = {"type": "view", "router": router.name, "invoke": invoke, **extra}
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
