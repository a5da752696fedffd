"""``aegis-console``: every install has the script; only the ``console`` extra can run it."""

from __future__ import annotations

import sys
from importlib.util import find_spec


def main() -> int:
    """Run the console, or say in one line how to install it when its libraries are missing."""
    if missing := [name for name in ("textual", "httpx") if find_spec(name) is None]:
        print(
            f"aegis-console needs the console extra ({', '.join(missing)} missing): "
            "pip install 'aegis-ipc[console]' (from a clone: pip install '.[console]')",
            file=sys.stderr,
        )
        return 2
    from .cli import main as run_console

    return run_console()
