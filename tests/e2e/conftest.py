"""Fixtures of the end-to-end tests that run node scripts: nats.js clients (npm
``@nats-io/*``) and a headless Chromium (``@sparticuz/chromium``, ``puppeteer-core``)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support.npm import missing_node_tools, npm_ci

SCRIPTS = Path(__file__).parent  # the .cjs scripts the tests run with node
# The npm packages, locked (package-lock.json), transitive versions included.
NPM_MANIFEST = SCRIPTS / "npm"
# Set (to anything but empty) where the browser test must run: CI (.ci/run).
REQUIRE_BROWSER = "AEGIS_REQUIRE_BROWSER"


@pytest.fixture(scope="session")
def npm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the npm packages installed (once per session) and the .cjs
    scripts beside them. Ask for it through ``svcm_folder`` or ``browser_folder``,
    which first see that node and npm are there."""
    folder = tmp_path_factory.mktemp("npm")
    npm_ci(folder, NPM_MANIFEST)
    for script in SCRIPTS.glob("*.cjs"):
        shutil.copy(script, folder / script.name)  # node finds node_modules beside it
    return folder


@pytest.fixture(scope="session")
def svcm_folder(request: pytest.FixtureRequest) -> Path:
    """A folder with nats.js's services client installed and the .cjs scripts beside it."""
    missing = missing_node_tools()
    if missing:
        pytest.skip(f"{' and '.join(missing)} not found: the nats.js Svcm client cannot run")
    return Path(request.getfixturevalue("npm_folder"))


@pytest.fixture(scope="session")
def browser_folder(request: pytest.FixtureRequest) -> Path:
    """A folder with a headless Chromium and puppeteer-core installed and the .cjs
    scripts beside them. Skips without node or npm, unless AEGIS_REQUIRE_BROWSER is set."""
    missing = missing_node_tools()
    if missing:
        why = f"{' and '.join(missing)} not found: no headless Chromium to run"
        if os.environ.get(REQUIRE_BROWSER):
            pytest.fail(f"{why}, and {REQUIRE_BROWSER} is set")
        pytest.skip(why)
    return Path(request.getfixturevalue("npm_folder"))
