"""The SDK ships alone to services: it may need only nats-py, msgpack and pydantic."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = {"structlog", "sanic", "sanic_ext", "textual", "httpx", "orjson", "prometheus_client"}


def test_importing_the_sdk_pulls_in_nothing_else() -> None:
    code = (
        "import sys, json, aegis.sdk, aegis.sdk.client, aegis.sdk.transport, "
        "aegis.sdk.heartbeats, aegis.sdk.watch;"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} "
        "| {m for m in sys.modules if m.startswith('aegis.')})))"
    )
    loaded = set(json.loads(subprocess.check_output([sys.executable, "-c", code], text=True)))

    assert not loaded & FORBIDDEN
    assert not {m for m in loaded if m.startswith(("aegis.router", "aegis.console"))}
    assert {"nats", "msgpack", "pydantic"} <= loaded
