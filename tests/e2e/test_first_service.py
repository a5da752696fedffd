"""The README's first service, run as written (its ``service.py``), as a deployment runs it:
stopped with SIGTERM, killed and started again at once.

The router is given short liveness timings (environment only) so that a killed
run's registration is still held when the next run starts, and expires soon.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.pages import background_programs
from tests.support.procs import NatsServer, RouterProcess, router_process, stop_process

pytestmark = pytest.mark.e2e

SERVICE = background_programs()[0]["service.py"]
REGISTERED = "registered billing-1 ONLINE"
# A killed run's registration is held this long: longer than a restart takes.
OFFLINE_AFTER = 10.0


def log_line(level: str, event: str) -> str:
    """An SDK log line, as a service that configured no logging prints it."""
    return rf"\d{{4}}-\d\d-\d\dT[\d:.]+Z \[{level} *\] {event} \[aegis\.sdk[\w.]*\]"


@pytest.fixture
def router(nats_server: NatsServer, tmp_path: Path) -> Iterator[RouterProcess]:
    with router_process(
        tmp_path,
        nats_url=nats_server.url,
        AEGIS_STORE="memory",
        AEGIS_HEARTBEAT_INTERVAL="1",
        AEGIS_UNHEALTHY_AFTER="5",
        AEGIS_OFFLINE_AFTER=str(OFFLINE_AFTER),
        AEGIS_REMOVE_AFTER="120",
    ) as process:
        yield process


class Service:
    """``python service.py`` pointed at the test's NATS server, its output in a file."""

    def __init__(self, nats_url: str, folder: Path, run: int) -> None:
        code = SERVICE.replace("nats://127.0.0.1:4222", nats_url)
        self.out = folder / f"service-{run}.out"
        with self.out.open("wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-u", "-c", code], stdout=sink, stderr=subprocess.STDOUT
            )

    def printed(self) -> str:
        return self.out.read_text(errors="replace")

    def wait_for(self, text: str, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while text not in self.printed():
            code = self.process.poll()
            assert code is None, f"exited {code}:\n{self.printed()}"
            assert time.monotonic() < deadline, f"not printed within {within}s:\n{self.printed()}"
            time.sleep(0.05)


def billing_1(router: RouterProcess) -> str | None:
    """billing-1's status in REST; None when the router has no such instance."""
    response = httpx.get(f"{router.http_url}/api/v1/admin/services/billing", timeout=5)
    if response.status_code == 404:
        return None
    statuses = {i["instance_id"]: i["status"] for i in response.json()["instances"]}
    return statuses.get("billing-1")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda sig: sig.name)
def test_a_stop_signal_deregisters_at_once(
    sig: signal.Signals, router: RouterProcess, nats_server: NatsServer, tmp_path: Path
) -> None:
    service = Service(nats_server.url, tmp_path, 1)
    service.wait_for(REGISTERED)
    assert billing_1(router) == "ONLINE"

    assert stop_process(service.process, sig) == 0, service.printed()

    # Right after the process is gone: no waiting for the router's deadlines.
    assert billing_1(router) in ("OFFLINE", None)
    assert "Traceback" not in service.printed()
    assert re.search(log_line("info", "stop_signal_received"), service.printed())


def test_a_quick_restart_waits_for_the_killed_run_and_ends_online(
    router: RouterProcess, nats_server: NatsServer, tmp_path: Path
) -> None:
    first = Service(nats_server.url, tmp_path, 1)
    first.wait_for(REGISTERED)
    assert stop_process(first.process, signal.SIGKILL) == -signal.SIGKILL
    killed_at = time.monotonic()

    second = Service(nats_server.url, tmp_path, 2)
    # Waiting says so, with time and level, and ends with the instance taken over.
    second.wait_for("waiting_for_stale_registration", within=5)
    waiting = log_line("info", "waiting_for_stale_registration")
    assert re.search(waiting, second.printed()), second.printed()
    second.wait_for(REGISTERED, within=OFFLINE_AFTER + 10)
    assert time.monotonic() - killed_at < OFFLINE_AFTER + 10
    assert billing_1(router) == "ONLINE"
    assert stop_process(second.process, signal.SIGTERM) == 0, second.printed()
    assert "Traceback" not in second.printed()
