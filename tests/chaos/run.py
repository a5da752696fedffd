"""One chaos run: start the cluster, run the workload under the nemesis, write the
history, check it.

    python -m tests.chaos.run --seed 7 --duration 120 --out /tmp/chaos-7 [--routers 3]
        [--no-partitions] [--quiet-gap LOW HIGH]

Exit codes: 0 no violation, 1 violations (the checker's summary says which),
2 the harness itself failed. ``DIR/history.jsonl`` is the history; the
routers' logs and the nodes' data stay beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from nats.aio.client import Client as NatsClient

from tests.support.stalls import LoopStalls

from .checker import check
from .cluster import Cluster, RoutesError, Timings, connect_quietly
from .history import HistoryWriter, Record, read_history
from .nemesis import QUIET, HarnessError, Nemesis
from .observers import EventLog, poll_views, sample_stream, view
from .recording import Recorder
from .router_logs import router_log_records
from .storm import COUNT as STORM_COUNT
from .storm import SECONDS as STORM_SECONDS
from .workload import CLIENT_TIMEOUT, Phase, RawClient, SdkClient, rotated

WARMUP = 3.0  # workload running before the first fault
STOP_GRACE = 15.0  # for clients to finish their last requests
CI_DURATION = 40.0  # seconds of faults in the CI test (test_chaos.py) and per seed (seeds.py)


@dataclass
class RunConfig:
    """What to run."""

    seed: int
    duration: float  # seconds of faults
    out: Path
    routers: int = 3
    raw_clients: int = 5
    own_ids: int = 2  # instance ids of its own per raw client
    sdk_clients: int = 2
    timings: Timings = field(default_factory=Timings)
    quiet: float | None = None  # after the last fault; default remove_after + 5 s
    partitions: bool = True  # the nemesis's partition lane (links cut, slowed, halved)
    quiet_gap: tuple[float, float] = QUIET  # seconds of quiet before each round of faults
    storm: bool = True  # a registration storm (tests/chaos/storm.py) halfway through

    @property
    def quiet_period(self) -> float:
        """Seconds of quiet before the final views: enough for anything silent at the
        last fault to be removed, and for the routers to agree."""
        return self.quiet if self.quiet is not None else self.timings.remove_after + 5.0


@dataclass
class RunResult:
    """Where the history is, and what the run did."""

    history: Path
    ops: Counter[str]
    faults: Counter[str]  # every fault record, by kind (ends too)
    injected: Counter[str]  # the faults injected, by kind
    events: int
    last_fault: float | None
    quiet_from: float
    routes: int  # routes at the end, every one through a proxy
    storm: Counter[str] = field(default_factory=Counter)  # its replies, by status


async def run_chaos(config: RunConfig) -> RunResult:
    """Run once and write ``config.out / history.jsonl``; every process is stopped
    on the way out, whatever happens. ``HarnessError`` if the harness failed."""
    config.out.mkdir(parents=True, exist_ok=True)
    path = config.out / "history.jsonl"
    path.unlink(missing_ok=True)
    writer = HistoryWriter(path)
    recorder = Recorder(writer)
    cluster = Cluster(config.out, config.routers, config.timings)
    recorder.write(
        {
            "type": "meta",
            "t": time.time(),
            "seed": config.seed,
            "duration": config.duration,
            "timings": config.timings.as_meta(),
            "routers": [r.name for r in cluster.routers],
            "nodes": [n.name for n in cluster.nodes],
            "node_urls": cluster.node_addresses(),
            "partitions": config.partitions,
            "client_timeout": CLIENT_TIMEOUT,
        }
    )
    # The harness's own loop: when it runs late, its clients' requests wait too.
    stalls = LoopStalls("harness")
    background: list[asyncio.Task[Any]] = [asyncio.create_task(stalls.run())]
    workload: list[asyncio.Task[Any]] = []
    raw: list[RawClient] = []
    events = EventLog(recorder)
    nemesis: Nemesis | None = None
    admin: NatsClient | None = None
    finished: Record | None = None
    routes = 0
    try:
        print(f"chaos seed {config.seed}: 3 nodes, {config.routers} routers", flush=True)
        await asyncio.to_thread(cluster.start)
        routes = await asyncio.to_thread(cluster.wait_for_routes)
        print(f"routez: {routes} routes, every one through a proxy", flush=True)
        admin = await connect_quietly(cluster.urls, "chaos-admin")
        await events.start(cluster.nodes)
        background.append(asyncio.create_task(poll_views(cluster.routers, recorder)))
        background.append(asyncio.create_task(sample_stream(admin, recorder)))
        phase = Phase()
        workload = await start_workload(config, cluster, recorder, phase, raw)
        await asyncio.sleep(WARMUP)
        if config.storm:
            storm = asyncio.create_task(run_storm(cluster.urls, recorder, config.duration / 2))
            background.append(storm)

        print(f"faults for {config.duration:.0f}s", flush=True)
        nemesis = Nemesis(
            cluster,
            recorder,
            config.seed,
            admin,
            partitions=config.partitions,
            quiet=config.quiet_gap,
        )
        await race(nemesis.run(config.duration), workload)
        quiet_from = time.time()
        phase.steady = True
        print(f"quiet for {config.quiet_period:.0f}s", flush=True)
        await race(asyncio.sleep(config.quiet_period), workload)
        async with httpx.AsyncClient() as http:
            for router in cluster.routers:
                await view(http, router, recorder, final=True)
        # The faults may have made nodes dial anew: every route must still be proxied.
        routes = await asyncio.to_thread(cluster.wait_for_routes, 5.0)

        phase.stopping.set()
        await stop_workload(workload)
        finished = {"last_fault": nemesis.last_fault, "quiet_from": quiet_from}
    finally:
        for task in [*background, *workload]:
            task.cancel()
        await asyncio.gather(*background, *workload, return_exceptions=True)
        for client in raw:
            await client.close()
        if admin is not None:
            await admin.close()
        await events.stop()
        cluster.stop()  # blocking on purpose: it must run even while being cancelled
        for stall in [*stalls.records(), *cluster.proxies.stalls.records()]:
            recorder.write(stall)
        for router in cluster.routers:
            for record in router_log_records(router.name, router.process.log_path):
                recorder.write(record)
        if finished is not None:
            recorder.write({"type": "end", "t": time.time(), **finished})
        writer.close()
    assert nemesis is not None
    return RunResult(
        path,
        Counter(recorder.counts),
        Counter(nemesis.counts),
        nemesis.started,
        events.count,
        finished["last_fault"],
        finished["quiet_from"],
        routes,
        storm.result() if config.storm and storm.done() and not storm.cancelled() else Counter(),
    )


async def run_storm(urls: list[str], recorder: Recorder, after: float) -> Counter[str]:
    """After ``after`` seconds, a registration storm from its own process; its replies
    by status, also written as a ``storm`` record (not a fault: it excuses nothing)."""
    await asyncio.sleep(after)
    start = time.time()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.chaos.storm",
        ",".join(urls),
        str(STORM_COUNT),
        str(STORM_SECONDS),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    replies: Counter[str] = Counter(json.loads(out) if proc.returncode == 0 and out else {})
    recorder.write({"type": "storm", "t": time.time(), "start": start, "replies": replies})
    print(f"  storm of {STORM_COUNT} registrations: {by_kind(replies)}", flush=True)
    return replies


async def start_workload(
    config: RunConfig, cluster: Cluster, recorder: Recorder, phase: Phase, raw: list[RawClient]
) -> list[asyncio.Task[None]]:
    """Connect the raw clients (into ``raw``) and start them and the SDK clients."""
    tasks: list[asyncio.Task[None]] = []
    for c in range(config.raw_clients):
        client = RawClient(
            f"raw-{c}",
            recorder,
            phase,
            random.Random(f"{config.seed}/raw-{c}"),
            timings=config.timings,
            holder_subjects=c % 2 == 0,
        )
        await client.connect(rotated(cluster.client_urls(client.name), c))
        raw.append(client)
        own = [(f"svc-{c % 2}", f"raw-{c}-{k}") for k in range(config.own_ids)]
        tasks.append(asyncio.create_task(client.run(own), name=client.name))
    for c in range(config.sdk_clients):
        sdk = SdkClient(
            f"sdk-{c}",
            recorder,
            phase,
            random.Random(f"{config.seed}/sdk-{c}"),
            servers=rotated(cluster.client_urls(f"sdk-{c}"), c + 1),
        )
        tasks.append(asyncio.create_task(sdk.run(), name=sdk.name))
    return tasks


async def stop_workload(tasks: list[asyncio.Task[None]]) -> None:
    """Let the clients finish (the SDK's deregister as they leave), then cancel laggards."""
    _, late = await asyncio.wait(tasks, timeout=STOP_GRACE)
    for task in late:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task  # a client's own crash is the harness's failure: raise it


async def race(main: Coroutine[Any, Any, None], watched: list[asyncio.Task[None]]) -> None:
    """Await ``main``; if a watched task crashes meanwhile, fail with its error."""
    task = asyncio.ensure_future(main)
    pending = {task, *watched}
    try:
        while True:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                if finished is not task and not finished.cancelled() and finished.exception():
                    raise HarnessError(f"client {finished.get_name()} crashed") from (
                        finished.exception()
                    )
            if task in done:
                task.result()
                return
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def check_history(path: Path) -> tuple[int, str]:
    """Run the checker on a history: (number of violations, its summary and each one)."""
    report = check(read_history(path))
    lines = [report.summary()]
    lines += [f"[{v.invariant}] {v.message}" for v in report.violations]
    return len(report.violations), "\n".join(lines)


def describe(result: RunResult) -> str:
    """The run's figures in a few lines."""
    ops = ", ".join(f"{k} {n}" for k, n in sorted(result.ops.items()))
    return (
        f"history: {result.history}\n"
        f"ops: {ops or 'none'}\n"
        f"faults injected: {by_kind(result.injected)}\n"
        f"events: {result.events}\n"
        f"storm replies: {by_kind(result.storm)}\n"
        f"routez at the end: {result.routes} routes, every one through a proxy"
    )


def by_kind(counts: Counter[str]) -> str:
    """``kind n, kind n`` in kind order, or ``none``."""
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "none"


def add_schedule_options(parser: argparse.ArgumentParser) -> None:
    """The nemesis's options, shared with ``tests.chaos.seeds``."""
    parser.add_argument(
        "--no-partitions",
        dest="partitions",
        action="store_false",
        help="no partition lane (no links cut, slowed or halved; processes only)",
    )
    parser.add_argument(
        "--quiet-gap",
        type=float,
        nargs=2,
        default=list(QUIET),
        metavar=("LOW", "HIGH"),
        help="seconds of quiet before each round of faults (default %(default)s)",
    )
    parser.add_argument(
        "--no-storm",
        dest="storm",
        action="store_false",
        help="no registration storm halfway through the faults",
    )


def main(argv: list[str] | None = None) -> int:
    """The command line: run, check, print the summary; the exit code says how it went."""
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.run", description=__doc__)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of faults")
    parser.add_argument("--out", type=Path, required=True, help="folder for history and logs")
    parser.add_argument("--routers", type=int, choices=(2, 3), default=3)
    add_schedule_options(parser)
    args = parser.parse_args(argv)
    config = RunConfig(
        seed=args.seed,
        duration=args.duration,
        out=args.out,
        routers=args.routers,
        partitions=args.partitions,
        quiet_gap=(args.quiet_gap[0], args.quiet_gap[1]),
        storm=args.storm,
    )

    async def run() -> RunResult:
        # SIGTERM cancels the run, so its clean-up stops every process it started.
        this = asyncio.current_task()
        assert this is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, this.cancel)
        return await run_chaos(config)

    try:
        result = asyncio.run(run())
    except (HarnessError, RoutesError) as exc:
        print(f"harness failed: {exc}", file=sys.stderr)
        return 2
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("interrupted: every process it started is stopped", file=sys.stderr)
        return 130
    print(describe(result))
    violations, summary = check_history(result.history)
    print(summary)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
