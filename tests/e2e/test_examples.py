"""The scripts in examples/ run as written against a real router, print what they promise,
exit 0 and leave the registry as they say. One ``Example`` a script: add yours to EXAMPLES."""

from __future__ import annotations

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
]


def test_every_example_script_is_tested() -> None:
    scripts = {path.name for path in EXAMPLES_DIR.glob("*.py")}
    assert scripts == {example.script for example in EXAMPLES}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example.script)
def test_example_runs_against_a_real_router(
    example: Example, router: RouterProcess, nats_server: NatsServer
) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES_DIR / example.script), nats_server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout.splitlines() == example.printed
    for service, statuses in example.leaves.items():
        detail = httpx.get(f"{router.http_url}/api/v1/admin/services/{service}", timeout=5).json()
        assert {i["instance_id"]: i["status"] for i in detail["instances"]} == statuses
