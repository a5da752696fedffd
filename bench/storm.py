"""Registration storm: N instances register at a multiple of the router's capacity, then
heartbeat, from open-loop generators that act like SDK clients.

    python bench/storm.py                                  # 100,000 instances at 1, 1.5, 3 x
    python bench/storm.py --instances 5000 --multiples 1,3 --duration 30
    python bench/storm.py --capacity 4000 --multiples 2    # capacity given, not measured
    python bench/storm.py --storm-seconds 10               # one run: all N within 10 s
    python bench/storm.py --routers 2                      # two routers share the bucket
    python bench/storm.py --quick                          # tiny: checks it still runs

Capacity (registrations/s) is measured first, unless given: a closed-loop
burst of registrations (``nats_load.py``, 64 in flight) against a router set of
the same configuration, on its own bucket. Each run then starts a fresh router
set on a fresh bucket; instance ``i`` registers first at ``i / rate`` seconds
after the storm starts, so the storm lasts ``N / rate`` seconds, and every
instance heartbeats every ``--interval`` seconds from its registration reply
until ``--duration`` seconds after the storm. The load comes from
``--loaders`` processes (bench/open_loop.py: open loop, SDK-like retries).

Every ``--every`` seconds a row: instances by status (REST), registrations
sent / succeeded / refused (503) / timed out / retried, heartbeat latency, the
generators' lag, router CPU, ``/healthz`` latency (probed every 100 ms by its
own process) and instances that left ONLINE (change events). Then a summary:
when every instance was ONLINE, how many instances whose heartbeats all went
out on time ever left ONLINE, and whether the run counts (it does not if a
generator fell more than 1 s behind its timetable).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import queue
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from multiprocessing.context import SpawnContext, SpawnProcess
from pathlib import Path
from typing import Any

import httpx
from open_loop import ON_TIME, Counters, Histogram, Plan, Snapshot, deal, generate
from run import cpu_seconds, nats_load
from watch import poll_healthz, statuses, watch_events

from tests.support.procs import NatsServer, RouterProcess, router_process

SERVICES = 100
LAG_LIMIT = 1.0  # seconds: a generator further behind its timetable voids the run
BURST_CONCURRENCY = 64


@dataclass(frozen=True)
class Setup:
    """One run's fixed parameters."""

    instances: int
    interval: float
    duration: float
    timeout: float
    loaders: int
    routers: int
    store: str
    every: float
    capacity_burst: int
    shared_heartbeats: bool = False  # v1 clients: every heartbeat on the shared subject


@contextmanager
def router_set(
    tmp: Path, nats_url: str, setup: Setup, bucket: str
) -> Iterator[list[RouterProcess]]:
    """``setup.routers`` routers on ``nats_url`` sharing the store ``bucket``, started."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(
                router_process(
                    tmp,
                    nats_url=nats_url,
                    name=f"{bucket}-{k}",
                    AEGIS_STORE=setup.store,
                    AEGIS_KV_BUCKET=bucket,
                )
            )
            for k in range(setup.routers)
        ]


def pids(routers: list[RouterProcess]) -> list[int]:
    """The routers' process ids."""
    return [r.process.pid for r in routers if r.process is not None]


def measure_capacity(tmp: Path, nats_url: str, setup: Setup) -> float:
    """Registrations/s of a closed-loop burst against a fresh router set."""
    with router_set(tmp, nats_url, setup, "storm_capacity") as routers:
        burst = nats_load(
            nats_url, "register", setup.capacity_burst, BURST_CONCURRENCY, "burst", pids(routers)[0]
        )
    return burst["rps"]


@dataclass
class Tally:
    """What the parent gathers from the generators and probes while a run goes on."""

    counters: dict[int, Counters] = field(default_factory=dict)
    cpu_s: dict[int, float] = field(default_factory=dict)
    latency: Histogram = field(default_factory=Histogram)  # heartbeats, the whole run
    lag: dict[int, Histogram] = field(default_factory=dict)  # per generator, whole run
    window_latency: Histogram = field(default_factory=Histogram)
    window_lag: Histogram = field(default_factory=Histogram)
    healthz: Histogram = field(default_factory=Histogram)
    window_healthz: Histogram = field(default_factory=Histogram)
    healthz_failures: int = 0
    events: dict[str, Any] = field(default_factory=dict)
    finals: dict[int, Snapshot] = field(default_factory=dict)

    def take(self, snap: Snapshot) -> None:
        """A generator's snapshot."""
        self.counters[snap.worker] = snap.counters
        self.cpu_s[snap.worker] = snap.cpu_s
        latency, lag = Histogram.from_wire(snap.latency), Histogram.from_wire(snap.lag)
        self.latency.merge(latency)
        self.window_latency.merge(latency)
        self.lag.setdefault(snap.worker, Histogram()).merge(lag)
        self.window_lag.merge(lag)
        if snap.final:
            self.finals[snap.worker] = snap

    def take_healthz(self, message: dict[str, Any]) -> None:
        """A window of /healthz latencies."""
        if "latency" in message:
            window = Histogram.from_wire(message["latency"])
            self.healthz.merge(window)
            self.window_healthz.merge(window)
            self.healthz_failures = message["failures"]

    def total(self) -> Counters:
        """Every generator's counters added up."""
        total = Counters()
        for counters in self.counters.values():
            total.add(counters)
        return total

    def new_window(self) -> None:
        """Start the next row's window."""
        self.window_latency, self.window_lag = Histogram(), Histogram()
        self.window_healthz = Histogram()


def drain(source: Any, take: Any) -> None:
    """Hand every message waiting in ``source`` (a multiprocessing queue) to ``take``."""
    while True:
        try:
            take(source.get_nowait())
        except queue.Empty:
            return


def ms(seconds: float) -> str:
    """Seconds as whole milliseconds ('-' for none)."""
    return "-" if math.isnan(seconds) else f"{seconds * 1000:,.0f}"


COLUMNS = (
    ("t s", 5),
    ("ONLINE", 8),
    ("UNHLTHY", 7),
    ("OFFLINE", 7),
    ("reg sent", 9),
    ("ok", 8),
    ("503", 6),
    ("t/o", 6),
    ("retried", 7),
    ("hb sent", 9),
    ("hb p50", 7),
    ("hb p99", 7),
    ("lag max", 7),
    ("router %", 9),
    ("hz p99", 7),
    ("hz max", 7),
    ("left", 6),
)


def line(cells: list[str]) -> str:
    """One table row, right-aligned to COLUMNS."""
    return " ".join(cell.rjust(width) for cell, (_, width) in zip(cells, COLUMNS, strict=True))


async def storm(
    setup: Setup,
    nats_url: str,
    routers: list[RouterProcess],
    rate: float,
    prefix: str,
    nats_pid: int | None = None,
) -> dict[str, Any]:
    """One storm against ``routers``: the table as it goes, then the summary's figures
    (with ``nats_pid``, the nats-server's CPU too: it shares the machine's cores)."""
    n = setup.instances
    window = n / rate
    stop_after = window + setup.duration
    spawn: SpawnContext = multiprocessing.get_context("spawn")
    snapshots: Any = spawn.Queue()
    event_q: Any = spawn.Queue()
    healthz_q: Any = spawn.Queue()
    go, stop = spawn.Event(), spawn.Event()
    t0 = spawn.Value("d", 0.0)
    until = spawn.Value("d", 0.0)  # when sending stops
    plan = Plan(
        nats_url,
        prefix,
        n,
        SERVICES,
        rate,
        setup.interval,
        stop_after,
        setup.timeout,
        report_every=min(1.0, setup.every / 4),
        shared_heartbeats=setup.shared_heartbeats,
    )
    shares = deal(plan, setup.loaders)
    processes: list[SpawnProcess] = [
        spawn.Process(target=generate, args=(k, share, go, t0, snapshots), daemon=True)
        for k, share in enumerate(shares)
    ]
    processes.append(
        spawn.Process(
            target=watch_events, args=(nats_url, prefix, until, event_q, stop), daemon=True
        )
    )
    urls = [r.http_url for r in routers]
    processes.append(spawn.Process(target=poll_healthz, args=(urls, healthz_q, stop), daemon=True))
    for process in processes:
        process.start()
    # Every generator and probe connected before the clock starts.
    for _ in shares:
        await asyncio.to_thread(snapshots.get, True, 60)
    await asyncio.to_thread(event_q.get, True, 60)
    await asyncio.to_thread(healthz_q.get, True, 60)
    tally = Tally()
    router_pids = pids(routers)
    cpu_before = [cpu_seconds(pid) for pid in router_pids]
    nats_before = cpu_seconds(nats_pid) if nats_pid else 0.0
    cpu_last, last = list(cpu_before), time.monotonic()
    t0.value = start = time.monotonic() + 0.2
    until.value = start + stop_after
    go.set()
    print(
        f"\n## {n:,} instances at {rate:,.0f}/s (storm {window:,.1f} s), heartbeats every "
        f"{setup.interval:g} s, {setup.duration:g} s after; {setup.routers} router(s), "
        f"{setup.store} store, {setup.loaders} generator processes, heartbeats on "
        + ("the shared subject (v1)" if setup.shared_heartbeats else "the holder's subject (SDK)")
    )
    print(line([name for name, _ in COLUMNS]))
    rows: list[dict[str, Any]] = []
    all_online_rest = math.nan
    async with httpx.AsyncClient(base_url=routers[0].http_url, timeout=setup.every) as http:
        while len(tally.finals) < len(shares):
            await asyncio.sleep(max(0.0, setup.every - (time.monotonic() - last)))
            drain(snapshots, tally.take)
            drain(healthz_q, tally.take_healthz)
            drain(event_q, tally.events.update)
            try:
                counts = await statuses(http, prefix)
            except httpx.HTTPError:
                counts = {}  # the router did not answer in time: shown as '-'
            now = time.monotonic()
            cpu_now = [cpu_seconds(pid) for pid in router_pids]
            cpu_pct = [(b - a) / (now - last) * 100 for a, b in zip(cpu_last, cpu_now, strict=True)]
            cpu_last, last = cpu_now, now
            if counts.get("ONLINE") == n and math.isnan(all_online_rest):
                all_online_rest = now - start
            c = tally.total()
            row = {
                "t": now - start,
                "statuses": counts,
                "counters": asdict(c),
                "hb_p50_s": tally.window_latency.percentile(50),
                "hb_p99_s": tally.window_latency.percentile(99),
                "lag_max_s": tally.window_lag.max,
                "router_cpu_pct": cpu_pct,
                "healthz_p99_s": tally.window_healthz.percentile(99),
                "healthz_max_s": tally.window_healthz.max,
                "left_events": tally.events.get("left", 0),
            }
            rows.append(row)
            print(
                line(
                    [
                        f"{row['t']:.0f}",
                        *(f"{counts[s]:,}" if s in counts else "-" for s in STATUSES),
                        f"{c.reg_sent:,}",
                        f"{c.reg_ok:,}",
                        f"{c.reg_refused:,}",
                        f"{c.reg_timeouts:,}",
                        f"{c.reg_retried:,}",
                        f"{c.hb_sent:,}",
                        ms(row["hb_p50_s"]),
                        ms(row["hb_p99_s"]),
                        f"{row['lag_max_s']:.2f}",
                        "/".join(f"{p:.0f}" for p in cpu_pct),
                        ms(row["healthz_p99_s"]),
                        ms(row["healthz_max_s"]),
                        f"{row['left_events']:,}",
                    ]
                ),
                flush=True,
            )
            tally.new_window()
    elapsed = time.monotonic() - start
    nats_cpu = (cpu_seconds(nats_pid) - nats_before) / elapsed * 100 if nats_pid else math.nan
    cpu_run = [
        (b - a) / elapsed * 100
        for a, b in zip(cpu_before, [cpu_seconds(pid) for pid in router_pids], strict=True)
    ]
    stop.set()
    for process in processes:
        await asyncio.to_thread(process.join, 30)
    drain(healthz_q, tally.take_healthz)
    drain(event_q, tally.events.update)
    result = summarize(setup, rate, tally, rows, all_online_rest, elapsed, cpu_run, start)
    result["nats_cpu_pct"] = nats_cpu
    return result


STATUSES = ("ONLINE", "UNHEALTHY", "OFFLINE")


def summarize(
    setup: Setup,
    rate: float,
    tally: Tally,
    rows: list[dict[str, Any]],
    all_online_rest: float,
    elapsed: float,
    cpu_run: list[float],
    start: float,
) -> dict[str, Any]:
    """The run's figures (JSON-friendly): what the summary prints."""
    finals = list(tally.finals.values())
    late: set[int] = set().union(*(f.late for f in finals))
    timed_out: set[int] = set().union(*(f.reg_timed_out for f in finals))
    by_replies: set[int] = set().union(*(f.left for f in finals))
    by_events = set(tally.events.get("final", []))
    left = by_events | by_replies
    left_on_time = left - late
    never = sum(f.never_registered for f in finals)
    last_registered = max(f.all_registered_at for f in finals)
    lag_max = max(h.max for h in tally.lag.values())
    counters = tally.total()
    wall = elapsed
    return {
        "instances": setup.instances,
        "rate": rate,
        "storm_s": setup.instances / rate,
        "routers": setup.routers,
        "store": setup.store,
        "interval_s": setup.interval,
        "all_online_after_s": math.nan if never else last_registered - start,
        "all_online_rest_s": all_online_rest,
        "never_registered": never,
        "counters": asdict(counters),
        "hb_latency_s": {
            "p50": tally.latency.percentile(50),
            "p99": tally.latency.percentile(99),
            "max": tally.latency.max,
        },
        "left_online": {
            "on_time": len(left_on_time),
            "on_time_with_registration_timeout": len(left_on_time & timed_out),
            "late": len(left & late),
            "by_events": len(by_events),
            "by_replies": len(by_replies),
            "events": tally.events.get("changes", {}),
        },
        "instances_late": len(late),
        "generators": [
            {
                "lag_max_s": tally.lag[k].max,
                "lag_p99_s": tally.lag[k].percentile(99),
                "cpu_pct": tally.cpu_s.get(k, 0.0) / wall * 100,
            }
            for k in sorted(tally.lag)
        ],
        "counts": lag_max <= LAG_LIMIT,
        "lag_max_s": lag_max,
        "healthz_s": {
            "p99": tally.healthz.percentile(99),
            "max": tally.healthz.max,
            "probes": tally.healthz.count,
            "failures": tally.healthz_failures,
        },
        "router_cpu_pct": cpu_run,
        "elapsed_s": elapsed,
        "start_monotonic": start,
        "sending_s": setup.instances / rate + setup.duration,  # then the instances fall silent
        "rows": rows,
    }


def summary_lines(result: dict[str, Any], capacity: float | None = None) -> list[str]:
    """The summary of one run, a line per figure (the rate as a multiple of ``capacity``,
    if given)."""
    multiple = "" if capacity is None else f" x{result['rate'] / capacity:.2f} of {capacity:,.0f}/s"
    c = result["counters"]
    hb, hz, left = result["hb_latency_s"], result["healthz_s"], result["left_online"]
    verdict = (
        "counts"
        if result["counts"]
        else f"DOES NOT COUNT: a generator fell {result['lag_max_s']:.2f} s behind (> 1 s)"
    )
    online = (
        f"{result['all_online_after_s']:.1f} s after the storm began"
        if not math.isnan(result["all_online_after_s"])
        else f"never ({result['never_registered']:,} never had a registration answered in time)"
    )
    rest = result["all_online_rest_s"]
    rest_online = "never at a check" if math.isnan(rest) else f"at the check at {rest:.0f} s"
    generators = ", ".join(
        f"lag max {g['lag_max_s']:.2f} s p99 {ms(g['lag_p99_s'])} ms cpu {g['cpu_pct']:.0f} %"
        for g in result["generators"]
    )
    return [
        f"storm{multiple}: {result['instances']:,} instances at {result['rate']:,.0f}/s over "
        f"{result['storm_s']:.1f} s — {verdict}",
        f"  every instance registered, by its client: {online}; ONLINE by REST: {rest_online}",
        f"  left ONLINE with every heartbeat on time (within {ON_TIME:g} s): "
        f"{left['on_time']:,} (of which {left['on_time_with_registration_timeout']:,} had a "
        f"registration time out); late instances that left: {left['late']:,}; by events "
        f"{left['by_events']:,} {left['events']}, by replies {left['by_replies']:,}",
        f"  registrations: {c['reg_sent']:,} sent, {c['reg_ok']:,} ok, {c['reg_refused']:,} "
        f"refused (503), {c['reg_timeouts']:,} timed out, {c['reg_failed']:,} failed, "
        f"{c['reg_retried']:,} retried, {c['reregistered']:,} after a heartbeat's 404; "
        f"{c['late_replies']:,} replies came after their timeout",
        f"  heartbeats: {c['hb_sent']:,} sent, {c['hb_ok']:,} ok, {c['hb_not_found']:,} 404, "
        f"{c['hb_timeouts']:,} timed out, {c['hb_failed']:,} failed, {c['hb_late']:,} sent "
        f"late; latency p50 {ms(hb['p50'])} p99 {ms(hb['p99'])} max {ms(hb['max'])} ms",
        f"  /healthz: p99 {ms(hz['p99'])} ms, max {ms(hz['max'])} ms ({hz['probes']:,} probes, "
        f"{hz['failures']} failed); router CPU "
        + " / ".join(f"{p:.0f} %" for p in result["router_cpu_pct"])
        + f" of a core over {result['elapsed_s']:.0f} s; nats-server "
        + f"{result.get('nats_cpu_pct', math.nan):.0f} %",
        f"  generators: {generators}",
    ]


QUICK = {
    "instances": 1000,
    "multiples": "2",
    "interval": 2.0,
    "duration": 5.0,
    "every": 1.0,
    "capacity_burst": 500,
}


def json_safe(value: Any) -> Any:
    """``value`` with NaN (no sample, or never) as null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (``--quick`` fills in tiny sizes unless given)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument(
        "--multiples", default="1,1.5,3", help="registration rates, as multiples of capacity"
    )
    parser.add_argument("--capacity", type=float, help="registrations/s (default: measured)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--storm-seconds", type=float, help="one run: every instance registers within this"
    )
    group.add_argument("--rate", type=float, help="one run at this many registrations/s")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between heartbeats")
    parser.add_argument(
        "--duration", type=float, default=60.0, help="seconds of heartbeats after the storm"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="client request timeout, s")
    parser.add_argument("--loaders", type=int, default=2, help="generator processes")
    parser.add_argument("--routers", type=int, default=1)
    parser.add_argument(
        "--shared-heartbeats",
        action="store_true",
        help="heartbeat on the shared subject, as a wire v1 client (default: the holder's, "
        "as the SDK)",
    )
    parser.add_argument("--store", choices=("jetstream", "memory"), default="jetstream")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between table rows")
    parser.add_argument(
        "--capacity-burst", type=int, default=20_000, help="registrations in the capacity burst"
    )
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: finishes in < 30 s")
    args = parser.parse_args(argv)
    if args.quick:
        given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in (argv or sys.argv[1:])}
        for name, value in QUICK.items():
            if name not in given:
                setattr(args, name, value)
    if args.routers > 1 and args.store == "memory":
        parser.error("--routers > 1 needs the jetstream store (memory is one process's own)")
    return args


def main(argv: list[str] | None = None) -> None:
    """Measure capacity (unless given), then one storm per rate; print, and save --json."""
    args = parse_args(argv)
    setup = Setup(
        args.instances,
        args.interval,
        args.duration,
        args.timeout,
        args.loaders,
        args.routers,
        args.store,
        args.every,
        min(args.capacity_burst, args.instances),
        args.shared_heartbeats,
    )
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="aegis-storm-") as tmp_dir:
        tmp = Path(tmp_dir)
        nats_server = NatsServer(data_dir=tmp / "nats")
        nats_server.start()
        nats_pid = nats_server.process.pid if nats_server.process else None
        try:
            capacity = args.capacity or measure_capacity(tmp, nats_server.url, setup)
            how = "given" if args.capacity else "closed-loop burst of "
            how += (
                "" if args.capacity else f"{setup.capacity_burst:,}, {BURST_CONCURRENCY} in flight"
            )
            print(f"# capacity {capacity:,.0f} registrations/s ({how})")
            if args.storm_seconds:
                rates = [args.instances / args.storm_seconds]
            elif args.rate:
                rates = [args.rate]
            else:
                rates = [float(m) * capacity for m in args.multiples.split(",")]
            for k, rate in enumerate(rates):
                with router_set(tmp, nats_server.url, setup, f"storm{k}") as routers:
                    results.append(
                        asyncio.run(
                            storm(setup, nats_server.url, routers, rate, f"storm{k}", nats_pid)
                        )
                    )
        finally:
            nats_server.stop()
    print()
    for result in results:
        for text in summary_lines(result, capacity):
            print(text)
    if args.json:
        figures = {"capacity": capacity, "runs": results}
        args.json.write_text(json.dumps(json_safe(figures), indent=1))


if __name__ == "__main__":
    main()
