"""Service rights enforced by NATS (issue 26, item 1), end to end.

A real nats-server with deploy/nats-permissions.conf as shipped (the router's
user, team "payments" owning billing and invoices, team "shop" owning checkout
and cart, a read-only "reader") and a real aegis-router process answering only
the per-service subjects (AEGIS_SHARED_SUBJECTS=false), as compose.yaml runs it.
What each credential can and cannot do is read back over the router's REST API.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgpack
import nats
import pytest
from aegis.sdk import (
    ClientConfig,
    InstanceStatus,
    NatsAuth,
    PermissionDeniedError,
    RegistrationState,
    ServiceClient,
)
from nats import errors as nats_errors
from nats.aio.client import Client as NatsClient

from tests.support import eventually
from tests.support.procs import NatsServer, RouterProcess, router_process

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PERMISSIONS_CONF = REPO / "deploy" / "nats-permissions.conf"
PASSWORDS = {user: f"{user}-{secrets.token_hex(6)}" for user in ("router", "payments", "shop")}
PASSWORDS["reader"] = f"reader-{secrets.token_hex(6)}"
# Generous timeout and retries: a refusal must come at once anyway, not after them.
PATIENT = {"timeout": 5.0, "retries": 3, "connect_timeout": 2.0}


def auth(user: str) -> NatsAuth:
    return NatsAuth(user=user, password=PASSWORDS[user])


def client(server: NatsServer, user: str) -> ServiceClient:
    return ServiceClient(server.url, ClientConfig(auth=auth(user), **PATIENT), name=user)


@pytest.fixture
def nats_with_teams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NatsServer]:
    """nats-server with the shipped permissions file, its passwords in its environment."""
    for user, password in PASSWORDS.items():
        monkeypatch.setenv(f"NATS_{user.upper()}_PASSWORD", password)
    server = NatsServer(data_dir=tmp_path / "nats", extra_args=["-c", str(PERMISSIONS_CONF)])
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def router(nats_with_teams: NatsServer, tmp_path: Path) -> AsyncIterator[RouterProcess]:
    """The router, signed in as "router", on the per-service subjects only, with short
    liveness timings (memory store) so heartbeats show within a second."""
    process = router_process(
        tmp_path,
        nats_url=nats_with_teams.url,
        AEGIS_NATS_USER="router",
        AEGIS_NATS_PASSWORD=PASSWORDS["router"],
        AEGIS_SHARED_SUBJECTS="false",
        AEGIS_STORE="memory",
        AEGIS_HEARTBEAT_INTERVAL="0.2",
        AEGIS_UNHEALTHY_AFTER="2",
        AEGIS_OFFLINE_AFTER="4",
        AEGIS_REMOVE_AFTER="60",
    )
    async with process:
        yield process


async def stored(router: RouterProcess, service: str) -> list[dict[str, object]]:
    """The instances of ``service`` the router's REST API lists ([] if it knows none)."""
    response = await router.get(f"/api/v1/admin/services/{service}")
    if response.status_code == 404:
        return []
    assert response.status_code == 200, response.text
    instances: list[dict[str, object]] = response.json()["instances"]
    return instances


async def test_a_team_registers_heartbeats_and_deregisters_its_own_service(
    nats_with_teams: NatsServer, router: RouterProcess
) -> None:
    async with client(nats_with_teams, "payments") as payments:
        instance = await payments.register("billing", "billing-1", {"v": "1"})
        reg = payments.instances[("billing", "billing-1")]
        first_contact = reg.last_contact_at
        # Heartbeats every 0.2 s, to the lease holder's per-service subject.
        await eventually(lambda: reg.last_contact_at != first_contact, "a heartbeat answered")
        await eventually(lambda: reg.last_contact_at != first_contact, "another one")
        online = await stored(router, "billing")
        left = await payments.deregister("billing", "billing-1")
        offline = await stored(router, "billing")

    assert instance.status is InstanceStatus.ONLINE
    assert (reg.state, reg.failures, reg.last_error) == (RegistrationState.DEREGISTERED, 0, None)
    assert reg.heartbeat_subject is not None
    assert reg.heartbeat_subject.startswith("ipc.svc.billing.heartbeat.")
    assert [(i["instance_id"], i["status"]) for i in online] == [("billing-1", "ONLINE")]
    assert left is not None
    assert left.status is InstanceStatus.OFFLINE
    assert [(i["instance_id"], i["status"]) for i in offline] == [("billing-1", "OFFLINE")]
    assert "nats_permission_denied" not in router.logs()


async def test_registering_another_teams_service_fails_at_once_and_stores_nothing(
    nats_with_teams: NatsServer, router: RouterProcess
) -> None:
    async with client(nats_with_teams, "payments") as payments:
        started = time.monotonic()
        with pytest.raises(PermissionDeniedError) as caught:
            await payments.register("checkout", "checkout-1")
        took = time.monotonic() - started
        # The same client still speaks for its own services: no breaker, no harm done.
        await payments.register("invoices", "invoices-1")

    error = caught.value
    assert took < 2.0, f"{took:.2f}s: the refusal must not wait for the 5 s timeout"
    assert (error.status_code, error.code) == (403, "PERMISSION_DENIED")
    assert error.subject == "ipc.svc.checkout.register"
    assert "ipc.svc.checkout.register" in str(error)
    assert await stored(router, "checkout") == []
    assert [i["instance_id"] for i in await stored(router, "invoices")] == ["invoices-1"]


async def test_a_team_cannot_name_another_service_on_its_own_subject_nor_use_the_shared_ones(
    nats_with_teams: NatsServer, router: RouterProcess
) -> None:
    """NATS lets payments publish on ipc.svc.billing.register; the router refuses a body
    there naming checkout (400, both names). And the shared v1 subject is closed twice:
    NATS refuses payments' publish, and the router does not listen on it."""
    errors: list[Exception] = []

    async def keep(error: Exception) -> None:
        errors.append(error)

    raw: NatsClient = await nats.connect(
        nats_with_teams.url,
        user="payments",
        password=PASSWORDS["payments"],
        error_cb=keep,
        allow_reconnect=False,
    )
    body = {"service_name": "checkout", "instance_id": "checkout-1", "session_id": "s-1"}
    try:
        reply = await raw.request("ipc.svc.billing.register", msgpack.packb(body), timeout=5)
        with pytest.raises(nats_errors.TimeoutError):
            await raw.request("ipc.service.register", msgpack.packb(body), timeout=1)
    finally:
        await raw.close()

    refused = msgpack.unpackb(reply.data)
    assert (refused["ok"], refused["status"]) == (False, 400)
    assert "'checkout'" in refused["error"]["message"]
    assert "'billing'" in refused["error"]["message"]
    assert refused["error"]["details"][0]["type"] == "subject_mismatch"
    assert any('publish to "ipc.service.register"' in str(e).lower() for e in errors), errors
    assert await stored(router, "checkout") == []


async def test_a_reader_discovers_and_resolves_but_cannot_register(
    nats_with_teams: NatsServer, router: RouterProcess
) -> None:
    async with client(nats_with_teams, "shop") as shop:
        await shop.register("checkout", "checkout-1", {"zone": "eu"})
        async with client(nats_with_teams, "reader") as reader:
            found = await reader.discover("checkout")
            resolver = await reader.resolver("checkout", where={"zone": "eu"})
            picked = resolver.pick()
            started = time.monotonic()
            with pytest.raises(PermissionDeniedError) as caught:
                await reader.register("checkout", "checkout-2")
            took = time.monotonic() - started
            # The resolver follows change events the reader may receive.
            await shop.register("checkout", "checkout-3", {"zone": "eu"})
            await eventually(
                lambda: (
                    {i.instance_id for i in resolver.instances()} == {"checkout-1", "checkout-3"}
                ),
                "the resolver hearing of checkout-3",
            )

    assert [i.instance_id for i in found] == ["checkout-1"]
    assert picked.instance_id == "checkout-1"
    assert took < 2.0
    assert caught.value.subject == "ipc.svc.checkout.register"
    assert {i["instance_id"] for i in await stored(router, "checkout")} == {
        "checkout-1",
        "checkout-3",
    }


async def test_with_the_shared_subjects_off_v1_requests_get_no_responders(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    process = router_process(
        tmp_path, nats_url=nats_server.url, AEGIS_SHARED_SUBJECTS="false", AEGIS_STORE="memory"
    )
    body = msgpack.packb({"service_name": "billing", "instance_id": "b-1", "session_id": "s"})
    async with process:
        raw = await nats.connect(nats_server.url)
        try:
            with pytest.raises(nats_errors.NoRespondersError):
                await raw.request("ipc.service.register", body, timeout=2)
            reply = await raw.request("ipc.svc.billing.register", body, timeout=2)
        finally:
            await raw.close()

    assert msgpack.unpackb(reply.data)["status"] == 201
