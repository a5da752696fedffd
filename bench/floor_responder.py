"""The floor for a registration: the least that keeps what the wire contract shows.

    python bench/floor_responder.py NATS_URL memory|jetstream [BUCKET]

What every registration must do whatever the design, with the project's
libraries, and nothing else: decode the body; validate it with the contract's
model (a 400 needs it); store the instance (a dict, or a JetStream KV create
with the bucket followed by a watch, as every router must follow it); publish
the change event; write one JSON log line through structlog set up as the
router's production logging; reply with the instance. No leases, deadlines,
counts, metrics, duplicates beyond the store's own refusal, or retries.

``bench/run.py`` runs it beside the router and the bare baselines. If the
floor itself misses a target, no design on this stack can meet it; the
router's distance from the floor is what is left to cut. Prints READY when
subscribed, like ``bare_responder.py``.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack
import nats
from nats.aio.msg import Msg
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyWrongLastSequenceError
from responder_life import ready_until_sigterm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import structlog
from aegis.router.logging_setup import configure_logging
from aegis.wire.messages import RegisterRequest

CONTEXT = {"max_metadata_bytes": 16384}


async def main(url: str, store: str, bucket: str) -> None:
    configure_logging("INFO", "json")
    log = structlog.get_logger("aegis.router.registry.engine")  # where instance_registered is said
    loop = asyncio.get_running_loop()
    if sys.version_info >= (3, 12):
        loop.set_task_factory(asyncio.eager_task_factory)
    nc = await nats.connect(url)
    kv = None
    memory: dict[str, bytes] = {}
    follower: asyncio.Task[None] | None = None
    if store == "jetstream":
        kv = await nc.jetstream(timeout=10).create_key_value(
            KeyValueConfig(bucket=bucket, history=1, replicas=1, storage=StorageType.FILE)
        )
        watcher = await kv.watchall()

        async def follow() -> None:
            async for _ in watcher:
                pass  # a router must see every write; the floor only receives them

        follower = asyncio.create_task(follow())
    tasks: set[asyncio.Task[None]] = set()

    async def register(msg: Msg) -> None:
        request = RegisterRequest.model_validate(msgpack.unpackb(msg.data), context=CONTEXT)
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        instance: dict[str, Any] = {
            "service_name": request.service_name,
            "instance_id": request.instance_id,
            "status": "ONLINE",
            "metadata": request.metadata,
            "registered_at": now,
            "last_heartbeat_at": now,
            "version": 1,
        }
        key = f"{request.service_name}.{request.instance_id}"
        record = msgpack.packb({**instance, "session_id": request.session_id})
        try:
            if kv is not None:
                await kv.create(key, record)
            elif key in memory:
                raise KeyWrongLastSequenceError()
            else:
                memory[key] = record
        except KeyWrongLastSequenceError:
            await msg.respond(msgpack.packb({"ok": False, "status": 409}))
            return
        subject = f"ipc.events.service.{request.service_name}"
        await nc.publish(subject, msgpack.packb({"event": "registered", "instance": instance}))
        log.info(
            "instance_registered",
            service=request.service_name,
            instance=request.instance_id,
            status="ONLINE",
        )
        reply = {"ok": True, "status": 201, "instance": instance, "heartbeat_interval": 5.0}
        await msg.respond(msgpack.packb({**reply, "ttl": 15.0}))

    async def on_message(msg: Msg) -> None:
        task = asyncio.create_task(register(msg))
        if not task.done():
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    await nc.subscribe("ipc.service.register", queue="aegis-router", cb=on_message)
    await ready_until_sigterm(nc)
    if follower is not None:
        follower.cancel()
    await nc.drain()


if __name__ == "__main__":
    bucket = sys.argv[3] if len(sys.argv) > 3 else "floor"
    asyncio.run(main(sys.argv[1], sys.argv[2], bucket))
