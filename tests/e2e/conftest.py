"""Fixtures of the end-to-end tests that speak to NATS with nats.js (npm ``@nats-io/*``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.npm import missing_node_tools, npm_ci

SCRIPTS = Path(__file__).parent  # the .cjs scripts the tests run with node
# nats.js, locked (package-lock.json), transitive versions included.
NPM_MANIFEST = SCRIPTS / "npm"


@pytest.fixture(scope="session")
def svcm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with nats.js's services client installed and the .cjs scripts beside it."""
    missing = missing_node_tools()
    if missing:
        pytest.skip(f"{' and '.join(missing)} not found: the nats.js Svcm client cannot run")
    folder = tmp_path_factory.mktemp("svcm")
    npm_ci(folder, NPM_MANIFEST)
    for script in SCRIPTS.glob("*.cjs"):
        shutil.copy(script, folder / script.name)  # node finds node_modules beside it
    return folder
