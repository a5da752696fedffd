"""A flood beyond capacity degrades into errors and timeouts, never a crash or runaway memory.

Also: the request id a client sends shows up in the router's log lines.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgpack
import nats
import pytest
from nats.aio.msg import Msg

from tests.support import eventually
from tests.support.procs import NatsServer, RouterProcess, router_process
from tests.support.wire import raw_request

pytestmark = [pytest.mark.e2e, pytest.mark.one_python]


@pytest.fixture
def small_router(nats_server: NatsServer, tmp_path: Path) -> Iterator[RouterProcess]:
    with router_process(
        tmp_path,
        nats_url=nats_server.url,
        # JetStream: a registration waits for its store write, so the 4 slots
        # fill and the 100 pending requests behind them are the bound under test
        # (with the memory store nothing waits, and the router simply keeps up).
        AEGIS_STORE="jetstream",
        AEGIS_MAX_IN_FLIGHT="4",
        AEGIS_MAX_PENDING="100",
    ) as process:
        yield process


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_flood_is_bounded_and_the_router_keeps_serving(
    small_router: RouterProcess, nats_server: NatsServer
) -> None:
    assert small_router.process is not None
    pid = small_router.process.pid
    before = rss_kib(pid)
    # Under the 16 KiB metadata limit, and valid: each one is a whole registration
    # (validated, stored, announced, logged). A flood of refusals alone is answered
    # as fast as it comes now, and would test no bound.
    big = "x" * 8000
    nc = await nats.connect(nats_server.url, pending_size=64 * 1024 * 1024)
    inbox = nc.new_inbox()
    statuses: Counter[object] = Counter()

    async def count(msg: Msg) -> None:
        statuses[msgpack.unpackb(msg.data).get("status")] += 1

    await nc.subscribe(inbox, cb=count)
    for i in range(20_000):  # fire and forget: far more than 4 in flight + 100 pending
        body = {
            "service_name": "flood",
            "instance_id": f"f-{i}",
            "session_id": "flood",
            "metadata": {"pad": big},
        }
        await nc.publish("ipc.service.register", msgpack.packb(body), reply=inbox)
    await nc.flush()
    # The flood is over when a registration sent after it is answered: NATS hands the
    # router this connection's messages in order, so it comes behind the whole flood
    # (and may be dropped with its excess; then the next try).
    answers: list[dict[str, object]] = []

    async def answered_again() -> bool:
        body = {"service_name": "after", "instance_id": f"a-{len(answers)}"}
        try:
            answers.append(await raw_request(nc, body))
        except nats.errors.TimeoutError:
            answers.append({})
            return False
        return answers[-1]["status"] == 201  # a 503: the flood is still being served

    await eventually(answered_again, "the router answering again after the flood")
    after = rss_kib(pid)
    await nc.close()

    assert small_router.process.poll() is None, "the router died"
    assert answers[-1]["status"] == 201, "the router answers again once the flood is over"
    assert 0 < statuses[201] < 20_000, "some were served"
    # The excess is refused at once (503 OVERLOADED) or dropped by NATS, never queued
    # until its caller gives up.
    assert set(statuses) <= {201, 503}, statuses
    assert statuses[503] > 0, "refused with 503 while registrations backed up"
    assert after - before < 200 * 1024, f"RSS grew by {after - before} KiB"
    health = await small_router.get("/healthz")
    assert health.status_code == 200


async def test_request_id_from_the_client_is_in_the_router_log(
    small_router: RouterProcess, nats_server: NatsServer
) -> None:
    nc = await nats.connect(nats_server.url)
    body = msgpack.packb({"service_name": "traced", "instance_id": "t-1"})
    for request_id in ("req-4242", "req-4343"):  # a new instance, then a 409 for it
        await nc.request(
            "ipc.service.register", body, timeout=5, headers={"Aegis-Request-Id": request_id}
        )
    await nc.close()

    def events_of(request_id: str) -> list[str]:
        lines = small_router.logs().splitlines()
        return [json.loads(line)["event"] for line in lines if request_id in line]

    # At INFO a new instance is one event, its state change; a refusal is the request's.
    assert events_of("req-4242") == ["instance_registered"]
    assert events_of("req-4343") == ["registration"]
