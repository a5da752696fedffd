"""Prometheus metrics of the router; one scrape covers every worker process.

One process (the default, ``--workers 1``) keeps its metrics in memory: its
registry is already the whole picture. With ``--workers N`` the main process
wraps the workers' lives in ``shared_across_workers``: each worker then writes
its values to files in one directory (prometheus-client's multiprocess mode)
and whichever worker answers ``GET /metrics`` merges every worker's files.

Multiprocess mode is used only for several workers because it cannot export
the ``process_*`` and ``python_*`` collectors, writes a file on every update,
and needs a directory to manage; one process gains nothing from it.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import structlog
from aegis.wire.messages import InstanceStatus
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

log = structlog.get_logger("aegis.router.metrics")

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# prometheus-client chooses in-memory or file-backed values once, when it is
# first imported (just above); this reads the same switch at the same moment.
SHARED = MULTIPROC_DIR_ENV in os.environ

REQUESTS = Counter(
    "aegis_requests_total",
    "NATS requests answered, by kind (registration, heartbeat, ...) and result.",
    ["kind", "result"],
)
LATENCY = Histogram(
    "aegis_request_duration_seconds",
    "Time to answer one NATS request, by kind.",
    ["kind"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
# Set at each scrape from the answering worker's view, and every worker (the
# JetStream store) sees the whole registry: the freshest value is the true
# one. A sum would count each instance once per worker; max or min would keep
# a stale value from a worker's older scrape. "live": a stopped worker's goes.
INSTANCES = Gauge(
    "aegis_instances",
    "Instances in the registry, by status.",
    ["status"],
    multiprocess_mode="livemostrecent",
)
# Leases: what this process sweeps, and how many routers it sees. With
# several workers each is a router of its own, so the leases add up.
LEASES_HELD = Gauge(
    "aegis_leases_held",
    "Instances whose lease this router holds (it sweeps them and keeps their contacts).",
    multiprocess_mode="livesum",
)
ROUTERS = Gauge(
    "aegis_routers",
    "Live routers this router sees, itself included.",
    multiprocess_mode="livemax",
)
FORWARDS = Counter(
    "aegis_heartbeats_forwarded_total",
    "Heartbeats passed on to the router holding the lease, by result (ok, failed: "
    "answered here instead).",
    ["result"],
)
RECONNECTS = Counter("aegis_nats_reconnects_total", "Times the router reconnected to NATS.")
STORE_WRITES = Counter(
    "aegis_store_writes_total",
    "Writes to the registry store, by cause (register; heartbeat: ONLINE again; refresh: a "
    "steady contact's periodic write; deregister, operator, expired).",
    ["cause"],
)
SHED = Counter(
    "aegis_requests_shed_total",
    "Requests not served because the router was at capacity, by kind and how: refused "
    "(answered 503 OVERLOADED at once) or dropped (waited past the caller's deadline).",
    ["kind", "how"],
)
LOOP_LAG = Gauge(
    "aegis_event_loop_lag_seconds",
    "How late the router's event loop last woke from a 100 ms sleep: how long a message "
    "may wait in its socket unread.",
    multiprocess_mode="livemax",
)
REQUEST_BACKLOG = Gauge(
    "aegis_request_backlog_seconds",
    "How long the longest queue of NATS requests read but not yet served would take at the "
    "pace it is served: how long a heartbeat may wait there unheard.",
    multiprocess_mode="livemax",
)
EXPIRY_SLOWED = Gauge(
    "aegis_expiry_slowed",
    "1 while a mass transition is slowed to the expiry budget (more instances due at once "
    "than max(500/s, 10 % of those held per second)), else 0.",
    multiprocess_mode="livemax",
)
# With several workers each watches the bucket: the least of them is what every
# worker's cache has read.
WATCH_REVISION = Gauge(
    "aegis_store_watch_revision",
    "The last revision of a key-value bucket (its stream's sequence) that the router's watch "
    "has applied to its cache, by bucket: every change up to it is in what the router lists.",
    ["bucket"],
    multiprocess_mode="livemin",
)
SWEEP_CHANGES = Counter(
    "aegis_sweep_transitions_total", "Instances the sweeper moved on (or removed)."
)


@functools.cache
def requests_counter(kind: str, result: str) -> Counter:
    """``REQUESTS.labels(kind, result)``, resolved once: ``labels`` is slow for a
    per-request call."""
    return REQUESTS.labels(kind, result)


@functools.cache
def latency_histogram(kind: str) -> Histogram:
    """``LATENCY.labels(kind)``, resolved once."""
    return LATENCY.labels(kind)


@functools.cache
def store_writes_counter(cause: str) -> Counter:
    """``STORE_WRITES.labels(cause)``, resolved once."""
    return STORE_WRITES.labels(cause)


def render(
    counts: dict[InstanceStatus, int], leases_held: int = 0, routers: int = 1
) -> tuple[bytes, str]:
    """The exposition text, with the instance and lease gauges set first.

    With several workers, the text is every worker's metrics merged.
    """
    for status in InstanceStatus:
        INSTANCES.labels(status.value).set(counts.get(status, 0))
    LEASES_HELD.set(leases_held)
    ROUTERS.set(routers)
    if not SHARED:
        return generate_latest(), CONTENT_TYPE_LATEST
    # A fresh registry holding only the merged files: the default one would
    # add this worker's own values a second time.
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


@contextmanager
def shared_across_workers() -> Iterator[Path]:
    """In Sanic's main process: share metrics among the workers started inside.

    Sanic spawns its workers (a new interpreter each, not a fork), so they
    import prometheus-client afresh with ``PROMETHEUS_MULTIPROC_DIR`` set and
    write to files. The directory is always new, since files left by an
    earlier run would add their counts to this one, and is removed on exit.
    This (main) process has imported prometheus-client already and keeps
    in-memory metrics, which it never serves.
    """
    previous = os.environ.get(MULTIPROC_DIR_ENV)
    path = Path(tempfile.mkdtemp(prefix="aegis-metrics-"))
    os.environ[MULTIPROC_DIR_ENV] = str(path)
    log.info("metrics_shared", directory=str(path))
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_DIR_ENV, None)
        else:
            os.environ[MULTIPROC_DIR_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)


async def worker_stopped(_app: object) -> None:
    """A worker's ``after_server_stop`` listener: drop its live gauge values.

    Its counters stay in the directory, so totals never go back when Sanic
    restarts a worker.
    """
    if SHARED:
        mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
