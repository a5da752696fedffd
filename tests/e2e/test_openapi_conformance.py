"""schemathesis against the served OpenAPI document: no 5xx, every response matches it,
with a read token (every action a documented 403) and with an operator token."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import msgpack
import nats
import pytest
import schemathesis
from aegis.router.rest.contract import instance_key
from aegis.router.rest.cursor import encode_cursor
from aegis.router.rest.tokens import Role, new_entry
from hypothesis import settings

from tests.support.procs import NatsServer, RouterProcess, router_process

pytestmark = [pytest.mark.e2e, pytest.mark.one_python]

SECRETS = {role: new_entry(f"conformance-{role.value}", role) for role in Role}


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

    tokens = tmp / "tokens"
    tokens.write_text("".join(f"{entry.line()}\n" for _, entry in SECRETS.values()))
    with router_process(tmp, nats_url=server.url, AEGIS_TOKENS_FILE=str(tokens)) as router:
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


def call_as(case: schemathesis.Case, role: Role) -> None:
    sent_back(case)
    secret, _ = SECRETS[role]
    case.call_and_validate(headers={"Authorization": f"Bearer {secret}"})


# Two tests, not a parametrized one: schemathesis's lazy schema takes no fixture parameters.
@schema.parametrize()
@settings(max_examples=40, deadline=None)
def test_every_documented_response_to_a_read_token(case: schemathesis.Case) -> None:
    call_as(case, Role.READ)


@schema.parametrize()
@settings(max_examples=40, deadline=None)
def test_every_documented_response_to_an_operator_token(case: schemathesis.Case) -> None:
    call_as(case, Role.OPERATOR)
