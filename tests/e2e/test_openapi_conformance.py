"""schemathesis against the served OpenAPI document: no 5xx, every response matches it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import msgpack
import nats
import pytest
import schemathesis
from aegis.router.rest.contract import instance_key
from aegis.router.rest.cursor import encode_cursor
from hypothesis import settings

from tests.support.procs import NatsServer, RouterProcess, router_process

pytestmark = [pytest.mark.e2e, pytest.mark.one_python]


@pytest.fixture(scope="module")
def conformance_router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    tmp = tmp_path_factory.mktemp("conformance")
    server = NatsServer(data_dir=tmp / "nats")
    server.start()

    async def seed() -> None:
        nc = await nats.connect(server.url)
        for i in range(3):
            body = {"service_name": "shop", "instance_id": f"shop-{i}", "metadata": {"i": i}}
            await nc.request("ipc.service.register", msgpack.packb(body), timeout=5)
        await nc.close()

    with router_process(tmp, nats_url=server.url) as router:
        asyncio.run(seed())
        yield router
    server.stop()


@pytest.fixture(scope="module")
def api_schema(conformance_router: RouterProcess) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{conformance_router.http_url}/docs/openapi.json")


# The event stream never ends, so a call to it would never complete: its own
# e2e test (test_event_stream.py) reads it with a streaming client instead.
schema = schemathesis.pytest.from_fixture("api_schema").exclude(path="/api/v1/admin/events")


def sent_back(case: schemathesis.Case) -> None:
    """A page cursor is opaque: a client sends back one the API gave, not one of its own
    making (those get 400 INVALID_CURSOR, tests/unit/router/rest/test_routes_paging.py)."""
    query = case.query
    if not query or "cursor" not in query:
        return
    service = (case.path_parameters or {}).get("name") or query.get("service") or "shop"
    key = instance_key(str(service), "shop-0")
    if key is None:
        del query["cursor"]
    else:
        query["cursor"] = encode_cursor(key)


@schema.parametrize()
@settings(max_examples=40, deadline=None)
def test_every_documented_response(case: schemathesis.Case) -> None:
    sent_back(case)
    case.call_and_validate()
