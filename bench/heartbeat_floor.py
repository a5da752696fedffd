"""The floor for a steady heartbeat: the least that keeps what the wire contract shows.

    python bench/heartbeat_floor.py NATS_URL

Decodes the body, validates it with the contract's ``InstanceRequest``, finds
the instance (a dict; an instance first seen is taken as registered), replies
with the instance and its new contact time (the router's reply layout and
size), and counts the request in the router's two Prometheus metrics. No
leases, liveness check, deadlines, sessions or logs. ``bench/run.py`` runs it
beside the router and the bare responder: what the router costs above it is
its own bookkeeping. Prints READY when subscribed, like ``bare_responder.py``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack
import nats
from nats.aio.msg import Msg
from responder_life import ready_until_sigterm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aegis.router.domain import iso
from aegis.router.metrics import latency_histogram, requests_counter
from aegis.wire.messages import InstanceRequest

METADATA = {"version": "1.4.2", "zone": "eu-west-1a", "port": 8080}


async def main(url: str) -> None:
    nc = await nats.connect(url)
    counter, latency = requests_counter("heartbeat", "ok"), latency_histogram("heartbeat")
    known: dict[tuple[str, str], dict[str, Any]] = {}
    registered_at = iso(datetime.now(UTC))

    async def answer(msg: Msg) -> None:
        started = time.perf_counter()
        request = InstanceRequest.model_validate(msgpack.unpackb(msg.data))
        key = (request.service_name, request.instance_id)
        instance = known.get(key)
        if instance is None:
            instance = known[key] = {
                "service_name": request.service_name,
                "instance_id": request.instance_id,
                "status": "ONLINE",
                "metadata": METADATA,
                "registered_at": registered_at,
                "last_heartbeat_at": registered_at,
                "version": 1,
            }
        instance["last_heartbeat_at"] = iso(datetime.now(UTC))
        reply = {"ok": True, "status": 200, "instance": instance}
        reply["heartbeat_subject"] = "ipc.router.0123456789ab.heartbeat"
        await msg.respond(msgpack.packb(reply))
        counter.inc()
        latency.observe(time.perf_counter() - started)

    await nc.subscribe("ipc.service.heartbeat", queue="aegis-router", cb=answer)
    await ready_until_sigterm(nc)
    await nc.drain()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
