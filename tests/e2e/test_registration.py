"""Registration end to end: a real aegis-router process on a real nats-server.

Driven three ways, as users would: the Python SDK, raw nats-py + MessagePack
(a client in another language), and httpx on the REST API.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aegis.sdk import (
    DuplicateInstanceError,
    InstanceStatus,
    RegistrationValidationError,
    ServiceClient,
)
from nats.aio.client import Client as NatsClient

from tests.support import eventually
from tests.support.procs import NatsServer, RouterProcess, free_port
from tests.support.wire import INSTANCE_KEYS, raw_request

pytestmark = pytest.mark.e2e


NAN = float("nan")
BIG = "x" * 20_000  # over the 16 KiB metadata bound


async def rest(router: RouterProcess, path: str) -> Any:
    """The JSON body of GET /api/v1/admin``path``."""
    return (await router.get(f"/api/v1/admin{path}")).json()


async def test_sdk_registration_is_listed_over_rest(
    router: RouterProcess, nats_server: NatsServer
) -> None:
    async with ServiceClient(nats_server.url) as client:
        instance = await client.register("billing", "billing-1", {"version": "1.4", "zone": "a"})
        services = await rest(router, "/services")
        detail = await rest(router, "/services/billing")

    assert instance.status is InstanceStatus.ONLINE
    assert instance.metadata == {"version": "1.4", "zone": "a"}
    version = services.pop("version")  # the event id the listing reflects
    assert version.rpartition(":")[2].isdecimal()
    assert services == {
        "services": [
            {
                "name": "billing",
                "instance_count": 1,
                "statuses": {"ONLINE": 1, "UNHEALTHY": 0, "OFFLINE": 0},
            }
        ],
        "total": 1,
    }
    assert detail["name"] == "billing"
    assert [i["instance_id"] for i in detail["instances"]] == ["billing-1"]
    assert detail["instances"][0]["registered_at"] == instance.registered_at


async def test_sdk_takes_a_comma_separated_server_list_like_the_router(
    router: RouterProcess, nats_server: NatsServer
) -> None:
    # As AEGIS_NATS_URL is written: the first server is down, the second serves.
    servers = f"nats://127.0.0.1:{free_port()}, {nats_server.url}"
    async with ServiceClient(servers) as client:
        instance = await client.register("listed", "listed-1")

    assert instance.status is InstanceStatus.ONLINE


async def test_retried_registration_is_idempotent(
    router: RouterProcess, nats_server: NatsServer
) -> None:
    async with ServiceClient(nats_server.url) as client:
        first = await client.register("orders", "orders-1", {"v": 1})
        again = await client.register("orders", "orders-1", {"v": 2})

    assert again.registered_at == first.registered_at
    assert again.metadata == {"v": 1}, "a retry must not change metadata"
    assert (await rest(router, "/services/orders"))["instances"][0]["metadata"] == {"v": 1}


async def test_raw_client_gets_wire_contract_replies(router: RouterProcess, raw_nats: NatsClient):
    body = {"service_name": "search", "instance_id": "s-1", "session_id": "sess-a"}
    created = await raw_request(raw_nats, {**body, "metadata": {"shard": 3}})
    renewed = await raw_request(raw_nats, body)
    duplicate = await raw_request(raw_nats, {**body, "session_id": "sess-b"})

    assert created["ok"] is True
    assert created["status"] == 201
    assert set(created["instance"]) == INSTANCE_KEYS  # type: ignore[arg-type]
    assert renewed["status"] == 200
    assert renewed["instance"]["metadata"] == {"shard": 3}  # type: ignore[index]
    assert duplicate["ok"] is False
    assert duplicate["status"] == 409
    assert duplicate["error"]["code"] == "DUPLICATE_INSTANCE"  # type: ignore[index]
    assert duplicate["existing"] == renewed["instance"], "409 carries the stored instance"
    for reply in (created, renewed, duplicate):
        assert b"sess-a" not in str(reply).encode()
    assert "sess-a" not in router.logs()


async def test_second_client_gets_409_with_the_existing_instance(
    router: RouterProcess, nats_server: NatsServer
) -> None:
    async with ServiceClient(nats_server.url) as owner, ServiceClient(nats_server.url) as other:
        registered = await owner.register("payments", "p-1", {"owner": "first"})
        with pytest.raises(DuplicateInstanceError) as caught:
            await other.register("payments", "p-1", {"owner": "second"})

    assert caught.value.status_code == 409
    assert caught.value.existing == registered
    assert (await rest(router, "/services/payments"))["instances"][0]["metadata"] == {
        "owner": "first"
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"instance_id": "x-1"}, "service_name"),
        ({"service_name": "has space", "instance_id": "x-1"}, "service_name"),
        ({"service_name": "a.b", "instance_id": "x-1"}, "service_name"),
        ({"service_name": "s" * 65, "instance_id": "x-1"}, "service_name"),
        ({"service_name": "svc"}, "instance_id"),
        ({"service_name": "svc", "instance_id": "bad/id"}, "instance_id"),
        ({"service_name": "svc", "instance_id": 42}, "instance_id"),
        ({"service_name": "svc", "instance_id": "x-1", "metadata": [1, 2]}, "metadata"),
        ({"service_name": "svc", "instance_id": "x-1", "metadata": {"b": b"\x00"}}, "metadata"),
        (
            {"service_name": "svc", "instance_id": "x-1", "metadata": {"f": float("nan")}},
            "metadata",
        ),
        (
            {"service_name": "svc", "instance_id": "x-1", "metadata": {"big": "x" * 20_000}},
            "metadata",
        ),
        ({"service_name": "svc", "instance_id": "x-1", "session_id": ""}, "session_id"),
        ({"service_name": "svc", "instance_id": "x-1", "timestamp": 17}, "timestamp"),
    ],
)
async def test_invalid_field_gets_400_with_details(
    router: RouterProcess, raw_nats: NatsClient, body: dict[str, object], field: str
) -> None:
    reply = await raw_request(raw_nats, body)

    assert reply["ok"] is False
    assert reply["status"] == 400
    error = reply["error"]
    assert error["code"] == "VALIDATION_ERROR"  # type: ignore[index]
    assert [d["loc"][0] for d in error["details"]] == [field]  # type: ignore[index]
    assert all(d["msg"] and d["type"] for d in error["details"])  # type: ignore[index]
    assert (await rest(router, "/services"))["total"] == 0, "bad input must change nothing"


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xc1", b"not msgpack at all", b"\x92\x01\x02", b"\xa5hello", b"\x81\x01\x02"],
    ids=["empty", "reserved-byte", "text", "array", "string", "int-key-map"],
)
async def test_garbage_gets_400_and_router_keeps_serving(
    router: RouterProcess, raw_nats: NatsClient, payload: bytes
) -> None:
    reply = await raw_request(raw_nats, payload)

    assert reply["status"] == 400
    assert reply["error"]["code"] == "MALFORMED_PAYLOAD"  # type: ignore[index]
    ok = await raw_request(raw_nats, {"service_name": "after", "instance_id": "a-1"})
    assert ok["status"] == 201


async def test_200_concurrent_distinct_registrations_are_all_listed(
    router: RouterProcess, nats_server: NatsServer
) -> None:
    async with ServiceClient(nats_server.url) as client:
        instances = await asyncio.gather(
            *(client.register(f"svc-{i % 10}", f"inst-{i}", {"i": i}) for i in range(200))
        )

    assert {i.instance_id for i in instances} == {f"inst-{i}" for i in range(200)}
    services = await rest(router, "/services")
    assert services["total"] == 10
    assert sum(s["instance_count"] for s in services["services"]) == 200
    listed = await rest(router, "/instances")
    assert listed["total"] == 200


async def test_50_concurrent_registrations_of_one_id_have_one_winner(
    router: RouterProcess, raw_nats: NatsClient
) -> None:
    bodies = [
        {"service_name": "race", "instance_id": "the-one", "session_id": secrets.token_hex(8)}
        for _ in range(50)
    ]
    replies = await asyncio.gather(*(raw_request(raw_nats, b) for b in bodies))

    statuses = sorted(r["status"] for r in replies)  # type: ignore[type-var]
    assert statuses == [201] + [409] * 49
    assert (await rest(router, "/services/race"))["instances"][0]["status"] == "ONLINE"


async def test_sdk_validates_before_sending(router: RouterProcess, nats_server: NatsServer):
    async with ServiceClient(nats_server.url) as client:
        with pytest.raises(RegistrationValidationError) as caught:
            await client.register("no spaces allowed", "i-1")

    assert caught.value.status_code == 400
    assert caught.value.details[0].loc == ["service_name"]


async def test_rest_errors_are_json(router: RouterProcess) -> None:
    missing = await router.get("/api/v1/admin/services/ghost")
    unknown = await router.get("/nowhere")
    wrong_method = await router.delete("/api/v1/admin/services")

    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "SERVICE_NOT_FOUND"
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "NOT_FOUND"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "METHOD_NOT_ALLOWED"


async def test_openapi_document_describes_every_route(router: RouterProcess) -> None:
    document = (await router.get("/docs/openapi.json")).json()

    assert set(document["paths"]) >= {
        "/api/v1/admin/services",
        "/api/v1/admin/services/{name}",
        "/api/v1/admin/instances",
        "/healthz",
    }
    detail = document["paths"]["/api/v1/admin/services/{name}"]["get"]["responses"]
    assert detail["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorResponse"
    }
    schemas = document["components"]["schemas"]
    # version is optional in the contract (older routers leave it out).
    assert schemas["Instance"]["required"] == sorted(
        INSTANCE_KEYS - {"version"}, key=list(schemas["Instance"]["properties"]).index
    )
    assert "version" in schemas["Instance"]["properties"]


async def test_readyz_follows_the_nats_connection(
    router: RouterProcess, nats_server: NatsServer
) -> None:
    def readyz_says(status: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return (await router.get("/readyz")).status_code == status

        return check

    assert await readyz_says(200)()
    await asyncio.to_thread(nats_server.stop)
    await eventually(readyz_says(503), "not ready without NATS", within=10)
    await asyncio.to_thread(nats_server.start)
    await eventually(readyz_says(200), "ready again", within=20)
