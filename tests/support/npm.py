"""npm packages installed on demand into a folder, for node scripts run beside Python:
nats.js clients in the end-to-end tests, autocannon in the benchmarks."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path


def missing_node_tools() -> list[str]:
    """Which of ``node`` and ``npm`` are not on PATH."""
    return [tool for tool in ("node", "npm") if shutil.which(tool) is None]


def npm_install(folder: Path, packages: Sequence[str]) -> None:
    """``npm install`` ``packages`` into ``folder/node_modules``; node scripts in ``folder``
    then find them. Raises RuntimeError with npm's errors if the install fails."""
    command = ["npm", "install", "--prefix", str(folder), "--no-audit", "--no-fund"]
    installed = subprocess.run(
        [*command, "--loglevel=error", *packages],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if installed.returncode != 0:
        raise RuntimeError(f"npm install failed:\n{installed.stderr}")
