"""Instance limits (429, nothing stored) and the Prometheus metrics they show up in."""

from __future__ import annotations

import msgpack
import pytest
from aegis.router.bootstrap import bootstrap
from aegis.router.handlers import endpoints
from aegis.router.registry import InstanceLimits, Registry
from aegis.router.settings import Settings
from aegis.router.store import MemoryStore
from aegis.sdk import ClientConfig, LimitExceededError, ServiceClient
from prometheus_client import REGISTRY

from tests.support.prometheus import sample_value


def register_body(service: str, instance: str) -> bytes:
    return msgpack.packb({"service_name": service, "instance_id": instance, "session_id": "s"})


@pytest.mark.parametrize(
    ("limits", "blocked"),
    [
        (InstanceLimits(per_service=2, total=100), ("a", "a-3")),
        (InstanceLimits(per_service=100, total=3), ("b", "b-1")),
    ],
)
async def test_over_a_limit_is_429_and_nothing_is_stored(
    limits: InstanceLimits, blocked: tuple[str, str]
) -> None:
    registry = Registry(MemoryStore(), limits=limits)
    register = endpoints(registry, max_request_bytes=4096, max_metadata_bytes=1024)[
        "ipc.service.register"
    ]
    for instance in ("a-1", "a-2"):
        await register(register_body("a", instance))
    if limits.total == 3:
        await register(register_body("c", "c-1"))
    before = await registry.instances()

    reply = msgpack.unpackb(await register(register_body(*blocked)))
    after = await registry.instances()
    renewal = msgpack.unpackb(await register(register_body("a", "a-1")))

    assert reply["status"] == 429
    assert reply["error"]["code"] == "LIMIT_EXCEEDED"
    assert "AEGIS_MAX_INSTANCES" in reply["error"]["message"]
    assert after == before
    assert renewal["status"] == 200, "a known instance is not a new one"


async def test_sdk_maps_429() -> None:
    class Fake:
        is_closed = False

        async def request(self, *args: object, **kwargs: object) -> object:
            body = {
                "ok": False,
                "status": 429,
                "error": {"code": "LIMIT_EXCEEDED", "message": "full"},
            }
            return type("Msg", (), {"data": msgpack.packb(body)})()

    client = ServiceClient(config=ClientConfig(retries=3))
    client._nc = Fake()  # type: ignore[assignment]
    with pytest.raises(LimitExceededError) as caught:
        await client.register("a", "b")

    assert caught.value.status_code == 429


def counted(name: str, **labels: str) -> float:
    """A sample's value in this process's metrics; 0 before it is first counted."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_metrics_count_requests_by_result_and_instances_by_status() -> None:
    # The counters are process-wide and other tests count too: compare with before.
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
