"""``aegis-router``: every install has the script; only the ``router`` extra can run it."""

from __future__ import annotations

import sys
from importlib.util import find_spec

NEEDS = ("sanic", "sanic_ext", "structlog", "orjson", "prometheus_client")


def main() -> int:
    """Run the router, or say in one line how to install it when its libraries are missing."""
    missing = [name for name in NEEDS if find_spec(name) is None]
    if missing:
        print(
            f"aegis-router needs the router extra ({', '.join(missing)} missing): "
            "pip install 'aegis-ipc[router]' (from a clone: pip install '.[router]')",
            file=sys.stderr,
        )
        return 2
    from aegis.router.cli import main as run_router

    return run_router()
