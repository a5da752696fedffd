"""Capacity: one router on the JetStream store, default timings, N instances
heartbeating every INTERVAL seconds for DURATION seconds.

    python bench/capacity.py                      # 100,000 instances, every 10 s, 5 minutes
    python bench/capacity.py --instances 20000 --duration 60
    python bench/capacity.py --profile /tmp/phases   # plus py-spy per 10 s window

Reports whether any instance ever left ONLINE (from the change events, and
from the REST counts checked every 10 s), heartbeat latency (p50/p99/max),
the router's CPU and memory, and store writes per heartbeat read from the KV
stream's own sequence. The router's CPU per steady heartbeat with every
instance held (the 10 s windows after the first heartbeat round with no
registration in them) is printed beside the burst figure: a closed-loop
burst of 20,000 heartbeats against a fresh router on its own bucket, in the
same run, as bench/run.py times it. ``--profile DIR`` samples the router with
py-spy in 10 s windows and prints what it spent its core on in each
(bench/phases.py). The load is storm.py's: open-loop generator processes
(bench/open_loop.py) in which every instance registers at its turn (RATE per
second over all) and then heartbeats on its own timer, never waiting for a
reply; their worst lag behind that timetable is reported too, since a
generator that falls behind would make instances look silent.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import tempfile
from pathlib import Path
from typing import Any

from phases import Sampler, table
from run import bucket_writes, nats_load, rss_kib
from storm import BURST_CONCURRENCY, Setup, ms, pids, router_set, storm, summary_lines

from tests.support.procs import NatsServer

PREFIX = "cap"
BUCKET = "capacity"
BURST = 20_000


def burst_heartbeat_cpu_us(tmp: Path, nats_url: str, setup: Setup) -> float:
    """Router CPU per heartbeat of a closed-loop burst (the second round, the routine one)
    against a fresh router on its own bucket."""
    with router_set(tmp, nats_url, setup, "capacity_burst") as routers:
        pid = pids(routers)[0]
        nats_load(nats_url, "register", BURST, BURST_CONCURRENCY, "burst", pid)
        nats_load(nats_url, "heartbeat", BURST, BURST_CONCURRENCY, "burst", pid)
        return nats_load(nats_url, "heartbeat", BURST, BURST_CONCURRENCY, "burst", pid)["cpu_us"]


def steady_cpu_us(result: dict[str, Any], interval: float) -> list[float]:
    """Router CPU per heartbeat in each check window of the steady phase: after the storm
    and one heartbeat round, while every instance heartbeats, no registration sent."""
    out: list[float] = []
    rows = result["rows"]
    for before, row in itertools.pairwise(rows):
        if row["t"] <= result["storm_s"] + interval or row["t"] > result["sending_s"]:
            continue
        regs = row["counters"]["reg_sent"] - before["counters"]["reg_sent"]
        beats = row["counters"]["hb_sent"] - before["counters"]["hb_sent"]
        if regs or beats <= 0:
            continue
        out.append(row["router_cpu_pct"][0] / 100 * (row["t"] - before["t"]) / beats * 1e6)
    return out


def main() -> None:
    """Run the load once and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--loaders", type=int, default=2)
    parser.add_argument(
        "--rate", type=float, default=4000.0, help="registrations per second, all loaders"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="client request timeout, s")
    parser.add_argument("--profile", type=Path, help="py-spy windows into this directory")
    args = parser.parse_args()
    n = args.instances
    setup = Setup(
        n, args.interval, args.duration, args.timeout, args.loaders, 1, "jetstream", 10.0, 0
    )
    with tempfile.TemporaryDirectory(prefix="aegis-capacity-") as tmp_dir:
        tmp = Path(tmp_dir)
        nats_server = NatsServer(data_dir=tmp / "nats")
        nats_server.start()
        nats_pid = nats_server.process.pid if nats_server.process else None
        try:
            burst_us = burst_heartbeat_cpu_us(tmp, nats_server.url, setup)
            with router_set(tmp, nats_server.url, setup, BUCKET) as routers:
                sequence = bucket_writes(nats_server.url, BUCKET)
                sampler = None
                if args.profile is not None:
                    sampler = Sampler(pids(routers)[0], args.profile)
                    sampler.start()
                result = asyncio.run(
                    storm(setup, nats_server.url, routers, args.rate, PREFIX, nats_pid)
                )
                windows = [] if sampler is None else sampler.stop()
                written = bucket_writes(nats_server.url, BUCKET) - sequence
                rss_mib = rss_kib(pids(routers)[0]) / 1024
        finally:
            nats_server.stop()
    print()
    for text in summary_lines(result):
        print(text)
    c, latency, left = result["counters"], result["hb_latency_s"], result["left_online"]
    # Checks after the load stopped would count the instances falling silent.
    sending = [row for row in result["rows"] if row["t"] <= result["sending_s"]]
    worst = {
        status: max((row["statuses"].get(status, 0) for row in sending), default=0)
        for status in ("UNHEALTHY", "OFFLINE")
    }
    elapsed = result["elapsed_s"]
    steady = steady_cpu_us(result, args.interval)
    steady_text = (
        f"{statistics.median(steady):.0f} us median, {max(steady):.0f} us worst of "
        f"{len(steady)} windows"
        if steady
        else "no steady window"
    )
    # Every successful registration is one store write; the rest are heartbeats' refreshes.
    refreshes = written - c["reg_ok"]
    rows = [
        ("instances registered (paced, then heartbeating)", f"{c['reg_ok']:,} of {n:,}"),
        (
            "heartbeats answered 200",
            f"{c['hb_ok']:,} of {c['hb_sent']:,} ({c['hb_sent'] / elapsed:,.0f}/s); "
            f"{c['hb_not_found']:,} 404, {c['hb_timeouts']:,} timed out, {c['hb_failed']:,} "
            "other errors",
        ),
        (
            "registrations failed (timed out / refused / other)",
            f"{c['reg_timeouts']:,} / {c['reg_refused']:,} / {c['reg_failed']:,}",
        ),
        ("left ONLINE (change events)", f"{left['by_events']:,}"),
        (
            f"most UNHEALTHY / OFFLINE at a check (every {setup.every:g} s)",
            f"{worst['UNHEALTHY']:,} / {worst['OFFLINE']:,}",
        ),
        (
            "heartbeat latency p50 / p99 / max",
            " / ".join(ms(latency[k]) for k in ("p50", "p99", "max")) + " ms",
        ),
        (
            "loaders' worst lag behind schedule",
            f"{result['lag_max_s']:.2f} s (p99 "
            + ", ".join(ms(g["lag_p99_s"]) for g in result["generators"])
            + " ms)",
        ),
        (
            "router CPU",
            f"{result['router_cpu_pct'][0]:.0f} % of a core over {elapsed:.0f} s (registrations "
            "included)",
        ),
        (
            f"router CPU per steady heartbeat, {n:,} held (burst of {BURST:,}, fresh router)",
            f"{steady_text} ({burst_us:.0f} us)",
        ),
        ("router RSS", f"{rss_mib:,.0f} MiB"),
        (
            "store writes per heartbeat (KV stream sequence, registrations taken out)",
            f"{refreshes / max(c['hb_sent'], 1):.4f} ({refreshes:,} writes)",
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
    if windows:
        print(f"\nWhere the router's core went (py-spy, {args.profile}), by 10 s window:\n")
        for text in table(windows, result["start_monotonic"]):
            print(text)


if __name__ == "__main__":
    main()
