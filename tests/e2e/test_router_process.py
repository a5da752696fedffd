"""The aegis-router process itself: embedded NATS, signals, start-up errors."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
from aegis.sdk import ClientConfig, ServiceClient
from aegis.sdk.registrations import RegistrationState
from nats.js.api import KeyValueConfig

from tests.support import eventually
from tests.support.procs import NatsServer, RouterProcess, free_port, port_is_free, router_process
from tests.support.wire import raw_request

pytestmark = pytest.mark.e2e


def embedded_router(tmp_path: Path, **env: str) -> tuple[RouterProcess, int]:
    """A router that starts its bundled nats-server (on a free port), and that port."""
    nats_port = free_port()
    router = router_process(
        tmp_path,
        AEGIS_EMBEDDED_NATS_PORT=str(nats_port),
        AEGIS_DATA_DIR=str(tmp_path / "data"),
        **env,
    )
    return router, nats_port


# Fast liveness, so the test sees heartbeats within a second or two.
FAST_TIMINGS = {
    "AEGIS_HEARTBEAT_INTERVAL": "0.3",
    "AEGIS_UNHEALTHY_AFTER": "5",
    "AEGIS_OFFLINE_AFTER": "10",
    "AEGIS_REMOVE_AFTER": "60",
}


def wait_until_free(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_is_free(port):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(autouse=True)
def _no_inherited_nats_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AEGIS_NATS_URL", raising=False)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_embedded_nats_serves_registrations_and_stops_with_the_router(
    tmp_path: Path, sig: signal.Signals
) -> None:
    router, nats_port = embedded_router(tmp_path)
    async with router:
        nc = await nats.connect(f"nats://127.0.0.1:{nats_port}")
        reply = await raw_request(nc, {"service_name": "web", "instance_id": "web-1"})
        await nc.close()
        listed = (await router.get("/api/v1/admin/services")).json()
        code = await asyncio.to_thread(router.stop, sig)

    assert reply["status"] == 201
    assert listed["services"][0]["name"] == "web"
    assert code == 0
    gone = "the bundled nats-server gone with the router"
    await eventually(lambda: port_is_free(nats_port), gone, within=10)
    assert (tmp_path / "data" / "jetstream").is_dir()
    assert "embedded_nats_stopped" in router.logs()


async def test_restart_right_after_a_stop_loses_nothing(tmp_path: Path) -> None:
    # Clients' connections closed by the stopping nats-server leave TIME-WAIT
    # sockets on its port; they must not stop the bundled server from starting.
    router, nats_port = embedded_router(tmp_path, **FAST_TIMINGS)
    config = ClientConfig(timeout=2.0, retries=10, backoff_max=0.5)
    async with router, ServiceClient(f"nats://127.0.0.1:{nats_port}", config) as client:
        first = await client.register("billing", "billing-1")
        assert await asyncio.to_thread(router.stop, signal.SIGINT) == 0
        stopped_at = datetime.now(UTC)

        await asyncio.to_thread(router.start)  # at once

        mine = client.instances[("billing", "billing-1")]
        await eventually(
            lambda: mine.last_contact_at is not None and mine.last_contact_at > stopped_at,
            "heartbeating again after the restart",
        )
        state = mine.state
        listed = (await router.get("/api/v1/admin/services/billing")).json()

    assert state == RegistrationState.REGISTERED, mine.last_error
    (instance,) = listed["instances"]
    assert instance["status"] == "ONLINE"
    assert instance["registered_at"] == first.registered_at, "registered anew: the old one was lost"


def test_killed_router_takes_embedded_nats_with_it(tmp_path: Path) -> None:
    router, nats_port = embedded_router(tmp_path)
    with router:
        router.stop(signal.SIGKILL)

    assert wait_until_free(nats_port), "nats-server orphaned by a SIGKILLed router"


def test_taken_nats_port_is_explained(tmp_path: Path) -> None:
    router, nats_port = embedded_router(tmp_path)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", nats_port))
        squatter.listen()
        code = router.run(timeout=30)

    assert code == 2
    logs = router.logs()
    assert f"port {nats_port}" in logs
    assert "AEGIS_NATS_URL" in logs


def test_unreachable_nats_url_fails_fast_with_a_clear_message(tmp_path: Path) -> None:
    router = router_process(tmp_path, nats_url=f"nats://127.0.0.1:{free_port()}")
    code = router.run()

    assert code == 1
    assert '"event":"nats_unreachable"' in router.logs()
    assert "AEGIS_NATS_URL" in router.logs()


def test_insecure_admin_api_off_loopback_is_warned_about(tmp_path: Path) -> None:
    router = router_process(
        tmp_path,
        nats_url=f"nats://127.0.0.1:{free_port()}",
        args=["--insecure", "--http-host", "0.0.0.0"],
    )
    router.run()

    warnings = [line for line in router.logs().splitlines() if "admin_api_insecure" in line]
    assert len(warnings) == 1
    assert '"level":"warning"' in warnings[0]


def test_help_names_every_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aegis.router", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for name in (
        "AEGIS_NATS_URL",
        "AEGIS_HTTP_HOST",
        "AEGIS_HTTP_PORT",
        "AEGIS_DATA_DIR",
        "AEGIS_LOG_LEVEL",
        "AEGIS_LOG_FORMAT",
    ):
        assert name in result.stdout


def test_bad_setting_is_rejected_before_anything_starts(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aegis.router"],
        capture_output=True,
        text=True,
        env={"AEGIS_HTTP_PORT": "99999", "PATH": "/usr/bin:/bin"},
        timeout=30,
        check=False,
    )

    assert result.returncode == 2
    assert "AEGIS_HTTP_PORT" in result.stderr


async def test_several_workers_share_one_registry(tmp_path: Path) -> None:
    router, nats_port = embedded_router(tmp_path, AEGIS_HTTP_WORKERS="2")
    async with router:
        # Both workers up first: a SIGTERM while Sanic still starts a worker can
        # leave the main process waiting on it (a Sanic start-up race, not ours).
        await eventually(
            lambda: router.logs().count('"router_ready"') == 2, "both workers ready", within=20
        )
        nc = await nats.connect(f"nats://127.0.0.1:{nats_port}")
        replies = [
            await raw_request(nc, {"service_name": "multi", "instance_id": f"m-{i}"})
            for i in range(20)
        ]
        await nc.close()
        views: set[int] = set()

        async def converged() -> bool:
            # Each request may land on either worker: all must converge on 20.
            nonlocal views
            views = {
                (await router.get("/api/v1/admin/instances")).json()["total"] for _ in range(6)
            }
            return views == {20}

        await eventually(converged, "both workers list all 20", within=10)
        code = await asyncio.to_thread(router.stop, signal.SIGTERM)

    assert {r["status"] for r in replies} == {201}
    assert router.logs().count('"router_ready"') == 2, "one NATS side per worker"
    assert views == {20}
    assert code == 0
    await eventually(lambda: port_is_free(nats_port), "the bundled nats-server gone", within=10)


def test_workers_need_a_shared_store() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "aegis.router", "--workers", "2", "--store", "memory"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 2
    assert "jetstream" in result.stderr


def test_timings_shared_leases_cannot_honour_are_refused_with_the_bound(tmp_path: Path) -> None:
    # Refused before anything starts: no bundled nats-server, no data written.
    result = subprocess.run(
        [sys.executable, "-m", "aegis.router", "--unhealthy-after", "2"],
        capture_output=True,
        text=True,
        env={**os.environ, "AEGIS_HEARTBEAT_INTERVAL": "1", "AEGIS_DATA_DIR": str(tmp_path)},
        timeout=30,
        check=False,
    )

    assert result.returncode == 2
    assert "AEGIS_UNHEALTHY_AFTER is 2 s" in result.stderr
    assert "must be above 4 s" in result.stderr  # 3 s of membership + the 1 s interval
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_bucket_with_other_replicas_stops_the_router_with_code_2(
    nats_server: NatsServer, tmp_path: Path, workers: str
) -> None:
    nc = await nats.connect(nats_server.url)
    await nc.jetstream().create_key_value(KeyValueConfig(bucket="aegis_registry", replicas=1))
    await nc.close()
    router = router_process(
        tmp_path, nats_url=nats_server.url, AEGIS_KV_REPLICAS="3", AEGIS_HTTP_WORKERS=workers
    )
    code = router.run()

    assert code == 2
    assert router.logs().count('"event":"kv_replicas_mismatch"') == 1
    assert "AEGIS_KV_REPLICAS=1" in router.logs()
