"""A session's requests keep their order end to end: two real routers on the JetStream
store, one real nats-server, raw wire clients (as another language would be).

The bdb981d history, replayed in the order its messages reached the routers:
a deregister (seq 2) delayed behind a frozen NATS node arrives after the same
session registered again (seq 3, answered 200). Before the fix it took the
instance OFFLINE and another session took it over with 201 while the first
still believed it owned it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient

from tests.support.procs import NatsServer, RouterProcess, router_process
from tests.support.wire import raw_request

pytestmark = pytest.mark.e2e

OWNER, TAKER = "session-owner-1", "session-taker-2"


@pytest.fixture
def routers(nats_server: NatsServer, tmp_path: Path) -> Iterator[list[RouterProcess]]:
    """Two routers sharing one JetStream bucket: either may answer any request."""
    first = router_process(tmp_path, nats_url=nats_server.url, name="r1", AEGIS_STORE="jetstream")
    second = router_process(tmp_path, nats_url=nats_server.url, name="r2", AEGIS_STORE="jetstream")
    with first, second:
        yield [first, second]


def body(seq: int, session: str = OWNER) -> dict[str, Any]:
    return {"service_name": "orders", "instance_id": "o-1", "session_id": session, "seq": seq}


async def test_a_delayed_deregister_does_not_undo_the_later_registration(
    routers: list[RouterProcess], raw_nats: NatsClient
) -> None:
    created = await raw_request(raw_nats, body(1))
    renewed = await raw_request(raw_nats, body(3))
    late = await raw_request(raw_nats, body(2), "ipc.service.deregister")
    taker = await raw_request(raw_nats, body(1, session=TAKER))
    beat = await raw_request(raw_nats, body(4), "ipc.service.heartbeat")
    listed = (await routers[1].get("/api/v1/admin/services/orders")).json()

    assert (created["status"], renewed["status"]) == (201, 200)
    assert late["status"] == 409
    assert isinstance(late["error"], dict)
    assert late["error"]["code"] == "STALE_REQUEST"
    assert taker["status"] == 409, "the instance still belongs to the first session"
    assert beat["status"] == 200
    assert [i["status"] for i in listed["instances"]] == ["ONLINE"]


async def test_a_delayed_registration_does_not_revive_a_later_deregistration(
    routers: list[RouterProcess], raw_nats: NatsClient
) -> None:
    await raw_request(raw_nats, body(1))
    gone = await raw_request(raw_nats, body(3), "ipc.service.deregister")
    late = await raw_request(raw_nats, body(2))
    listed = (await routers[0].get("/api/v1/admin/services/orders")).json()

    assert gone["status"] == 200
    assert late["status"] == 409
    assert isinstance(late["error"], dict)
    assert late["error"]["code"] == "STALE_REQUEST"
    assert [i["status"] for i in listed["instances"]] == ["OFFLINE"]
