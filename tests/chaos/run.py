"""One chaos run: start the cluster, run the workload under the nemesis, write the
history, check it.

    python -m tests.chaos.run --seed 7 --duration 120 --out /tmp/chaos-7 [--routers 3]

Exit codes: 0 no violation, 1 violations (the checker's summary says which),
2 the harness itself failed. ``DIR/history.jsonl`` is the history; the
routers' logs and the nodes' data stay beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

from .checker import check
from .cluster import Cluster, Timings, connect_quietly
from .history import HistoryWriter, Record, read_history
from .nemesis import HarnessError, Nemesis
from .observers import EventLog, poll_views, view
from .recording import Recorder
from .router_logs import router_log_records
from .workload import CLIENT_TIMEOUT, Phase, RawClient, SdkClient, rotated

WARMUP = 3.0  # workload running before the first fault
STOP_GRACE = 15.0  # for clients to finish their last requests


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
    faults: Counter[str]
    events: int
    last_fault: float | None
    quiet_from: float


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
            "node_urls": {n.name: n.url for n in cluster.nodes},
            "client_timeout": CLIENT_TIMEOUT,
        }
    )
    background: list[asyncio.Task[Any]] = []
    workload: list[asyncio.Task[Any]] = []
    raw: list[RawClient] = []
    events = EventLog(recorder)
    nemesis: Nemesis | None = None
    admin: NatsClient | None = None
    finished: Record | None = None
    try:
        print(f"chaos seed {config.seed}: 3 nodes, {config.routers} routers", flush=True)
        await asyncio.to_thread(cluster.start)
        admin = await connect_quietly(cluster.urls, "chaos-admin")
        await events.start(cluster.nodes)
        background.append(asyncio.create_task(poll_views(cluster.routers, recorder)))
        phase = Phase()
        workload = await start_workload(config, cluster, recorder, phase, raw)
        await asyncio.sleep(WARMUP)

        print(f"faults for {config.duration:.0f}s", flush=True)
        nemesis = Nemesis(cluster, recorder, config.seed, admin)
        await race(nemesis.run(config.duration), workload)
        quiet_from = time.time()
        phase.steady = True
        print(f"quiet for {config.quiet_period:.0f}s", flush=True)
        await race(asyncio.sleep(config.quiet_period), workload)
        async with httpx.AsyncClient() as http:
            for router in cluster.routers:
                await view(http, router, recorder, final=True)

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
        events.count,
        finished["last_fault"],
        finished["quiet_from"],
    )


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
        await client.connect(rotated(cluster.urls, c))
        raw.append(client)
        own = [(f"svc-{c % 2}", f"raw-{c}-{k}") for k in range(config.own_ids)]
        tasks.append(asyncio.create_task(client.run(own), name=client.name))
    for c in range(config.sdk_clients):
        sdk = SdkClient(
            f"sdk-{c}",
            recorder,
            phase,
            random.Random(f"{config.seed}/sdk-{c}"),
            servers=rotated(cluster.urls, c + 1),
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
    faults = ", ".join(f"{k} {n}" for k, n in sorted(result.faults.items()))
    return (
        f"history: {result.history}\n"
        f"ops: {ops or 'none'}\n"
        f"faults: {faults or 'none'}\n"
        f"events: {result.events}"
    )


def main(argv: list[str] | None = None) -> int:
    """The command line: run, check, print the summary; the exit code says how it went."""
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.run", description=__doc__)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of faults")
    parser.add_argument("--out", type=Path, required=True, help="folder for history and logs")
    parser.add_argument("--routers", type=int, choices=(2, 3), default=3)
    args = parser.parse_args(argv)
    config = RunConfig(seed=args.seed, duration=args.duration, out=args.out, routers=args.routers)

    async def run() -> RunResult:
        # SIGTERM cancels the run, so its clean-up stops every process it started.
        this = asyncio.current_task()
        assert this is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, this.cancel)
        return await run_chaos(config)

    try:
        result = asyncio.run(run())
    except HarnessError as exc:
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
