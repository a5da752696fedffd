"""All AegisIPC benchmarks, each beside its baseline in the same run; prints one table.

    python bench/run.py            # full sizes, a few minutes
    python bench/run.py --quick    # tiny sizes: checks the benchmarks still run
    python bench/run.py --only nats   # the NATS rows alone (register, heartbeat)

Every figure is a ratio against a baseline measured in this run, with the
absolute numbers beside it. Loads come from a separate process; the REST load
is autocannon (npm, installed on first use: needs node and npm). Nothing here
passes or fails: it reports.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import nats

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402
from aegis.router.domain import InstanceRecord, Timings  # noqa: E402
from aegis.router.registry.operations import Registry  # noqa: E402
from aegis.router.store.port import MemoryStore  # noqa: E402
from aegis.wire.messages import InstanceStatus  # noqa: E402
from mass_expiry import bench_mass_expiry, simultaneous_rows  # noqa: E402

from tests.support.npm import missing_node_tools, npm_ci  # noqa: E402
from tests.support.procs import (  # noqa: E402
    NatsServer,
    RouterProcess,
    free_port,
    router_process,
    stop_process,
    wait_for_port,
)

# The in-process measurements must not pay for printing their own log lines.
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))

BENCH = Path(__file__).resolve().parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Sizes:
    requests: int
    concurrency: int
    rest_services: int
    rest_seconds: float  # each autocannon run
    scale_instances: int
    storm: tuple[str, ...]  # bench/storm.py's arguments


FULL = Sizes(
    requests=30000,
    concurrency=64,
    rest_services=1000,
    rest_seconds=5,
    scale_instances=100_000,
    storm=("--instances", "100000", "--multiples", "1,3", "--duration", "60"),
)
QUICK = Sizes(
    requests=300,
    concurrency=16,
    rest_services=20,
    rest_seconds=1,
    scale_instances=2000,
    storm=("--quick",),
)

# The REST load generator: autocannon from npm, locked in bench/npm/ (its
# package-lock.json), installed on first use into a cache folder outside the
# tree (a fresh clone installs it once).
AUTOCANNON = "autocannon@9.0.0"
NPM_MANIFEST = BENCH / "npm"
NPM_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aegis-bench"
# 8 connections, one request in flight on each, one node thread (no workers).
# The server is one Python process, one event loop: it takes one request at a
# time, so a few waiting requests saturate it. On a quiet 2-core machine 4
# connections already held it at 96-99 % of a core; 8 keeps requests waiting
# when node is briefly off its core; 16 and 32 gave the same requests/s and
# only longer queues (latency). Autocannon then uses ~25 % of a core against the
# router's detail route, ~50 % against bare Sanic's, and 70-85 % against the
# 95 KB list (receiving the bytes). Workers (-w 2) or pipelining (-p 4) did not
# raise requests/s, they took CPU from the server's core; real clients do not
# pipeline.
HTTP_CONNECTIONS = 8
HTTP_PIPELINING = 1


# What --only chooses from, in the order they run.
SECTIONS = ("nats", "rest", "scale", "expiry", "console", "storm")


def cpu_seconds(pid: int) -> float:
    """user+sys CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_kib(pid: int) -> int:
    """Resident memory of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def run_json(command: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run a load process and parse its one JSON line."""
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def nats_load(
    url: str, kind: str, count: int, concurrency: int, prefix: str, pid: int, services: int = 100
) -> dict[str, float]:
    """Load from another process; adds the responder's CPU microseconds per request."""
    before = cpu_seconds(pid)
    result = run_json(
        [
            sys.executable,
            str(BENCH / "nats_load.py"),
            url,
            kind,
            str(count),
            str(concurrency),
            prefix,
            str(services),
        ]
    )
    result["cpu_us"] = (cpu_seconds(pid) - before) / count * 1e6
    return result


def kv_load(url: str, count: int, concurrency: int, bucket: str) -> list[dict[str, float]]:
    """The bare key-value baseline from another process: [creates, compare-and-set updates]."""
    command = [sys.executable, str(BENCH / "kv_load.py"), url, str(count), str(concurrency)]
    out = subprocess.run([*command, bucket], capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.strip().splitlines()[-2:]]


async def _stream_last_seq(url: str, stream: str) -> int:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream(timeout=10).stream_info(stream)
    finally:
        await nc.close()
    return int(info.state.last_seq)


def bucket_writes(url: str, bucket: str) -> int:
    """Writes to a key-value bucket so far, as JetStream counts them: its stream's last
    sequence (every put, create, update and delete takes the next one)."""
    return asyncio.run(_stream_last_seq(url, f"KV_{bucket}"))


def metric_store_writes(http_url: str) -> float:
    """The router's own count of store writes (``aegis_store_writes_total``, every cause)."""
    text = httpx.get(f"{http_url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("aegis_store_writes_total{")
    )


@functools.cache
def autocannon_modules() -> Path:
    """The node_modules folder holding AUTOCANNON, installed there on first use."""
    missing = missing_node_tools()
    if missing:
        raise SystemExit(
            f"bench/run.py: {' and '.join(missing)} not found; the REST benchmark runs "
            f"{AUTOCANNON} from npm with node: install Node.js (with npm)"
        )
    # One folder per lock file's content: a changed lock installs afresh.
    lock = hashlib.sha256((NPM_MANIFEST / "package-lock.json").read_bytes()).hexdigest()
    folder = NPM_CACHE / f"{AUTOCANNON}-{lock[:12]}"
    installed = folder / "installed"  # written last: a broken install is done again
    if not installed.exists():
        npm_ci(folder, NPM_MANIFEST)
        installed.touch()
    return folder / "node_modules"


def http_load(url: str, seconds: float, pid: int) -> dict[str, float]:
    """GET ``url`` for ``seconds`` with autocannon in its own node process (http_load.cjs);
    adds the CPU the serving process ``pid`` used meanwhile (``cpu_pct``) and autocannon's
    own (``load_cpu_pct``), both in % of one core."""
    command = ["node", str(BENCH / "http_load.cjs"), url, str(HTTP_CONNECTIONS)]
    command += [str(HTTP_PIPELINING), str(seconds)]
    before = cpu_seconds(pid)
    result = run_json(command, env={**os.environ, "NODE_PATH": str(autocannon_modules())})
    result["cpu_pct"] = (cpu_seconds(pid) - before) / result["wall_s"] * 100
    result["load_cpu_pct"] = result["load_cpu_s"] / result["wall_s"] * 100
    return result


# Timings under which nothing registered by a load expires during it: a loaded
# machine registering 30,000 at 1,500/s takes 20 s, past the default
# unhealthy_after (15 s), and the first instances' expiry writes and recoveries
# then ran inside the registration and first-heartbeat rows. The stored
# contact's refresh stays at its default (120 s).
NO_EXPIRY = {
    "AEGIS_UNHEALTHY_AFTER": "120",
    "AEGIS_OFFLINE_AFTER": "240",
    "AEGIS_REMOVE_AFTER": "600",
}


def router(tmp: Path, nats_url: str, store: str, name: str) -> RouterProcess:
    """An aegis-router process with its log in a file, as in production (enter it to start);
    nothing expires within a benchmark's load (``NO_EXPIRY``)."""
    return router_process(
        tmp, nats_url=nats_url, name=name, AEGIS_STORE=store, AEGIS_KV_BUCKET=name, **NO_EXPIRY
    )


@contextmanager
def responder(
    script: str, *args: str, log: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A baseline NATS responder process (``bench/<script>``), once it printed READY."""
    with open(log or os.devnull, "ab") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(BENCH / script), *args], stdout=subprocess.PIPE, stderr=stderr
        )
        assert process.stdout is not None
        process.stdout.readline()
        try:
            yield process
        finally:
            stop_process(process)


def bare_responder(nats_url: str) -> AbstractContextManager[subprocess.Popen[bytes]]:
    """The baseline NATS responder process."""
    return responder("bare_responder.py", nats_url)


@contextmanager
def bare_sanic(body: bytes, tmp: Path) -> Iterator[tuple[int, int]]:
    """The baseline Sanic process serving ``body`` on every path: its port and pid."""
    body_file = tmp / "body.json"
    body_file.write_bytes(body)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(BENCH / "bare_sanic.py"), str(port), str(body_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port)
    time.sleep(0.3)
    try:
        yield port, process.pid
    finally:
        stop_process(process)


Row = tuple[str, str, str, str]


def ratio_row(what: str, ours: dict[str, float], base: dict[str, float], key: str = "rps") -> Row:
    """One table row: ours, the baseline, and ours/baseline of ``key``."""

    def show(r: dict[str, float]) -> str:
        text = f"{r['rps']:,.0f}/s p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} ms"
        if "cpu_us" in r:
            text += f" cpu {r['cpu_us']:.0f} us/req"
        if "cpu_pct" in r:
            text += f" cpu {r['cpu_pct']:.0f} % (autocannon {r['load_cpu_pct']:.0f} %)"
        if r.get("errors"):
            text += f" errors {r['errors']:.0f}"
        return text

    ratio = f"x{ours[key] / base[key]:.2f}" if base[key] else "n/a (too short to measure)"
    return (what, show(ours), show(base), ratio)


def bench_nats(sizes: Sizes, tmp: Path, nats: NatsServer) -> list[Row]:
    """Registration and heartbeat through the router vs the bare responder."""
    n, c = sizes.requests, sizes.concurrency
    with bare_responder(nats.url) as bare:
        base_reg = nats_load(nats.url, "register", n, c, "bare", bare.pid)
        base_hb = nats_load(nats.url, "heartbeat", n, c, "bare", bare.pid)
    # The least a steady heartbeat can cost and keep the contract (heartbeat_floor.py).
    with responder("heartbeat_floor.py", nats.url) as floor:
        floor_hb = nats_load(nats.url, "heartbeat", n, c, "floor_hb", floor.pid)
    kv_create, kv_update = kv_load(nats.url, n, c, "bench_kv_baseline")
    floors = {}
    for store in ("memory", "jetstream"):
        # The least a registration can cost and keep the contract (floor_responder.py).
        args = (nats.url, store, f"floor_{store}")
        with responder("floor_responder.py", *args, log=tmp / f"floor_{store}.log") as floor:
            floors[store] = nats_load(nats.url, "register", n, c, f"floor_{store}", floor.pid)
    rows: list[Row] = [
        ratio_row("heartbeat floor (heartbeat_floor.py)", floor_hb, base_hb),
        ratio_row("heartbeat floor CPU", floor_hb, base_hb, "cpu_us"),
    ]
    for store in ("memory", "jetstream"):
        bucket = f"nats_{store}"
        with router(tmp, nats.url, store, bucket) as r:
            assert r.process is not None
            reg = nats_load(nats.url, "register", n, c, store, r.process.pid)
            if store == "jetstream":
                seq, metric = bucket_writes(nats.url, bucket), metric_store_writes(r.http_url)
            # Each instance heartbeats twice: the second round is the routine
            # heartbeat an instance sends all its life; the first is shown too.
            first = nats_load(nats.url, "heartbeat", n, c, store, r.process.pid)
            hb = nats_load(nats.url, "heartbeat", n, c, store, r.process.pid)
            if store == "jetstream":
                # What the heartbeats wrote, counted by the bucket itself and by us.
                writes = bucket_writes(nats.url, bucket) - seq
                metric = metric_store_writes(r.http_url) - metric
        rows.append(ratio_row(f"register throughput, {store} store", reg, base_reg))
        rows.append(ratio_row(f"register CPU per request, {store} store", reg, base_reg, "cpu_us"))
        rows.append(ratio_row(f"heartbeat throughput, {store} store", hb, base_hb))
        rows.append(ratio_row(f"heartbeat CPU per request, {store} store", hb, base_hb, "cpu_us"))
        rows.append(
            ratio_row(f"first heartbeat after registering, {store}", first, base_hb, "cpu_us")
        )
        rows.append(ratio_row(f"heartbeat CPU vs its floor, {store}", hb, floor_hb, "cpu_us"))
        store_limit = kv_create if store == "jetstream" else base_reg
        rows.append(
            ratio_row(f"register floor, {store} (floor_responder.py)", floors[store], store_limit)
        )
        rows.append(ratio_row(f"register floor CPU, {store}", floors[store], base_reg, "cpu_us"))
        rows.append(ratio_row(f"register vs its floor, {store}", reg, floors[store]))
        rows.append(ratio_row(f"register CPU vs its floor, {store}", reg, floors[store], "cpu_us"))
        if store == "jetstream":
            # The store's own limit: what one client gets from the bucket alone.
            rows.append(ratio_row("register vs bare KV create, jetstream", reg, kv_create))
            rows.append(ratio_row("heartbeat vs bare KV compare-and-set", hb, kv_update))
            rows.append(
                (
                    "store writes per heartbeat (KV stream sequence)",
                    f"{writes / (2 * n):.3f} ({writes:,} writes for {2 * n:,} heartbeats)",
                    f"1 before leases (aegis_store_writes_total: {metric:,.0f})",
                    f"x{writes / (2 * n):.3f}",
                )
            )
    return rows


def bench_rest(sizes: Sizes, tmp: Path, nats: NatsServer) -> list[Row]:
    """REST list and detail under autocannon vs a bare Sanic route with the same bytes; each
    side's row shows its server's CPU (near 100 % of a core: saturated) and autocannon's."""
    rows: list[Row] = []
    count = sizes.rest_services * 10
    with router(tmp, nats.url, "memory", "rest") as r:
        assert r.process is not None
        nats_load(nats.url, "register", count, 64, "rest", r.process.pid, sizes.rest_services)
        for path in ("/api/v1/admin/services", "/api/v1/admin/services/rest-svc-1"):
            url = f"{r.http_url}{path}"
            body = httpx.get(url, timeout=30).content
            ours = http_load(url, sizes.rest_seconds, r.process.pid)
            with bare_sanic(body, tmp) as (port, pid):
                base = http_load(f"http://127.0.0.1:{port}{path}", sizes.rest_seconds, pid)
            rows.append(
                ratio_row(
                    f"GET {path.replace('rest-svc-1', '{name}')} ({len(body):,} B)", ours, base
                )
            )
    return rows


def bench_scale(sizes: Sizes, tmp: Path, nats: NatsServer) -> list[Row]:
    """Router memory per instance, and list/sweep cost, at scale."""
    n = sizes.scale_instances
    with router(tmp, nats.url, "memory", "scale") as r:
        assert r.process is not None
        before = rss_kib(r.process.pid)
        load = nats_load(nats.url, "register", n, 64, "scale", r.process.pid)
        after = rss_kib(r.process.pid)
        hb = nats_load(nats.url, "heartbeat", min(n, 20_000), 64, "scale", r.process.pid)
    per_instance = (after - before) * 1024 / n
    needed = n / 10  # every instance heartbeating every 10 s
    rows: list[Row] = [
        (
            f"RSS per instance at {n:,} (memory store)",
            f"{per_instance:,.0f} B",
            "2,048 B target",
            f"x{per_instance / 2048:.2f}",
        ),
        (
            f"heartbeats/s at {n:,} registered",
            f"{hb['rps']:,.0f}/s (p99 {hb['p99_ms']:.1f} ms)",
            f"{needed:,.0f}/s needed (10 s interval)",
            f"x{hb['rps'] / needed:.2f}",
        ),
        (f"{n:,} registrations", f"{load['rps']:,.0f}/s", "", ""),
    ]
    rows.extend(asyncio.run(in_process_scale(n)))
    return rows


async def in_process_scale(n: int) -> list[Row]:
    """Registry list and sweep at ``n`` instances, against a baseline of reading the store."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    now = [t0]
    store = MemoryStore()
    registry = Registry(store, Timings(), clock=lambda: now[0])
    for i in range(n):
        record = InstanceRecord(
            f"svc-{i % 1000}", f"i-{i}", InstanceStatus.ONLINE, {"v": 1}, t0, t0, "s"
        )
        await store.create(record)
    await registry.load()

    async def timed(coro_factory) -> float:  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        await coro_factory()
        return (time.perf_counter() - start) * 1000

    base = await timed(store.list_all)
    listing = await timed(registry.services)
    now[0] = t0 + timedelta(seconds=1)
    idle_sweep = await timed(registry.liveness.sweep)
    now[0] = t0 + timedelta(seconds=16)
    stalls: list[float] = []

    async def loop_watch() -> None:
        # How long the event loop goes without giving another task a turn.
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0)
            stalls.append(time.perf_counter() - last)
            last = time.perf_counter()

    watcher = asyncio.create_task(loop_watch())
    await asyncio.sleep(0)
    full_sweep = await timed(registry.liveness.sweep)
    watcher.cancel()
    return [
        (
            f"services() at {n:,}",
            f"{listing:.1f} ms",
            f"list_all {base:.1f} ms",
            f"x{listing / base:.2f}",
        ),
        (f"sweep at {n:,}, none due", f"{idle_sweep:.3f} ms", "", ""),
        (
            f"sweep at {n:,}, all due",
            f"{full_sweep:.0f} ms",
            f"{full_sweep / n * 1000:.1f} us/instance",
            "",
        ),
        (
            "longest event-loop stall in that sweep",
            f"{max(stalls) * 1000:.1f} ms",
            "50 ms bound",
            f"x{max(stalls) * 1000 / 50:.2f}",
        ),
    ]


def bench_console(quick: bool) -> list[Row]:
    """The console's diff-refresh benchmark (its own baseline inside)."""
    command = [sys.executable, str(BENCH / "console_refresh.py")]
    if quick:
        command.append("--quick")
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
    lines = out.splitlines()
    keyed = next(line for line in lines if line.startswith("keyed diff"))
    naive = next(line for line in lines if line.startswith("clear + re-add"))
    return [
        (
            "console diff-refresh (apply median)",
            " ".join(keyed.split()[2:4]),
            " ".join(naive.split()[3:5]) + " (clear+re-add)",
            lines[-1].split("takes ")[-1].split(" the")[0],
        )
    ]


def bench_console_scale(quick: bool, tmp: Path) -> list[Row]:
    """bench/console_scale.py (its own router and nats-server): the console at fleet scale,
    list + watch beside today's console; a row per target."""
    figures = tmp / "console_scale.json"
    command = [sys.executable, str(BENCH / "console_scale.py"), "--json", str(figures)]
    if quick:
        command.append("--quick")
    subprocess.run(command, capture_output=True, text=True, check=True)
    report = json.loads(figures.read_text())
    by_label = {r["label"]: r for r in report["results"]}
    ours, today = by_label.get("list + watch", {}), by_label.get("today", {})
    rows: list[Row] = []
    for what, key, unit in (
        ("first paint", "first_paint_s", "s"),
        ("cursor move p99", "cursor_p99_s", "ms"),
        ("change to screen p99", "change_p99_s", "ms"),
        ("console CPU", "cpu_pct", "%"),
    ):
        scale = 1000.0 if unit == "ms" else 1.0

        def show(
            figures: dict[str, float], key: str = key, scale: float = scale, unit: str = unit
        ) -> str:
            value = figures.get(key)
            return "-" if value is None else f"{value * scale:,.2f} {unit}"

        a, b = ours.get(key), today.get(key)
        ratio = f"x{b / a:.2f}" if a and b else ""
        rows.append((f"console at scale: {what}", show(ours), show(today) + " (today)", ratio))
    return rows


def in_ms(seconds: float | None) -> str:
    """Seconds (None: no sample) as whole milliseconds."""
    return "-" if seconds is None else f"{seconds * 1000:,.0f}"


def bench_storm(sizes: Sizes, tmp: Path) -> list[Row]:
    """bench/storm.py (its own routers and nats-server): a row per storm; its summary
    lines are printed as they come."""
    figures = tmp / "storm.json"
    command = [sys.executable, str(BENCH / "storm.py"), *sizes.storm, "--json", str(figures)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    print("# " + out.strip().rsplit("\n\n", 1)[-1].replace("\n", "\n# "), flush=True)
    report = json.loads(figures.read_text())
    capacity = report["capacity"]
    rows: list[Row] = []
    for run in report["runs"]:
        online = run["all_online_after_s"]
        hb, healthz = run["hb_latency_s"], run["healthz_s"]
        rows.append(
            (
                f"registration storm, {run['instances']:,} at {run['rate']:,.0f}/s",
                ("never all registered" if online is None else f"all registered in {online:.1f} s")
                + f", {run['left_online']['on_time']:,} on time left ONLINE, heartbeat p99 "
                f"{in_ms(hb['p99'])} ms, /healthz p99 {in_ms(healthz['p99'])} ms",
                f"capacity {capacity:,.0f}/s (closed-loop burst)",
                f"x{run['rate'] / capacity:.2f}"
                + ("" if run["counts"] else f" (does not count: lag {run['lag_max_s']:.1f} s)"),
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, to check the benchmarks run"
    )
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run, of {','.join(SECTIONS)} (default: all)",
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    if only - set(SECTIONS):
        parser.error(f"unknown sections: {','.join(sorted(only - set(SECTIONS)))}")
    sizes = QUICK if args.quick else FULL
    if "rest" in only:
        autocannon_modules()  # before minutes of other runs: no node, no run
    began = time.monotonic()
    print(
        f"# AegisIPC benchmarks ({'quick' if args.quick else 'full'}), "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
        f"# {platform.python_implementation()} {platform.python_version()}, {platform.system()} "
        f"{platform.machine()}, {os.cpu_count()} cores; {sizes.requests} requests at "
        f"concurrency {sizes.concurrency} per NATS run"
    )
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        nats = NatsServer(data_dir=tmp / "nats")
        nats.start()
        try:
            if "nats" in only:
                rows += bench_nats(sizes, tmp, nats)
            if "rest" in only:
                rows += bench_rest(sizes, tmp, nats)
            if "scale" in only:
                rows += bench_scale(sizes, tmp, nats)
            if "expiry" in only:
                rows += bench_mass_expiry(sizes.scale_instances, tmp, nats.url, nats_load)
                # Issue 28: 20,000 whose heartbeats land within 3 s, unhealthy_after 8 s.
                rows += simultaneous_rows(sizes.scale_instances // 5, 8.0, 2, tmp, nats.url)
        finally:
            nats.stop()
    if "console" in only:
        rows += bench_console(args.quick)
        with tempfile.TemporaryDirectory() as tmp_name:
            rows += bench_console_scale(args.quick, Path(tmp_name))
    if "storm" in only:
        with tempfile.TemporaryDirectory() as tmp_name:
            rows += bench_storm(sizes, Path(tmp_name))
    widths = [
        max(len(r[i]) for r in [("what", "ours", "baseline", "ratio"), *rows]) for i in range(4)
    ]
    print()
    for row in [("what", "ours", "baseline", "ratio"), *rows]:
        print(" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print(f"\n# took {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
