"""A minimal service process for end-to-end tests: registers, prints READY, runs forever.

Usage: python -m tests.e2e.service_main NATS_URL SERVICE INSTANCE
"""

from __future__ import annotations

import asyncio
import sys

from aegis.sdk import ServiceClient


async def main(nats_url: str, service: str, instance: str) -> None:
    async with ServiceClient(nats_url) as client:
        await client.register(service, instance, {"pid": "self"})
        print("READY", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
