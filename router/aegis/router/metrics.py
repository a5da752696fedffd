"""Prometheus metrics of the router (one set per process; scrape every worker)."""

from __future__ import annotations

from aegis.sdk.models import InstanceStatus
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

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
INSTANCES = Gauge("aegis_instances", "Instances in the registry, by status.", ["status"])
RECONNECTS = Counter("aegis_nats_reconnects_total", "Times the router reconnected to NATS.")
SWEEP_CHANGES = Counter(
    "aegis_sweep_transitions_total", "Instances the sweeper moved on (or removed)."
)


def render(counts: dict[InstanceStatus, int]) -> tuple[bytes, str]:
    """The exposition text, with the instance gauge set from ``counts`` first."""
    for status in InstanceStatus:
        INSTANCES.labels(status.value).set(counts.get(status, 0))
    return generate_latest(), CONTENT_TYPE_LATEST
