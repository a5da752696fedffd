"""CPU cost of one registration and one heartbeat inside the router, without NATS.

    python bench/register_inprocess.py [COUNT]
    python bench/register_inprocess.py 20000 --profile heartbeat   # where it goes

Runs the ipc.service.register endpoint over a memory store with production
logging (JSON, to /dev/null) and an event sink that takes each event (the
registry packs it), then
the ipc.service.heartbeat endpoint twice per registered instance (steady
heartbeats: answered from memory, nothing written; the second round is the
figure, as an instance heartbeats all its life). Prints microseconds per
request of each beside the bare baseline (decode the body, encode a reply).
Used to measure each optimisation before and after. ``BENCH_LOG_LEVEL``
(default INFO) sets the router's log level. ``--profile register|heartbeat``
runs that phase under cProfile and prints its top functions by own time
(cProfile roughly doubles every figure; read the shares, not the microseconds).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the logs' destination

from aegis.router.bus.endpoints import endpoints  # noqa: E402
from aegis.router.logging_setup import configure_logging  # noqa: E402
from aegis.router.registry.operations import Registry  # noqa: E402
from aegis.router.store.port import MemoryStore  # noqa: E402
from aegis.wire.messages import HEARTBEAT_SUBJECT, REGISTER_SUBJECT  # noqa: E402


class EncodingSink:
    """Takes the events the registry packed, as a NATS publish would, minus the socket."""

    async def publish(self, service_name: str, event: dict[str, Any], data: bytes) -> None:
        """Nothing: the registry packed the event already."""


def bodies(count: int, *, register: bool) -> list[bytes]:
    """The request bodies nats_load.py sends, one per instance."""
    out = []
    for i in range(count):
        fields: dict[str, object] = {
            "service_name": f"svc-{i % 100}",
            "instance_id": f"i-{i}",
            "session_id": "s",
        }
        if register:
            fields["metadata"] = {"version": "1.4.2", "zone": "eu-west-1a", "port": 8080}
        out.append(msgpack.packb(fields))
    return out


async def per_request(
    handler: Callable[[bytes], Awaitable[bytes]], data: list[bytes], profile: bool = False
) -> float:
    """Microseconds per call of ``handler`` over ``data``; checks every reply succeeded.

    With ``profile``, under cProfile, and the top of the profile is printed.
    """
    profiler = cProfile.Profile() if profile else None
    start = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    replies = [await handler(body) for body in data]
    if profiler is not None:
        profiler.disable()
    elapsed = (time.perf_counter() - start) / len(data) * 1e6
    if profiler is not None:
        stats = pstats.Stats(profiler, stream=sys.__stdout__)
        stats.sort_stats("tottime").print_stats(TOP)
    statuses = {msgpack.unpackb(reply)["status"] for reply in replies}
    assert statuses <= {200, 201}, statuses
    return elapsed


TOP = 25


async def main(count: int, profile: str | None) -> None:
    configure_logging(os.environ.get("BENCH_LOG_LEVEL", "INFO"), "json")
    registry = Registry(MemoryStore(), events=EncodingSink())
    handlers = endpoints(registry, max_request_bytes=65536, max_metadata_bytes=16384)
    registrations = bodies(count, register=True)
    heartbeats = bodies(count, register=False)
    reply = msgpack.packb({"ok": True, "status": 201})
    start = time.perf_counter()
    for body in registrations:
        msgpack.unpackb(body)
        msgpack.packb(reply)
    bare = (time.perf_counter() - start) / count * 1e6
    register = await per_request(handlers[REGISTER_SUBJECT], registrations, profile == "register")
    first = await per_request(handlers[HEARTBEAT_SUBJECT], heartbeats)
    # Steady state: an instance heartbeats all its life, registers once.
    heartbeat = await per_request(handlers[HEARTBEAT_SUBJECT], heartbeats, profile == "heartbeat")
    print(
        f"register endpoint: {register:.1f} us/request; heartbeat endpoint: {heartbeat:.1f} "
        f"us/request (first after registering: {first:.1f}); bare decode+reply: "
        f"{bare:.1f} us/request",
        file=sys.__stdout__,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", type=int, nargs="?", default=20000, help="requests of each")
    parser.add_argument(
        "--profile", choices=("register", "heartbeat"), help="profile this phase with cProfile"
    )
    args = parser.parse_args()
    asyncio.run(main(args.count, args.profile))
