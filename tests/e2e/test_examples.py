"""The scripts in examples/ run as written against a real router, print what they promise,
exit 0 and leave the registry as they say. One ``Example`` a script: add yours to EXAMPLES."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.procs import NatsServer, RouterProcess

pytestmark = pytest.mark.e2e

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"


@dataclass
class Example:
    """A script in examples/, the lines it prints, and the statuses it leaves behind."""

    script: str
    printed: list[str]
    leaves: dict[str, dict[str, str]] = field(default_factory=dict)  # service: {id: status}
    # A script run in the background meanwhile (started first, stopped with Ctrl-C after).
    beside: str | None = None


EXAMPLES = [
    Example(
        "sync_service.py",
        [
            "registered greeter-1",
            "greeter-1 says hello",
            "discovered ['greeter-1']",
            "deregistered greeter-1",
        ],
        leaves={"greeter": {"greeter-1": "OFFLINE"}},
    ),
    Example(
        "consumer.py",
        [
            "eu-1: ['payments-1']",
            "round robin: ['payments-1', 'payments-2', 'payments-1', 'payments-2']",
            "calling payments in eu-1 on port 8001",
            "mars: filtered_out",
        ],
        # The provider deregisters both on Ctrl-C.
        leaves={"payments": {"payments-1": "OFFLINE", "payments-2": "OFFLINE"}},
        beside="provider.py",
    ),
]


def test_every_example_script_is_tested() -> None:
    scripts = {path.name for path in EXAMPLES_DIR.glob("*.py")}
    assert scripts == {e.script for e in EXAMPLES} | {e.beside for e in EXAMPLES if e.beside}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example.script)
def test_example_runs_against_a_real_router(
    example: Example, router: RouterProcess, nats_server: NatsServer
) -> None:
    background = None
    if example.beside is not None:
        background = subprocess.Popen(
            [sys.executable, str(EXAMPLES_DIR / example.beside), nats_server.url],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert background.stdout is not None
        assert background.stdout.readline().startswith("serving"), "the provider is up"
    try:
        result = subprocess.run(
            [sys.executable, str(EXAMPLES_DIR / example.script), nats_server.url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        if background is not None:
            background.send_signal(signal.SIGINT)
            assert background.wait(timeout=30) == 0, "Ctrl-C ends the provider cleanly"

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout.splitlines() == example.printed
    for service, statuses in example.leaves.items():
        detail = httpx.get(f"{router.http_url}/api/v1/admin/services/{service}", timeout=5).json()
        assert {i["instance_id"]: i["status"] for i in detail["instances"]} == statuses
