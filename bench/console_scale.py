"""The console at fleet scale: issue 24's targets, today's console beside list + watch.

A real ``aegis-router`` (memory store, liveness timings too long to expire
anything) on a nats-server, with one service of N/2 instances and 500 services
sharing the other N/2 (N = 100,000; registered in bulk over NATS by
bench/nats_load.py). A separate process makes ``--rate`` changes per second,
open loop (maintenance put on and taken off random instances over REST), and
every 2.5 s one on the first instance of the big service, which is on screen.

Each console runs in a process of its own, driven by Textual's Pilot
(headless, 200x50): the console of this checkout ("list + watch") and the
console as ``--before`` (default ``main``) has it ("today"), its package
exported with ``git archive`` and put first on the path. Per console:

- first paint: from start until the status line shows the registry's real total;
- filter: ``/`` and an instance id typed; from the last key until that row is
  the only one on screen;
- cursor step: the cursor moved down 100 times, each move and the drawing of every
  line on screen (``render_line``) timed (p99);
- change to screen: from the REST request that put the watched instance in or out
  of maintenance until its line on screen says so (p99; "missed" counts states not
  seen within 10 s);
- console CPU (% of one core) and router CPU added (minus the same window with no
  console) over ``--seconds`` of the load, with nothing else driven; console RSS.

    python bench/console_scale.py            # 100,000 instances, 100 changes/s
    python bench/console_scale.py --quick    # 1,000 instances, short windows: checks it runs
    python bench/console_scale.py --consoles 10   # ten consoles of this checkout at once

``--consoles N`` measures only what N consoles open at once cost, all of this
checkout and none driven: N processes as above, each held open once it shows the
real total and the watched row; then, over one ``--seconds`` window of the load,
the router's CPU and each console's CPU and peak RSS. "Router CPU added by N
consoles" is the router's CPU in that window minus the mean of two equal windows
with no console, one before the consoles start and one after they close.

A benchmark, not a test: it reports numbers and never fails on them. A figure a
console did not reach within its bound is shown as "> bound".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

SIZE = (200, 50)
WATCHED_EVERY = 2.5  # a polling console (every 2 s) can show each state before the next
STEPS = 100
MAX_IN_FLIGHT = 64
CHANGE_BOUND = 10.0  # a watched change not on screen by then counts as missed
SETTLE = 2.0  # after the consoles open or close, before a CPU window
LONG = {  # no instance expires during the run
    "AEGIS_HEARTBEAT_INTERVAL": "600",
    "AEGIS_UNHEALTHY_AFTER": "3600",
    "AEGIS_OFFLINE_AFTER": "7200",
    "AEGIS_REMOVE_AFTER": "86400",
}


def cpu_seconds(pid: int) -> float:
    """user+sys CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_over(pids: list[int], seconds: float) -> list[float]:
    """Each process's CPU over the next ``seconds``, in % of one core."""
    before = [cpu_seconds(pid) for pid in pids]
    began = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - began
    return [(cpu_seconds(pid) - cpu) / wall * 100 for pid, cpu in zip(pids, before, strict=True)]


def machine_ticks() -> tuple[int, int]:
    """The machine's CPU ticks so far, all cores: (busy, all); idle and iowait are not busy."""
    ticks = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory so far (VmHWM, as ``ru_maxrss``), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmHWM for {pid}")


def p99(values: list[float]) -> float | None:
    if not values:
        return None
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[98]


# The change generator (its own process) --------------------------------------------


async def make_changes(api: str, rate: float, instances: list[str], log: Path) -> None:
    """``rate`` maintenance toggles per second on random instances, open loop; every
    ``WATCHED_EVERY`` s one on ``instances[0]``, logged as (time, in maintenance)."""
    import httpx

    rng = random.Random(24)
    marked: set[str] = set()
    tasks: set[asyncio.Task[None]] = set()
    async with httpx.AsyncClient(base_url=api, timeout=10) as http:

        async def toggle(key: str, watched: bool) -> None:
            service, _, instance_id = key.partition("/")
            path = f"/api/v1/admin/services/{service}/instances/{instance_id}/maintenance"
            on = key not in marked
            (marked.add if on else marked.discard)(key)
            sent = time.time()
            try:
                if on:
                    await http.put(path, json={"reason": "bench"})
                else:
                    await http.delete(path)
            except httpx.HTTPError:
                # A router busy serving a console falls behind; the next toggle goes on.
                (marked.discard if on else marked.add)(key)
                return
            if watched:
                with log.open("a") as out:
                    out.write(json.dumps([sent, on]) + "\n")

        start = time.monotonic()
        sent, watched_sent = 0, 0
        while True:
            now = time.monotonic() - start
            while sent < now * rate:
                sent += 1
                if len(tasks) >= MAX_IN_FLIGHT:
                    continue  # open loop: a change the router cannot take now is dropped
                task = asyncio.create_task(toggle(rng.choice(instances[1:]), False))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if watched_sent * WATCHED_EVERY <= now:
                task = asyncio.create_task(toggle(instances[0], True))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                watched_sent += 1
            await asyncio.sleep(0.005)


# The driver (one console, its own process) -----------------------------------------


def stage(name: str) -> None:
    """Where the driver is, on stderr (shown if it never finishes)."""
    print(f"{time.strftime('%H:%M:%S')} {name}", file=sys.stderr, flush=True)


def logged_since(path: Path, offset: int | None) -> tuple[list[list[Any]], int]:
    """The watched changes logged after ``offset`` (``None``: none, just the end)."""
    if offset is None:
        return [], path.stat().st_size
    with path.open("rb") as log:
        log.seek(offset)
        fresh = log.read()
    return [json.loads(line) for line in fresh.splitlines() if line.strip()], offset + len(fresh)


def screen_lines(app: Any) -> list[str]:
    """The text on the instances table's lines, whatever the console's version."""
    table = app.dashboard.instances_table
    return [table.render_line(y).text for y in range(table.scrollable_content_region.height)]


def status_text(app: Any) -> str:
    from textual.widgets import Static

    return str(app.dashboard.query_one("#status", Static).content)


def shows_total(app: Any, total: int) -> bool:
    """The status line gives the registry's real total."""
    text = status_text(app)
    return f"{total:,} instances" in text or f"{total} instances" in text


async def until(check: Callable[[], bool], limit: float) -> float | None:
    """Seconds until ``check()`` holds (polled every 10 ms); None if not within ``limit``."""
    begun = time.perf_counter()
    while not check():
        if time.perf_counter() - begun > limit:
            return None
        await asyncio.sleep(0.01)
    return time.perf_counter() - begun


async def drive(
    api: str, total: int, seconds: float, bound: float, changes: Path, find: str
) -> None:
    """Run the console under Pilot; print one JSON line of figures."""
    from aegis.console.ui import ConsoleApp
    from textual.widgets import Input

    figures: dict[str, Any] = {"console": str(Path(sys.modules["aegis.console"].__file__).parent)}
    app = ConsoleApp(api)
    started = time.perf_counter()
    async with app.run_test(size=SIZE):
        waited = await until(lambda: shows_total(app, total), bound)
        figures["first_paint_s"] = None if waited is None else time.perf_counter() - started
        await until(lambda: any(find in line for line in screen_lines(app)), bound)

        # Steady: nothing driven, the load running.
        stage("steady")
        cpu = time.process_time()
        await asyncio.sleep(seconds)
        figures["cpu_pct"] = (time.process_time() - cpu) / seconds * 100

        # Change to screen: the watched instance's line.
        stage("changes")
        latencies: list[float] = []
        missed = 0
        pending, seen = logged_since(changes, None)
        probe_end = time.monotonic() + max(3 * WATCHED_EVERY, seconds)
        while time.monotonic() < probe_end:
            pending, seen = logged_since(changes, seen)
            if pending:
                # The latest only: older ones were overtaken by it.
                sent, on = pending[-1]

                def mine(on: bool = on) -> bool:
                    lines = screen_lines(app)
                    return any(find in line and ("maint" in line) == on for line in lines)

                if await until(mine, CHANGE_BOUND) is None:
                    missed += 1
                else:
                    latencies.append(time.time() - sent)
            await asyncio.sleep(0.05)
        figures["change_p99_s"] = p99(latencies)
        figures["changes_seen"] = len(latencies)
        figures["changes_missed"] = missed

        # Cursor steps: the move and the drawing of every line on screen. (Pilot's press
        # waits for an idle app, which a console under 100 changes/s may never be.)
        stage("cursor")
        table = app.dashboard.instances_table
        table.focus()
        steps: list[float] = []
        for _ in range(STEPS):
            begun = time.perf_counter()
            table.action_cursor_down()
            screen_lines(app)
            steps.append(time.perf_counter() - begun)
            await asyncio.sleep(0.02)
        figures["cursor_p99_s"] = p99(steps)

        # Filter to one id: typed into the filter line (as its Changed message).
        stage("filter")
        target = find.strip()
        app.dashboard.action_filter()
        filter_line = app.dashboard.query_one("#filter", Input)
        filter_line.value = target[:-1]
        await asyncio.sleep(0.5)
        begun = time.perf_counter()
        filter_line.value = target

        def alone() -> bool:
            lines = [line for line in screen_lines(app)[1:] if line.strip() and "…" not in line]
            return len(lines) == 1 and target in lines[0]

        waited = await until(alone, bound)
        figures["filter_s"] = None if waited is None else time.perf_counter() - begun
        stage("done")
        figures["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        app.exit()
    print(json.dumps(figures), flush=True)


async def hold(api: str, total: int, bound: float, find: str) -> None:
    """Run the console under Pilot; once it shows the real total and the watched row
    (or ``bound`` passed), print one JSON line (its first paint) and keep it open,
    driven by nothing, until stdin closes (``--consoles``)."""
    from aegis.console.ui import ConsoleApp

    app = ConsoleApp(api)
    started = time.perf_counter()
    async with app.run_test(size=SIZE):
        waited = await until(lambda: shows_total(app, total), bound)
        first_paint = None if waited is None else time.perf_counter() - started
        await until(lambda: any(find in line for line in screen_lines(app)), bound)
        print(json.dumps({"first_paint_s": first_paint}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        app.exit()


# The orchestrator ------------------------------------------------------------------


@contextmanager
def exported(ref: str, tmp: Path) -> Iterator[Path]:
    """The console package as ``ref`` has it, in a folder to put first on the path."""
    folder = tmp / f"console-{ref.replace('/', '_')}"
    folder.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "console/aegis"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    yield folder / "console"


def run_console(
    label: str,
    path: Path | None,
    args: argparse.Namespace,
    api: str,
    total: int,
    changes: Path,
    find: str,
    router_pid: int,
) -> dict[str, Any]:
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path), env.get("PYTHONPATH", "")])
    command = [sys.executable, __file__, "--drive", api, "--total", str(total)]
    command += ["--seconds", str(args.seconds), "--bound", str(args.bound)]
    command += ["--changes", str(changes), "--find", find]
    router_cpu = cpu_seconds(router_pid)
    began = time.monotonic()
    try:
        out = subprocess.run(
            command, capture_output=True, text=True, env=env, check=False, timeout=8 * args.bound
        )
    except subprocess.TimeoutExpired as exc:
        print(f"{label}: no figures within {8 * args.bound:g} s", file=sys.stderr)
        print((exc.stderr or b"")[-3000:], file=sys.stderr)
        return {"label": label, "failed": True}
    wall = time.monotonic() - began
    if out.returncode != 0:
        print(out.stderr[-3000:], file=sys.stderr)
        return {"label": label, "failed": True}
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    figures["router_cpu_pct"] = (cpu_seconds(router_pid) - router_cpu) / wall * 100
    figures["label"] = label
    return figures


def first_lines(procs: list[subprocess.Popen[str]], limit: float) -> list[str]:
    """Each process's first line on stdout ("" if it closed it or said nothing within
    ``limit`` seconds, all told)."""
    lines = [""] * len(procs)
    deadline = time.monotonic() + limit
    with selectors.DefaultSelector() as waiting:
        for n, proc in enumerate(procs):
            assert proc.stdout is not None
            waiting.register(proc.stdout, selectors.EVENT_READ, n)
        while waiting.get_map() and (left := deadline - time.monotonic()) > 0:
            for key, _ in waiting.select(left):
                lines[key.data] = procs[key.data].stdout.readline()
                waiting.unregister(key.fileobj)
    return lines


def run_consoles(
    count: int,
    args: argparse.Namespace,
    api: str,
    total: int,
    find: str,
    router_pid: int,
    base_before: float,
    tmp: Path,
) -> dict[str, Any]:
    """``count`` consoles of this checkout open at once, each in its own process: the
    router's CPU and each console's CPU over one ``args.seconds`` window once all show
    the registry, each one's peak RSS; then the router alone again over an equal window."""
    command = [sys.executable, __file__, "--hold", api, "--total", str(total)]
    command += ["--bound", str(args.bound), "--find", find]
    logs = [tmp / f"console-{n + 1}.log" for n in range(count)]
    procs: list[subprocess.Popen[str]] = []
    alive = False  # every console opened and lasted the window
    figures: dict[str, Any] = {"consoles": count, "router_base_before_pct": base_before}
    try:
        for log in logs:
            with log.open("w") as err:
                procs.append(
                    subprocess.Popen(
                        command,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=err,
                        text=True,
                    )
                )
        ready = first_lines(procs, 3 * args.bound)
        if all(ready):
            stage(f"{count} consoles open")
            time.sleep(SETTLE)
            busy, ticks = machine_ticks()
            pids = [router_pid, *(proc.pid for proc in procs)]
            router_pct, *console_pcts = cpu_over(pids, args.seconds)
            busy_after, ticks_after = machine_ticks()
            figures["machine_busy_pct"] = (busy_after - busy) / (ticks_after - ticks) * 100
            alive = all(proc.poll() is None for proc in procs)
            rss = [peak_rss_mb(proc.pid) for proc in procs] if alive else []
    finally:
        for proc in procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in procs:
            try:
                proc.wait(timeout=args.bound)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if not alive:
        for n, log in enumerate(logs):
            print(f"console {n + 1}: {log.read_text()[-3000:]}", file=sys.stderr)
        return {**figures, "failed": True}
    stage("consoles closed")
    time.sleep(SETTLE)
    (base_after,) = cpu_over([router_pid], args.seconds)
    base = (base_before + base_after) / 2
    figures["router_base_after_pct"] = base_after
    figures["router_cpu_pct"] = router_pct
    figures["router_added_pct"] = router_pct - base
    figures["per_console"] = [
        {"first_paint_s": json.loads(line)["first_paint_s"], "cpu_pct": cpu, "rss_mb": mb}
        for line, cpu, mb in zip(ready, console_pcts, rss, strict=True)
    ]
    return figures


def register(nats_url: str, count: int, prefix: str, services: int) -> None:
    subprocess.run(
        [
            sys.executable,
            str(BENCH / "nats_load.py"),
            nats_url,
            "register",
            str(count),
            "64",
            prefix,
            str(services),
        ],
        check=True,
        capture_output=True,
    )


def show(value: float | None, unit: str, bound: float, scale: float = 1.0) -> str:
    if value is None:
        return f"> {bound:g} s"
    return f"{value * scale:,.{0 if scale > 1 else 2}f} {unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 instances, short windows")
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=100.0, help="changes per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="steady CPU window")
    parser.add_argument("--bound", type=float, default=90.0, help="longest wait for one figure")
    parser.add_argument(
        "--before",
        help="git ref of today's console (default: where this branch left main, so the "
        "console matches this checkout's SDK)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--only", choices=("ours", "today"), help="run one console (default: both)")
    parser.add_argument(
        "--consoles",
        type=int,
        metavar="N",
        help="instead: N consoles of this checkout open at once, the router CPU they add",
    )
    parser.add_argument("--drive", metavar="API", help=argparse.SUPPRESS)
    parser.add_argument("--hold", metavar="API", help=argparse.SUPPRESS)
    parser.add_argument("--total", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--changes", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--find", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        asyncio.run(
            drive(args.drive, args.total, args.seconds, args.bound, args.changes, args.find)
        )
        return
    if args.hold:
        asyncio.run(hold(args.hold, args.total, args.bound, args.find))
        return
    if args.consoles is not None and (args.consoles < 1 or args.only or args.before):
        parser.error("--consoles takes N >= 1, and runs this checkout's console only")
    if args.before is None:
        args.before = subprocess.run(
            ["git", "-C", str(ROOT), "merge-base", "HEAD", "main"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()[:12]
    if args.quick:
        args.instances, args.rate, args.seconds, args.bound = 1000, 20.0, 2.0, 10.0
    from importlib.metadata import version

    from tests.support.procs import NatsServer, router_process

    half = args.instances // 2
    big, small = "fleet", "svc"
    print(
        f"python {platform.python_version()}, {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} cores, textual {version('textual')}; {args.instances:,} instances "
        f"(1 service of {half:,}, 500 of {half // 500:,}), {args.rate:g} changes/s; "
        + (
            f"today = console of {args.before}"
            if args.consoles is None
            else f"{args.consoles} consoles of this checkout at once"
        ),
        flush=True,
    )
    results: list[dict[str, Any]] = []
    many: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        nats = NatsServer(data_dir=tmp / "nats")
        nats.start()
        try:
            with router_process(
                tmp, nats_url=nats.url, name="scale", AEGIS_STORE="memory", **LONG
            ) as r:
                assert r.process is not None
                began = time.monotonic()
                register(nats.url, half, big, 1)
                register(nats.url, args.instances - half, small, 500)
                print(
                    f"registered {args.instances:,} in {time.monotonic() - began:.1f} s", flush=True
                )
                keys = [f"{big}-svc-0/{big}-{n}" for n in range(half)]
                keys += [f"{small}-svc-{n % 500}/{small}-{n}" for n in range(args.instances - half)]
                changes = tmp / "changes.jsonl"
                changes.touch()
                import multiprocessing

                context = multiprocessing.get_context("spawn")
                maker = context.Process(
                    target=_changes_main, args=(r.http_url, args.rate, keys, changes), daemon=True
                )
                maker.start()
                try:
                    time.sleep(2)
                    idle = cpu_seconds(r.process.pid)
                    time.sleep(args.seconds)
                    base_pct = (cpu_seconds(r.process.pid) - idle) / args.seconds * 100
                    find = f" {big}-0 "
                    if args.consoles is not None:
                        many = run_consoles(
                            args.consoles,
                            args,
                            r.http_url,
                            args.instances,
                            find,
                            r.process.pid,
                            base_pct,
                            tmp,
                        )
                        print(json.dumps(many), flush=True)
                    else:
                        with exported(args.before, tmp) as before_path:
                            consoles = [
                                ("list + watch", None, "ours"),
                                ("today", before_path, "today"),
                            ]
                            for label, path, short in consoles:
                                if args.only not in (None, short):
                                    continue
                                figures = run_console(
                                    label,
                                    path,
                                    args,
                                    r.http_url,
                                    args.instances,
                                    changes,
                                    find,
                                    r.process.pid,
                                )
                                figures["router_added_pct"] = (
                                    figures.get("router_cpu_pct", 0) - base_pct
                                )
                                results.append(figures)
                                print(json.dumps(figures), flush=True)
                finally:
                    maker.terminate()
        finally:
            nats.stop()
    if args.consoles is not None:
        report_consoles(many, args.bound)
        if args.json:
            args.json.write_text(json.dumps({"consoles": many, "router_base_pct": base_pct}))
        return
    report(results, args.bound, base_pct)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "router_base_pct": base_pct}))


def _changes_main(api: str, rate: float, keys: list[str], log: Path) -> None:
    asyncio.run(make_changes(api, rate, keys, log))


TARGETS = [
    ("first paint with the real totals", "first_paint_s", "s", "≤ 1 s"),
    ("filter to one instance id", "filter_s", "ms", "≤ 200 ms"),
    ("cursor move, p99", "cursor_p99_s", "ms", "≤ 50 ms"),
    ("change reaches the screen, p99", "change_p99_s", "ms", "≤ 1 s"),
    ("console CPU while open", "cpu_pct", "%", "≤ 15 %"),
    ("router CPU added by the console", "router_added_pct", "%", "≤ 5 %"),
    ("console memory (RSS)", "rss_mb", "MB", "≤ 200 MB"),
]


def report(results: list[dict[str, Any]], bound: float, base_pct: float) -> None:
    by_label = {r["label"]: r for r in results}
    ours, today = by_label.get("list + watch", {}), by_label.get("today", {})
    print(f"\nrouter CPU under the load alone: {base_pct:.1f} % of a core")
    head = ("measure", "list + watch", "today", "today / list + watch", "target")
    rows: list[tuple[str, ...]] = [head]
    for what, key, unit, target in TARGETS:
        values = []
        for figures in (ours, today):
            value = figures.get(key)
            if figures.get("failed"):
                values.append("failed")
            elif unit in ("s", "ms"):
                scale = 1000.0 if unit == "ms" else 1.0
                values.append(show(value, unit, bound, scale))
            else:
                values.append("-" if value is None else f"{value:,.1f} {unit}")
        a, b = ours.get(key), today.get(key)
        ratio = f"x{b / a:.1f}" if a and b and a > 0 and b > 0 else "-"
        missing = b is None and not today.get("failed")
        if key in ("first_paint_s", "filter_s", "change_p99_s") and a and missing:
            ratio = f"> x{bound / a:.0f}"
        rows.append((what, *values, ratio, target))
    table(rows)


def table(rows: list[tuple[str, ...]]) -> None:
    """Rows of cells as columns (the first row their heads)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(" | ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


# What issue 24 asks of one console, and of ten on one router.
ADDED_TARGETS = {1: "≤ 5 %", 10: "≤ 20 %"}


def report_consoles(many: dict[str, Any], bound: float) -> None:
    """The ``--consoles`` table: each console, then what they cost together."""
    count = many["consoles"]
    if many.get("failed"):
        print(f"\n{count} consoles: failed (their logs above)")
        return
    print(
        f"\nrouter CPU under the load alone: {many['router_base_before_pct']:.1f} % of a core "
        f"before the consoles, {many['router_base_after_pct']:.1f} % after; with them "
        f"{many['router_cpu_pct']:.1f} %, the machine's {os.cpu_count()} cores "
        f"{many['machine_busy_pct']:.0f} % busy"
    )
    rows: list[tuple[str, ...]] = [("console", "first paint", "CPU while open", "memory (RSS)")]
    for n, one in enumerate(many["per_console"], 1):
        paint = show(one["first_paint_s"], "s", bound)
        rows.append((str(n), paint, f"{one['cpu_pct']:.1f} %", f"{one['rss_mb']:.1f} MB"))
    table(rows)
    print()
    per = many["per_console"]
    noun = "console" if count == 1 else "consoles"
    table(
        [
            ("measure", f"{count} {noun}", "target"),
            (
                f"router CPU added by {count} {noun}",
                f"{many['router_added_pct']:.1f} %",
                ADDED_TARGETS.get(count, "-"),
            ),
            (
                "console CPU while open, highest",
                f"{max(one['cpu_pct'] for one in per):.1f} %",
                "≤ 15 % each",
            ),
            (
                "console memory (RSS), highest",
                f"{max(one['rss_mb'] for one in per):.1f} MB",
                "≤ 200 MB each",
            ),
        ]
    )


if __name__ == "__main__":
    main()
