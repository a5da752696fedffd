"""CPU cost of one registration inside the router, without NATS: the handler alone.

    python bench/register_inprocess.py [COUNT]

Runs the ipc.service.register endpoint over a memory store with production
logging (JSON, to /dev/null) and an event sink that encodes each event, and
prints microseconds per request beside the bare baseline (decode the body,
encode a reply). Used to measure each optimisation before and after.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the logs' destination

from aegis.router.handlers import endpoints  # noqa: E402
from aegis.router.logging_setup import configure_logging  # noqa: E402
from aegis.router.registry import Registry  # noqa: E402
from aegis.router.store import MemoryStore  # noqa: E402
from aegis.wire.messages import ChangeEvent  # noqa: E402


class EncodingSink:
    """Does the work a NATS publish would, minus the socket."""

    async def publish(self, event: ChangeEvent) -> None:
        """Encode the event."""
        msgpack.packb(event.model_dump(mode="json", exclude_none=True))


async def main(count: int) -> None:
    configure_logging(os.environ.get("BENCH_LOG_LEVEL", "INFO"), "json")
    registry = Registry(MemoryStore(), events=EncodingSink())
    register = endpoints(registry, max_request_bytes=65536, max_metadata_bytes=16384)[
        "ipc.service.register"
    ]
    bodies = [
        msgpack.packb(
            {
                "service_name": f"svc-{i % 100}",
                "instance_id": f"i-{i}",
                "session_id": "s",
                "metadata": {"version": "1.4.2", "zone": "eu-west-1a", "port": 8080},
            }
        )
        for i in range(count)
    ]
    reply = msgpack.packb({"ok": True, "status": 201})
    start = time.perf_counter()
    for body in bodies:
        msgpack.unpackb(body)
        msgpack.packb(reply)
    bare = (time.perf_counter() - start) / count * 1e6
    start = time.perf_counter()
    for body in bodies:
        await register(body)
    ours = (time.perf_counter() - start) / count * 1e6
    print(
        f"register endpoint: {ours:.1f} us/request; bare decode+reply: {bare:.1f} us/request",
        file=sys.__stdout__,
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000))
