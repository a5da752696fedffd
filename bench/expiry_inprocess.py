"""A simultaneous mass expiry on the JetStream store, the router's write path alone.

    python bench/expiry_inprocess.py              # 20,000 instances, shares 0.1 and 0.5
    python bench/expiry_inprocess.py 100000
    python bench/expiry_inprocess.py 20000 --router --share 0.2 2>/dev/null

A ``Registry`` on a ``JetStreamStore`` (its own nats-server), in this process:
registers N instances (timed: the in-process registration rate on the
store), then moves its clock so that every one is due at the same instant,
and runs the router's ``Sweeper`` until all are UNHEALTHY; its first sweep
comes a whole tick later, the worst a real silence can fall. No load
generator shares the machine's cores, so the figure is the sweep's and the
store's: how long past ``unhealthy_after`` the last one is written (the
registry's counts are looked at every ``POLL`` seconds), and the CPU per
expiry of this process and of nats-server. Run once per expiry budget share
(``ExpiryBudget.share``), each on a bucket of its own: 0.1 (until issue 28)
and 0.5.

``--router`` wires the registry as the router does: the store feeds the event
feed, changes are published on NATS, and every transition is logged (JSON on
stderr, at INFO), so the figure counts what ships. ``--share`` runs one share.
``--profile FILE`` writes a cProfile of the expiry alone; ``--spy FILE`` samples
it with py-spy instead (raw stacks, as ``bench/profile_router.py`` reads them).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aegis.router.bus.event_sink import NatsEventSink
from aegis.router.domain import Timings
from aegis.router.logging_setup import configure_logging
from aegis.router.registry.expiry_budget import ExpiryBudget
from aegis.router.registry.operations import Registry
from aegis.router.registry.sweeper import Sweeper, tick_for
from aegis.router.rest.event_feed import EventFeed
from aegis.router.store.jetstream import JetStreamStore
from aegis.wire.messages import InstanceStatus, RegisterRequest

from tests.support.procs import NatsServer

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
TIMINGS = Timings(heartbeat_interval=1, unhealthy_after=8, offline_after=600, remove_after=1200)
IN_FLIGHT = 64
POLL = 0.05  # seconds between two looks at the counts
UNHEALTHY = InstanceStatus.UNHEALTHY


def cpu_of(pid: int) -> float:
    """The CPU seconds (user and system) process ``pid`` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spy_on_self(out: str) -> subprocess.Popen[bytes]:
    """py-spy sampling this process into ``out`` until sent SIGINT."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    args = [spy, "record", "--pid", str(os.getpid()), "--format", "raw", "-o", out, "-r", "200"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the expiry starts
    return proc


async def one(
    server: NatsServer, n: int, share: float, wired: bool, profile: str | None, spy: str | None
) -> str:
    url = server.url
    assert server.process is not None
    nc = await nats.connect(url)
    bucket = f"expiry_{int(share * 100)}"
    store = JetStreamStore(bucket)
    feed = None
    if wired:
        feed = EventFeed("bench", max_streams=1, bucket=bucket)
        store.set_feed(feed)
    await store.start(nc)
    shift = [0.0]

    def clock() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=shift[0])

    registry = Registry(store, TIMINGS, clock=clock, expiry_budget=ExpiryBudget(share=share))
    if feed is not None:
        registry.set_event_sink(NatsEventSink(nc, feed.add_own))
    requests = [
        RegisterRequest(service_name=f"svc-{i % 100}", instance_id=f"i-{i}", session_id="s")
        for i in range(n)
    ]
    began, cpu = time.perf_counter(), time.process_time()
    for start in range(0, n, IN_FLIGHT):
        await asyncio.gather(*(registry.register(r) for r in requests[start : start + IN_FLIGHT]))
    registering = n / (time.perf_counter() - began)
    register_cpu = (time.process_time() - cpu) / n * 1e6

    tick = tick_for(TIMINGS.unhealthy_after)
    # Every instance registered within the last seconds: due together once the clock
    # passes unhealthy_after after the last of them.
    shift[0] = TIMINGS.unhealthy_after
    profiler = cProfile.Profile() if profile else None
    if profiler is not None:
        profiler.enable()
    sampler = spy_on_self(spy) if spy else None
    began, cpu = time.perf_counter(), time.process_time()
    server_cpu = cpu_of(server.process.pid)
    unhealthy = 0
    sweeper = Sweeper(registry.liveness, tick)
    sweeper.start()
    while time.perf_counter() - began < 120:
        # The registry's counts, as GET /services reads them: cheap to poll often.
        unhealthy = sum(s.statuses.get(UNHEALTHY, 0) for s in await registry.services())
        if unhealthy >= n:
            break
        await asyncio.sleep(POLL)
    took = time.perf_counter() - began
    await sweeper.stop()
    expiry_cpu = (time.process_time() - cpu) / n * 1e6
    expiry_server_cpu = (cpu_of(server.process.pid) - server_cpu) / n * 1e6
    if profiler is not None and profile:
        profiler.disable()
        profiler.dump_stats(profile)
    if sampler is not None:
        sampler.send_signal(signal.SIGINT)
        sampler.wait()
    await store.stop()
    await nc.close()
    return (
        f"share {share:g}: registered {registering:,.0f}/s ({register_cpu:.0f} us CPU each); "
        f"{unhealthy:,} of {n:,} UNHEALTHY {took:.2f} s after all fell due "
        f"({expiry_cpu:.0f} us CPU per expiry, nats-server {expiry_server_cpu:.0f} us)"
    )


async def main(server: NatsServer, args: argparse.Namespace) -> None:
    for share in args.share or (0.1, 0.5):
        result = await one(server, args.count, share, args.router, args.profile, args.spy)
        print(result, flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", type=int, nargs="?", default=20_000)
    parser.add_argument("--router", action="store_true", help="events, feed and logs on")
    parser.add_argument("--share", type=float, action="append", help="expiry budget share")
    parser.add_argument("--profile", help="write a cProfile of the expiry to this file")
    parser.add_argument("--spy", help="write py-spy's raw samples of the expiry to this file")
    args = parser.parse_args()
    if args.router:
        configure_logging("INFO", "json")
    with tempfile.TemporaryDirectory(prefix="aegis-expiry-") as tmp:
        server = NatsServer(data_dir=Path(tmp) / "nats")
        server.start()
        try:
            asyncio.run(main(server, args))
        finally:
            server.stop()
