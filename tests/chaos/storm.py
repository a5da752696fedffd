"""A registration storm during the chaos run, from a process of its own.

The routers run with a small registration lane (``LANE``), so a burst of a
thousand registrations in half a second is far past what they take: they must
shed it (503 ``OVERLOADED``) while the recorded clients keep heartbeating, and
the checker's ``no_false_death`` then judges that no instance heartbeating on
time was declared dead under the storm. The storm's own requests are not in
the history (they are load, not claims); their instances, never heartbeated,
expire and are removed before the quiet period ends.

Its own process, so that sending it cannot stall the harness's event loop
(a stalled harness times out its own requests and looks like the registry's
fault).

    python -m tests.chaos.storm URL[,URL...] COUNT SECONDS
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections import Counter

import msgpack
import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

SERVICE = "storm"
# The routers' registration lane during chaos runs: two workers, 0.2 s of waiting.
LANE = {"AEGIS_REGISTER_WORKERS": "2", "AEGIS_REGISTER_MAX_WAIT": "0.2"}
COUNT = 1000
SECONDS = 0.5
REPLY_WAIT = 5.0
FLUSH_WAIT = 2  # s; nats-py types it int


async def storm(servers: list[str], count: int, seconds: float, tag: str = "") -> Counter[str]:
    """Send ``count`` registrations over ``seconds``, open loop; count the replies by
    status (``none``: no reply within ``REPLY_WAIT`` of the last send; ``no_responders``:
    NATS's own empty answer)."""
    # The nemesis may kill the node this connection is on mid-storm: reconnect at
    # once to another and go on (what was sent meanwhile is buffered or lost, and
    # counted as ``none``), rather than die and leave the run with no storm at all.
    nc = await nats.connect(
        servers,
        name="chaos-storm",
        connect_timeout=2,
        reconnect_time_wait=0.2,
        max_reconnect_attempts=-1,
    )
    replies: Counter[str] = Counter()
    all_in = asyncio.Event()

    async def on_reply(msg: Msg) -> None:
        if msg.data:
            replies[str(msgpack.unpackb(msg.data).get("status"))] += 1
        else:  # NATS's own status message: no router took the subject on that node
            replies["no_responders"] += 1
        if replies.total() >= count:
            all_in.set()

    inbox = nc.new_inbox()
    await nc.subscribe(inbox, cb=on_reply)
    loop = asyncio.get_running_loop()
    start, step = loop.time(), seconds / max(1, count)
    for i in range(count):
        body = {"service_name": SERVICE, "instance_id": f"s{tag}-{i}", "session_id": f"s{tag}-{i}"}
        with contextlib.suppress(nats.errors.Error):  # closed or over the reconnect buffer
            await nc.publish("ipc.service.register", msgpack.packb(body), reply=inbox)
        if i % 50 == 49:
            await _flush(nc)
            await asyncio.sleep(max(0.0, start + (i + 1) * step - loop.time()))
    await _flush(nc)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_in.wait(), REPLY_WAIT)
    await nc.close()
    replies["none"] = count - sum(replies.values())
    return replies


async def _flush(nc: Client) -> None:
    """Flush, but a flush lost to a reconnect only delays the storm."""
    with contextlib.suppress(nats.errors.Error, TimeoutError):
        await nc.flush(timeout=FLUSH_WAIT)


def main(argv: list[str]) -> int:
    """Run one storm and print its reply counts as one JSON line."""
    servers, count, seconds = argv[0].split(","), int(argv[1]), float(argv[2])
    tag = argv[3] if len(argv) > 3 else ""
    print(json.dumps(asyncio.run(storm(servers, count, seconds, tag))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
