"""npm packages installed on demand into a folder, for node scripts run beside Python:
nats.js clients in the end-to-end tests, autocannon in the benchmarks.

Each set is a ``package.json`` with its ``package-lock.json`` in the repository
(tests/e2e/npm/, bench/npm/), installed with ``npm ci``: the same versions
every time, transitive ones included.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def missing_node_tools() -> list[str]:
    """Which of ``node`` and ``npm`` are not on PATH."""
    return [tool for tool in ("node", "npm") if shutil.which(tool) is None]


def npm_ci(folder: Path, manifest: Path) -> None:
    """Install the packages locked in ``manifest`` (a folder holding ``package.json``
    and ``package-lock.json``) into ``folder/node_modules``; node scripts in
    ``folder`` then find them. Raises RuntimeError with npm's errors if it fails."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy(manifest / name, folder / name)
    command = ["npm", "ci", "--prefix", str(folder), "--no-audit", "--no-fund"]
    installed = subprocess.run(
        [*command, "--loglevel=error"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if installed.returncode != 0:
        raise RuntimeError(f"npm ci failed:\n{installed.stderr}")
