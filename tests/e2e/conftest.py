"""Fixtures of the end-to-end tests that speak to NATS with nats.js (npm ``@nats-io/*``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

NPM_PACKAGES = ["@nats-io/services", "@nats-io/transport-node"]
SCRIPTS = Path(__file__).parent  # the .cjs scripts the tests run with node


@pytest.fixture(scope="session")
def svcm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with nats.js's services client installed and the .cjs scripts beside it."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not found: the nats.js Svcm client cannot run")
    folder = tmp_path_factory.mktemp("svcm")
    command = ["npm", "install", "--prefix", str(folder), "--no-audit", "--no-fund"]
    installed = subprocess.run(
        [*command, "--loglevel=error", *NPM_PACKAGES],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, f"npm install failed:\n{installed.stderr}"
    for script in SCRIPTS.glob("*.cjs"):
        shutil.copy(script, folder / script.name)  # node finds node_modules beside it
    return folder
