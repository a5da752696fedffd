"""Mass expiry against a real router on the JetStream store: how late, and how responsive.

N instances heartbeat once and fall silent together. Reported: how long after
``unhealthy_after`` the last of them turns UNHEALTHY (issue 11 targets 2 s),
and ``/healthz`` latency while the router expires them (target: p99 under
100 ms). Run by ``bench/run.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.procs import router_process

UNHEALTHY_AFTER = 5.0
TIMINGS = {
    "AEGIS_HEARTBEAT_INTERVAL": "1",
    "AEGIS_UNHEALTHY_AFTER": str(UNHEALTHY_AFTER),
    "AEGIS_OFFLINE_AFTER": "600",
    "AEGIS_REMOVE_AFTER": "1200",
}
Load = Callable[[str, str, int, int, str, int, int], dict[str, float]]


def unhealthy_count(http: httpx.Client) -> int:
    """UNHEALTHY instances in the router, from ``GET /services``."""
    body = http.get("/api/v1/admin/services").json()
    return sum(s["statuses"]["UNHEALTHY"] for s in body["services"])


def bench_mass_expiry(
    n: int, tmp: Path, nats_url: str, load: Load
) -> list[tuple[str, str, str, str]]:
    """Register ``n``, heartbeat each once, go silent; measure the expiry."""
    with router_process(
        tmp, nats_url=nats_url, name="expiry", AEGIS_KV_BUCKET="expiry", **TIMINGS
    ) as router:
        assert router.process is not None
        pid = router.process.pid
        load(nats_url, "register", n, 64, "expiry", pid, 100)
        load(nats_url, "heartbeat", n, 64, "expiry", pid, 100)
        silent_since = time.monotonic()  # no contact after this
        due = silent_since + UNHEALTHY_AFTER
        latencies: list[float] = []
        done_at = None
        with httpx.Client(base_url=router.http_url, timeout=10) as http:
            next_count = 0.0
            while time.monotonic() < due + 120:
                start = time.perf_counter()
                http.get("/healthz")
                latencies.append((time.perf_counter() - start) * 1000)
                if time.monotonic() >= next_count:
                    next_count = time.monotonic() + 0.1
                    if unhealthy_count(http) == n:
                        done_at = time.monotonic()
                        break
                time.sleep(0.01)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan")
    late = "never (2 min)" if done_at is None else f"{done_at - due:.2f} s"
    ratio = "" if done_at is None else f"x{(done_at - due) / 2:.2f}"
    return [
        (
            f"mass expiry, {n:,} silent at once (jetstream)",
            f"{late} past unhealthy_after",
            "2 s target",
            ratio,
        ),
        (
            "/healthz meanwhile",
            f"p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms ({len(latencies)} probes)",
            "100 ms p99 target",
            f"x{p99 / 100:.2f}",
        ),
    ]
