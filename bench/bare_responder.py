"""Baseline: the least a Python NATS responder can do for one registry request.

Decodes the same MessagePack body the router gets and replies; no validation,
no store, no logging. Usage: python bench/bare_responder.py NATS_URL
"""

from __future__ import annotations

import asyncio
import sys

import msgpack
import nats
from nats.aio.msg import Msg
from responder_life import ready_until_sigterm

REPLY = msgpack.packb({"ok": True, "status": 201})


async def main(url: str) -> None:
    nc = await nats.connect(url)

    async def answer(msg: Msg) -> None:
        msgpack.unpackb(msg.data)
        await msg.respond(REPLY)

    for subject in ("ipc.service.register", "ipc.service.heartbeat"):
        await nc.subscribe(subject, queue="aegis-router", cb=answer)
    await ready_until_sigterm(nc)
    await nc.drain()


if __name__ == "__main__":
    if sys.argv[2:] == ["uvloop"]:
        import uvloop

        uvloop.run(main(sys.argv[1]))
    else:
        asyncio.run(main(sys.argv[1]))
