"""aegis.router.metrics: requests counted by result, instances by status, served on /metrics."""

from __future__ import annotations

from aegis.router.bootstrap import bootstrap
from aegis.router.bus.endpoints import endpoints
from aegis.router.registry.operations import Registry
from aegis.router.request_tally import fold_all
from aegis.router.settings import Settings
from prometheus_client import REGISTRY

from tests.support.prometheus import sample_value
from tests.unit.router.fakes import register_body


def counted(name: str, **labels: str) -> float:
    """A sample's value in this process's metrics; 0 before it is first counted."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_count_requests_by_result_and_instances_by_status() -> None:
    # The counters are process-wide and other tests count too: compare with before,
    # once what they counted is in Prometheus (a scrape folds it in, as below).
    fold_all()
    created = {"kind": "registration", "result": "created"}
    malformed = {"kind": "registration", "result": "malformed"}
    before = {
        "created": counted("aegis_requests_total", **created),
        "malformed": counted("aegis_requests_total", **malformed),
        "timed": counted("aegis_request_duration_seconds_count", kind="registration"),
    }
    app = bootstrap(Settings(store="memory"), nats=None)
    registry: Registry = app.ctx.registry
    handlers = endpoints(registry, max_request_bytes=4096, max_metadata_bytes=1024)

    await handlers["ipc.service.register"](register_body("m", "m-1"))
    await handlers["ipc.service.register"](b"garbage")
    _, first = await app.asgi_client.get("/metrics")
    await handlers["ipc.service.register"](register_body("m", "m-2"))
    _, second = await app.asgi_client.get("/metrics")

    assert first.status == second.status == 200
    assert counted("aegis_requests_total", **created) == before["created"] + 2
    assert counted("aegis_requests_total", **malformed) == before["malformed"] + 1
    timed = counted("aegis_request_duration_seconds_count", kind="registration")
    assert timed == before["timed"] + 3
    # The endpoint serves those same values, and the instance gauge follows the registry.
    assert sample_value(first.text, "aegis_requests_total", **created) == before["created"] + 1
    assert sample_value(second.text, "aegis_requests_total", **created) == before["created"] + 2
    assert sample_value(first.text, "aegis_requests_total", **malformed) == before["malformed"] + 1
    assert sample_value(first.text, "aegis_instances", status="ONLINE") == 1
    assert sample_value(second.text, "aegis_instances", status="ONLINE") == 2
    assert sample_value(second.text, "aegis_instances", status="OFFLINE") == 0
