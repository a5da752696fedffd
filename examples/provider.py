"""An asyncio provider: two instances of ``payments`` in two zones, until stopped.

Each instance carries its zone and port in its metadata, so callers can pick
by zone. The client heartbeats them in the background; SIGTERM or Ctrl-C ends
``serve_forever()``, which deregisters both. With a router running (``aegis-router``)::

    python examples/provider.py [nats://127.0.0.1:4222]
"""

from __future__ import annotations

import asyncio
import sys

from aegis.sdk import ServiceClient


async def main(nats_url: str) -> None:
    async with ServiceClient(nats_url) as client:
        for n, zone in [(1, "eu-1"), (2, "us-1")]:
            await client.register("payments", f"payments-{n}", {"zone": zone, "port": 8000 + n})
        print("serving payments-1 (eu-1) and payments-2 (us-1)", flush=True)
        await client.serve_forever()  # heartbeats until SIGTERM or Ctrl-C, then deregisters


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "nats://127.0.0.1:4222"))
