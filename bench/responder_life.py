"""The life of a baseline responder process that ``bench/run.py`` starts and stops."""

from __future__ import annotations

import asyncio
import signal

from nats.aio.client import Client as NatsClient


async def ready_until_sigterm(nc: NatsClient) -> None:
    """Once ``nc``'s subscriptions are live, print READY (``run.responder`` waits for
    it), then return when SIGTERM comes; the caller drains."""
    await nc.flush()
    print("READY", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
