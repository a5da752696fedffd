"""An asyncio consumer: finds ``payments`` instances with resolvers, no round trip a pick.

A resolver keeps a local view of one service's healthy instances, current
within milliseconds; ``where`` keeps those whose metadata matches. Start
``examples/provider.py`` first, then::

    python examples/consumer.py [nats://127.0.0.1:4222]
"""

from __future__ import annotations

import asyncio
import sys

from aegis.sdk import NoHealthyInstanceError, ServiceClient


async def main(nats_url: str) -> None:
    async with ServiceClient(nats_url) as client:
        europe = await client.resolver("payments", where={"zone": "eu-1"})
        print("eu-1:", [i.instance_id for i in europe.instances()])
        anywhere = await client.resolver("payments")
        print("round robin:", [anywhere.pick().instance_id for _ in range(4)])
        port = europe.pick().metadata["port"]
        print(f"calling payments in eu-1 on port {port}")
        mars = await client.resolver("payments", where={"zone": "mars"})
        try:
            mars.pick()
        except NoHealthyInstanceError as exc:
            print(f"mars: {exc.reason}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "nats://127.0.0.1:4222"))
