"""The router as a NATS micro service (ADR-32), seen by clients nobody here wrote.

nats.js's ``Svcm`` client (npm ``@nats-io/services``, installed once per test
session into a temporary folder by tests/e2e/conftest.py) lists, pings and
reads the stats of a real router; nats-py reads the same answers with its own
``nats.micro`` parsers, next to a Python ``nats.micro`` service on the same bus.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from importlib.metadata import version
from pathlib import Path
from typing import Any

import nats
import nats.micro
import pytest
from aegis.sdk import ServiceClient
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.micro.service import ServiceInfo, ServiceStats

from tests.support import eventually
from tests.support.procs import NatsServer, router_process

pytestmark = [pytest.mark.e2e, pytest.mark.one_python]

REPO = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("svcm_probe.cjs")
PERMISSIONS_CONF = REPO / "deploy" / "nats-permissions.conf"
REGISTRY_SUBJECTS = {
    "register": "ipc.service.register",
    "heartbeat": "ipc.service.heartbeat",
    "deregister": "ipc.service.deregister",
    "discover": "ipc.service.discover",
    # The per-service subjects (wire contract v1.2), which the SDK uses.
    "svc-register": "ipc.svc.*.register",
    "svc-heartbeat": "ipc.svc.*.heartbeat",
    "svc-deregister": "ipc.svc.*.deregister",
    "svc-discover": "ipc.svc.*.discover",
}


async def svcm(folder: Path, url: str, name: str = "") -> dict[str, list[dict[str, Any]]]:
    """What ``Svcm(nc).client()`` answers to ping(), info() and stats() (of ``name``)."""
    probed = await asyncio.to_thread(
        subprocess.run,
        ["node", PROBE.name, url, name],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probed.returncode == 0, probed.stderr
    answers: dict[str, list[dict[str, Any]]] = json.loads(probed.stdout)
    return answers


async def gather(nc: NatsClient, subject: str, expected: int) -> list[dict[str, Any]]:
    """Scatter-gather as ``nats micro ls`` does: every answer to one request on ``subject``."""
    answers: list[dict[str, Any]] = []

    async def keep(msg: Msg) -> None:
        answers.append(json.loads(msg.data))

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=keep)
    await nc.publish(subject, b"", reply=inbox)
    await eventually(lambda: len(answers) >= expected, f"{expected} answers on {subject}", 5)
    await sub.unsubscribe()
    return answers


async def test_the_nats_js_client_lists_the_router_and_counts_its_requests(
    svcm_folder: Path, nats_server: NatsServer, tmp_path: Path
) -> None:
    router = router_process(tmp_path, nats_url=nats_server.url, AEGIS_ROUTER_ID="micro-1")
    async with router, ServiceClient(nats_server.url) as client:
        for i in range(5):
            await client.register("billing", f"billing-{i}")
        await client.discover("billing")
        await client.discover("billing")
        seen = await svcm(svcm_folder, nats_server.url)
        only_routers = await svcm(svcm_folder, nats_server.url, "aegis-router")

    [ping] = seen["ping"]
    [info] = seen["info"]
    [stats] = seen["stats"]
    assert ping["type"] == "io.nats.micro.v1.ping_response"
    assert (ping["name"], ping["id"], ping["version"]) == (
        "aegis-router",
        "micro-1",
        version("aegis-ipc"),
    )
    assert info["type"] == "io.nats.micro.v1.info_response"
    listed = {e["subject"]: (e["name"], e["queue_group"]) for e in info["endpoints"]}
    assert listed == {
        **{subject: (name, "aegis-router") for name, subject in REGISTRY_SUBJECTS.items()},
        "ipc.router.micro-1.heartbeat": ("router-heartbeat", "aegis-router"),
        "ipc.router.micro-1.forward": ("router-forward", "aegis-router"),
        "ipc.svc.*.heartbeat.micro-1": ("svc-router-heartbeat", "aegis-router"),
    }
    assert stats["type"] == "io.nats.micro.v1.stats_response"
    by_name = {e["name"]: e for e in stats["endpoints"]}
    register = by_name["svc-register"]
    assert register["num_requests"] == 5
    assert register["num_errors"] == 0
    assert register["processing_time"] > 0
    assert register["average_processing_time"] == register["processing_time"] // 5
    assert by_name["svc-discover"]["num_requests"] == 2
    assert by_name["svc-deregister"]["num_requests"] == 0  # the client leaves after the probes
    assert by_name["register"]["num_requests"] == 0  # nothing on the shared subjects
    assert [a["id"] for a in only_routers["ping"]] == ["micro-1"]


@pytest.mark.filterwarnings("ignore:datetime.datetime.utcnow:DeprecationWarning")  # nats.micro
async def test_every_router_is_an_instance_next_to_other_micro_services(
    nats_server: NatsServer, raw_nats: NatsClient, tmp_path: Path
) -> None:
    url = nats_server.url
    first = router_process(tmp_path, nats_url=url, name="r1", AEGIS_ROUTER_ID="micro-a")
    second = router_process(tmp_path, nats_url=url, name="r2", AEGIS_ROUTER_ID="micro-b")
    other = await nats.connect(url)
    inventory = await nats.micro.add_service(other, name="inventory", version="2.0.0")
    try:
        async with first:
            async with second:
                everyone = await gather(raw_nats, "$SRV.PING", expected=3)
                routers = await gather(raw_nats, "$SRV.PING.aegis-router", expected=2)
                reply = await raw_nats.request("$SRV.INFO.aegis-router.micro-b", b"", timeout=2)
                info = ServiceInfo.from_dict(json.loads(reply.data))
                reply = await raw_nats.request("$SRV.STATS.aegis-router.micro-a", b"", timeout=2)
                stats = ServiceStats.from_dict(json.loads(reply.data))
            # A stopped router leaves the listing at once.
            after_stop = await gather(raw_nats, "$SRV.PING.aegis-router", expected=1)
        with pytest.raises(NoRespondersError):
            await raw_nats.request("$SRV.PING.aegis-router", b"", timeout=2)
        still_there = await gather(raw_nats, "$SRV.PING", expected=1)
    finally:
        await inventory.stop()
        await other.close()

    assert sorted((a["name"], a["id"]) for a in everyone) == [
        ("aegis-router", "micro-a"),
        ("aegis-router", "micro-b"),
        ("inventory", inventory.id),
    ]
    assert sorted(a["id"] for a in routers) == ["micro-a", "micro-b"]
    assert info.id == "micro-b"
    assert "ipc.router.micro-b.heartbeat" in {e.subject for e in info.endpoints}
    assert stats.id == "micro-a"
    assert {e.name for e in stats.endpoints} >= set(REGISTRY_SUBJECTS)
    assert [a["id"] for a in after_stop] == ["micro-a"]
    assert [a["name"] for a in still_there] == ["inventory"]


async def test_the_permissions_example_lets_the_router_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The example's two users, and an operator allowed to ask as `nats micro ls` does.
    monkeypatch.setenv("NATS_ROUTER_PASSWORD", "router-pw")
    for user in ("PAYMENTS", "SHOP", "READER"):
        monkeypatch.setenv(f"NATS_{user}_PASSWORD", f"{user.lower()}-pw")
    operator = (
        '{ user: operator, password: "operator-pw", permissions: '
        '{ publish: ["$SRV.>"], subscribe: ["_INBOX.>"] } }\n'
    )
    text = PERMISSIONS_CONF.read_text()
    assert text.count("  users: [\n") == 1
    conf = tmp_path / "permissions.conf"
    conf.write_text(text.replace("  users: [\n", "  users: [\n" + operator))
    server = NatsServer(data_dir=tmp_path / "nats", extra_args=["-c", str(conf)])
    server.start()
    router = router_process(
        tmp_path,
        nats_url=server.url,
        AEGIS_NATS_USER="router",
        AEGIS_NATS_PASSWORD="router-pw",
        AEGIS_ROUTER_ID="micro-p",
    )
    try:
        async with router:
            nc = await nats.connect(server.url, user="operator", password="operator-pw")
            try:
                reply = await nc.request("$SRV.STATS.aegis-router", b"", timeout=2)
            finally:
                await nc.close()
    finally:
        server.stop()

    assert ServiceStats.from_dict(json.loads(reply.data)).id == "micro-p"
