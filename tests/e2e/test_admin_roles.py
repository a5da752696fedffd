"""Roles on the admin API end to end: a real router reading a tokens file made with
``aegis-router token``, a real nats-server, and what each token may do.

- a read token: 200 on every read (and the event stream), 403 on every action;
- an operator token: the actions work, each is an ``operator_action`` in the
  router's log and its change events carry the token's name on the stream;
- no token, or an unknown one: 401;
- no secret in any response, nor in the router's log.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
from nats.aio.client import Client as NatsClient

from tests.support.admin_paths import ADMIN, INSTANCE, READS
from tests.support.procs import NatsServer, RouterProcess, router_process
from tests.support.sse import WAIT, Sse, SseReader

pytestmark = pytest.mark.e2e

ADMIN_TOKEN = "e2e-admin-token-0123456789abcdef"
ACTIONS: list[tuple[str, str, dict[str, str] | None]] = [
    ("PUT", f"{INSTANCE}/maintenance", {"reason": "kernel upgrade"}),
    ("DELETE", f"{INSTANCE}/maintenance", None),
    ("PUT", f"{ADMIN}/services/billing/maintenance", {"reason": "db migration"}),
    ("DELETE", f"{ADMIN}/services/billing/maintenance", None),
    ("DELETE", INSTANCE, None),
]


def new_token(name: str, role: str) -> tuple[str, str]:
    """(secret, tokens-file line) from the ``aegis-router token`` command."""
    out = subprocess.run(
        [sys.executable, "-m", "aegis.router", "token", name, "--role", role],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.splitlines()
    return out[0].removeprefix("token:").strip(), out[-1]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


class Seen:
    """Every response body the test got: checked for secrets at the end."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

    async def send(
        self,
        router: RouterProcess,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: dict[str, str] | None = None,
    ) -> httpx.Response:
        async with httpx.AsyncClient(base_url=router.http_url, timeout=WAIT) as http:
            response = await http.request(method, path, headers=headers, json=body)
        self.bodies.append(f"{response.headers}\n{response.text}")
        return response


@pytest.fixture
async def secrets_and_router(
    nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[tuple[dict[str, str], RouterProcess]]:
    reader, reader_line = new_token("ci-dashboard", "read")
    operator, operator_line = new_token("oncall", "operator")
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# platform team\n{reader_line}\n{operator_line}\n")
    process = router_process(
        tmp_path,
        nats_url=nats_server.url,
        AEGIS_TOKENS_FILE=str(tokens),
        AEGIS_ADMIN_TOKEN=ADMIN_TOKEN,
        AEGIS_ROUTER_ID="r1",
    )
    async with process:
        yield {"read": reader, "operator": operator, "admin": ADMIN_TOKEN}, process


async def register(nc: NatsClient, instance: str) -> None:
    body = {"service_name": "billing", "instance_id": instance, "session_id": f"s-{instance}"}
    reply = await nc.request("ipc.service.register", msgpack.packb(body), timeout=5)
    assert msgpack.unpackb(reply.data)["status"] == 201


def audit_lines(router: RouterProcess) -> list[dict[str, Any]]:
    lines = []
    for text in router.logs().splitlines():
        if '"operator_action"' in text:
            lines.append(json.loads(text))
    return lines


async def test_each_token_does_what_its_role_allows_and_is_named_never_shown(
    secrets_and_router: tuple[dict[str, str], RouterProcess], raw_nats: NatsClient
) -> None:
    secrets, router = secrets_and_router
    seen = Seen()
    for n in (1, 2):
        await register(raw_nats, f"b-{n}")

    # Unknown or missing token: 401 on reads and actions alike.
    for headers in ({}, bearer("aegis_not-a-token"), {"Authorization": secrets["read"]}):
        for method, path in (("GET", f"{ADMIN}/services"), ("DELETE", INSTANCE)):
            response = await seen.send(router, method, path, headers)
            assert response.status_code == 401, (headers, method, path)
            assert response.json()["error"]["code"] == "UNAUTHORIZED"

    # The read token: every read, 403 on every action, nothing changed.
    for path in READS:
        response = await seen.send(router, "GET", path, bearer(secrets["read"]))
        assert response.status_code == 200, path
    whoami = await seen.send(router, "GET", f"{ADMIN}/whoami", bearer(secrets["read"]))
    assert whoami.json() == {"name": "ci-dashboard", "role": "read"}
    for method, path, body in ACTIONS:
        response = await seen.send(router, method, path, bearer(secrets["read"]), body)
        assert response.status_code == 403, (method, path)
        error = response.json()["error"]
        assert error["code"] == "FORBIDDEN"
        assert '"ci-dashboard" has role read' in error["message"]
        assert "needs role operator" in error["message"]
    listing = await seen.send(router, "GET", f"{ADMIN}/services/billing", bearer(secrets["read"]))
    assert [(i["status"], "maintenance" in i) for i in listing.json()["instances"]] == [
        ("ONLINE", False),
        ("ONLINE", False),
    ]

    # The operator token acts, followed on the stream by the read token.
    async with (
        httpx.AsyncClient(base_url=router.http_url, timeout=WAIT) as http,
        http.stream("GET", f"{ADMIN}/events", headers=bearer(secrets["read"])) as stream,
    ):
        assert stream.status_code == 200
        events = SseReader(stream)
        for method, path, body in ACTIONS:
            response = await seen.send(router, method, path, bearer(secrets["operator"]), body)
            assert response.status_code == 200, (method, path, response.text)
        changes = [await events.next() for _ in range(7)]
        # And the admin token, AEGIS_ADMIN_TOKEN, as the operator "admin".
        response = await seen.send(
            router, "DELETE", f"{ADMIN}/services/billing/instances/b-2", bearer(secrets["admin"])
        )
        assert response.status_code == 200
        changes.append(await events.next())

    # Each change names who made it (a service's two instances change side by side).
    assert sorted(summary(c) for c in changes) == sorted(
        [
            ("maintenance", "b-1", "kernel upgrade", "oncall"),  # PUT the instance's
            ("maintenance", "b-1", "", "oncall"),  # DELETE it
            ("maintenance", "b-1", "db migration", "oncall"),  # PUT the service's: both
            ("maintenance", "b-2", "db migration", "oncall"),
            ("maintenance", "b-1", "", "oncall"),  # DELETE the service's
            ("maintenance", "b-2", "", "oncall"),
            ("deregistered", "b-1", "", "oncall"),
            ("deregistered", "b-2", "", "admin"),
        ]
    )

    # The audit log: one operator_action per mutating request, refusals included.
    audit = [
        (a["actor"], a["role"], a["action"], a["service"], a["instance"], a["reason"], a["outcome"])
        for a in audit_lines(router)
    ]
    unknown = [a for a in audit if a[-1] == 401]
    assert len(unknown) == 3
    assert {a[0] for a in unknown} == {None}
    refused = [a for a in audit if a[-1] == 403]
    assert refused == [
        ("ci-dashboard", "read", "maintenance_on", "billing", "b-1", "kernel upgrade", 403),
        ("ci-dashboard", "read", "maintenance_off", "billing", "b-1", None, 403),
        ("ci-dashboard", "read", "maintenance_on", "billing", None, "db migration", 403),
        ("ci-dashboard", "read", "maintenance_off", "billing", None, None, 403),
        ("ci-dashboard", "read", "deregister", "billing", "b-1", None, 403),
    ]
    done = [a for a in audit if a[-1] == 200]
    assert done == [
        ("oncall", "operator", "maintenance_on", "billing", "b-1", "kernel upgrade", 200),
        ("oncall", "operator", "maintenance_off", "billing", "b-1", None, 200),
        ("oncall", "operator", "maintenance_on", "billing", None, "db migration", 200),
        ("oncall", "operator", "maintenance_off", "billing", None, None, 200),
        ("oncall", "operator", "deregister", "billing", "b-1", None, 200),
        ("admin", "operator", "deregister", "billing", "b-2", None, 200),
    ]
    assert len(audit) == 3 + 5 + 6, "reads are not audited"
    assert '"operator_deregistration"' not in router.logs()

    # No secret anywhere: not in a response, not in the log (which names the tokens).
    logs = router.logs()
    assert '"admin_api_tokens"' in logs
    for secret in secrets.values():
        assert secret not in logs
        assert not [body for body in seen.bodies if secret in body]


def summary(event: Sse) -> tuple[str, str, str, object]:
    """(kind, instance, maintenance reason, actor) of a change event."""
    instance = event.data["instance"]
    assert isinstance(instance, dict)
    mark = instance.get("maintenance")
    return (
        event.event,
        instance["instance_id"],
        mark["reason"] if mark else "",
        event.data.get("actor"),
    )


async def test_a_bad_tokens_file_stops_the_router_naming_the_line(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    _, line = new_token("oncall", "operator")
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{line}\nci-dashboard viewer sha256:{'0' * 64}\n")
    router = router_process(tmp_path, nats_url=nats_server.url, AEGIS_TOKENS_FILE=str(tokens))

    assert await asyncio.to_thread(router.run) == 2
    assert f"{tokens}, line 2: role must be read or operator" in router.logs()
