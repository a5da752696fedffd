"""Capacity: one router on the JetStream store, default timings, N instances
heartbeating every INTERVAL seconds for DURATION seconds.

    python bench/capacity.py                      # 100,000 instances, every 10 s, 5 minutes
    python bench/capacity.py --instances 20000 --duration 60

Reports whether any instance ever left ONLINE (from the change events, and
from the REST counts checked every 10 s), heartbeat latency (p50/p99/max),
the router's CPU and memory, and store writes per heartbeat read from the KV
stream's own sequence. The load comes from separate processes, each keeping
its own schedule; their worst lag behind it is reported too, since a loader
that falls behind would make instances look silent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgpack
import nats
from run import BENCH, cpu_seconds, rss_kib

from tests.support.procs import NatsServer, router_process

PREFIX = "cap"


async def statuses(http: httpx.AsyncClient) -> dict[str, int]:
    """Instances by status, over every service, from the REST API."""
    totals: dict[str, int] = {}
    for service in (await http.get("/api/v1/admin/services")).json()["services"]:
        for status, n in service["statuses"].items():
            totals[status] = totals.get(status, 0) + n
    return totals


async def kv_sequence(url: str) -> int:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info("KV_aegis_registry")
        return int(info.state.last_seq)
    finally:
        await nc.close()


async def watch_changes(url: str, seen: list[dict[str, Any]], stop: asyncio.Event) -> None:
    """Keep every change event that is not a registration."""
    nc = await nats.connect(url)

    async def keep(msg: Any) -> None:
        event = msgpack.unpackb(msg.data)
        if event["event"] != "registered":
            seen.append(event)

    await nc.subscribe("ipc.events.service.*", cb=keep)
    await stop.wait()
    await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--loaders", type=int, default=2)
    parser.add_argument(
        "--rate", type=float, default=4000.0, help="registrations per second, all loaders"
    )
    args = parser.parse_args()
    asyncio.run(run(args))


async def run(args: argparse.Namespace) -> None:
    n = args.instances
    with tempfile.TemporaryDirectory(prefix="aegis-capacity-") as tmp_dir:
        tmp = Path(tmp_dir)
        nats_server = NatsServer(data_dir=tmp / "nats")
        nats_server.start()
        try:
            with router_process(tmp, nats_url=nats_server.url, name="capacity") as router:
                assert router.process is not None
                pid = router.process.pid
                began = time.monotonic()
                changes: list[dict[str, Any]] = []
                stop = asyncio.Event()
                watcher = asyncio.create_task(watch_changes(nats_server.url, changes, stop))
                sequence = await kv_sequence(nats_server.url)
                cpu = cpu_seconds(pid)
                k = args.loaders
                loaders = [
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        str(BENCH / "paced_heartbeats.py"),
                        nats_server.url,
                        PREFIX,
                        str(i * n // k),
                        str((i + 1) * n // k),
                        str(args.interval),
                        str(args.duration),
                        str(args.rate / k),
                        stdout=asyncio.subprocess.PIPE,
                    )
                    for i in range(k)
                ]
                outputs = [asyncio.create_task(p.communicate()) for p in loaders]
                worst: dict[str, int] = {}
                async with httpx.AsyncClient(base_url=router.http_url, timeout=30) as http:
                    while not all(o.done() for o in outputs):
                        await asyncio.sleep(10)
                        counts = await statuses(http)
                        for status in ("UNHEALTHY", "OFFLINE"):
                            worst[status] = max(worst.get(status, 0), counts.get(status, 0))
                        print(f"  {time.monotonic() - began:5.0f} s  {counts}", flush=True)
                results = [json.loads((await o)[0].decode().splitlines()[-1]) for o in outputs]
                elapsed = time.monotonic() - began
                cpu_used = cpu_seconds(pid) - cpu
                written = await kv_sequence(nats_server.url) - sequence
                rss_mib = rss_kib(pid) / 1024
                stop.set()
                await watcher
        finally:
            nats_server.stop()
    registered = sum(r["registered"] for r in results)
    sent = sum(r["sent"] for r in results)
    errors = sum(r["errors"] for r in results)
    lag = max(r["max_lag_s"] for r in results)
    latency = [max(r[key] for r in results) for key in ("p50_ms", "p99_ms", "max_ms")]
    rows = [
        ("instances registered (paced, then heartbeating)", f"{registered:,}"),
        ("heartbeats answered", f"{sent - errors:,} of {sent:,} ({sent / elapsed:,.0f}/s)"),
        ("left ONLINE (change events)", f"{len(changes)}"),
        (
            "most UNHEALTHY / OFFLINE at a check (every 10 s)",
            f"{worst.get('UNHEALTHY', 0)} / {worst.get('OFFLINE', 0)}",
        ),
        ("heartbeat latency p50 / p99 / max", " / ".join(f"{v:.1f}" for v in latency) + " ms"),
        ("loaders' worst lag behind schedule", f"{lag:.2f} s"),
        (
            "router CPU",
            f"{cpu_used / elapsed * 100:.0f} % of a core over {elapsed:.0f} s (registrations "
            "included)",
        ),
        ("router RSS", f"{rss_mib:,.0f} MiB"),
        (
            "store writes per heartbeat (KV stream sequence, registrations taken out)",
            f"{(written - registered) / max(sent, 1):.4f} ({written - registered:,} writes)",
        ),
    ]
    every = (
        f"registered at {args.rate:g}/s, a heartbeat each every {args.interval:g} s, "
        f"{args.duration:g} s after the last registration"
    )
    print(f"\n| {n:,} instances, {every} | |")
    print("|---|---|")
    for what, figure in rows:
        print(f"| {what} | {figure} |")


if __name__ == "__main__":
    main()
