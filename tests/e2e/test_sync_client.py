"""The synchronous client end to end: a real aegis-router on a real nats-server, called
from plain threads with no event loop of their own, as a Flask or Django service would."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aegis.sdk import ClientConfig, DuplicateInstanceError, InstanceStatus, NoHealthyInstanceError
from aegis.sdk.sync import ClientClosedError, ServiceClient

from tests.support.blocking import wait_for
from tests.support.procs import NatsServer, RouterProcess, router_process

pytestmark = pytest.mark.e2e

HEARTBEAT, UNHEALTHY = 0.2, 1.0
FAST = ClientConfig(timeout=1.0, retries=5, backoff_base=0.05, backoff_max=0.5)


@pytest.fixture
def router(nats_server: NatsServer, tmp_path: Path) -> Iterator[RouterProcess]:
    with router_process(
        tmp_path,
        nats_url=nats_server.url,
        AEGIS_STORE="memory",  # one router: these timings are too short for shared leases
        AEGIS_HEARTBEAT_INTERVAL=str(HEARTBEAT),
        AEGIS_UNHEALTHY_AFTER=str(UNHEALTHY),
    ) as process:
        yield process


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    assert set(threading.enumerate()) - before == set()


def statuses(router: RouterProcess, service: str) -> dict[str, str]:
    """The service's instance statuses as the REST API shows them."""
    response = httpx.get(f"{router.http_url}/api/v1/admin/services/{service}", timeout=5)
    if response.status_code == 404:
        return {}
    return {i["instance_id"]: i["status"] for i in response.json()["instances"]}


def in_a_plain_thread(work: object) -> None:
    """Run ``work()`` in a new thread with no event loop, re-raising what it raised."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            work()  # type: ignore[operator]
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    if failures:
        raise failures[0]


def test_heartbeats_keep_an_instance_online_until_the_block_ends(
    router: RouterProcess, nats_server: NatsServer
) -> None:
    seen: list[dict[str, str]] = []

    def serve() -> None:
        with ServiceClient(nats_server.url, FAST) as client:
            instance = client.register("billing", "billing-1", {"zone": "eu-1"})
            assert instance.status is InstanceStatus.ONLINE
            assert [i.instance_id for i in client.discover("billing")] == ["billing-1"]
            # Twice the unhealthy deadline with no call: only the background heartbeats.
            until = time.monotonic() + 2 * UNHEALTHY
            while time.monotonic() < until:
                seen.append(statuses(router, "billing"))
                time.sleep(HEARTBEAT / 2)

    in_a_plain_thread(serve)

    assert seen
    assert all(s == {"billing-1": "ONLINE"} for s in seen), seen
    assert statuses(router, "billing") == {"billing-1": "OFFLINE"}  # deregistered on exit


def test_deregistered_when_the_block_raises(router: RouterProcess, nats_server: NatsServer) -> None:
    client = ServiceClient(nats_server.url)

    def handle_a_request() -> None:
        with client:
            client.register("orders", "orders-1")
            raise RuntimeError("request failed")

    with pytest.raises(RuntimeError, match="request failed"):
        handle_a_request()

    assert statuses(router, "orders") == {"orders-1": "OFFLINE"}
    with pytest.raises(ClientClosedError):
        client.discover("orders")


def test_a_live_instance_is_409_for_another_client(
    router: RouterProcess, nats_server: NatsServer
) -> None:
    with ServiceClient(nats_server.url) as first, ServiceClient(nats_server.url) as second:
        first.register("payments", "payments-1")
        with pytest.raises(DuplicateInstanceError) as info:
            second.register("payments", "payments-1")
        assert second.instances == {}

    assert info.value.status_code == 409
    assert info.value.existing is not None
    assert info.value.existing.instance_id == "payments-1"
    assert info.value.retry_after is not None
    assert info.value.retry_after > 0


def test_a_resolver_follows_registrations_and_picks_without_asking(
    router: RouterProcess, nats_server: NatsServer
) -> None:
    changes: list[tuple[str, list[str]]] = []
    with ServiceClient(nats_server.url) as provider, ServiceClient(nats_server.url) as caller:
        provider.register("payments", "payments-1", {"zone": "eu-1"})
        provider.register("payments", "payments-2", {"zone": "us-1"})
        payments = caller.resolver("payments", where={"zone": "eu-1"})
        payments.on_change(
            lambda view: changes.append(
                (threading.current_thread().name, [i.instance_id for i in view])
            )
        )
        first = payments.pick().instance_id

        provider.register("payments", "payments-3", {"zone": "eu-1"})
        wait_for(lambda: len(payments.instances()) == 2, "payments-3 in the view")
        picked = {payments.pick().instance_id for _ in range(4)}

        provider.deregister("payments", "payments-1")
        provider.deregister("payments", "payments-3")
        wait_for(lambda: not payments.instances(), "an empty view")
        with pytest.raises(NoHealthyInstanceError) as info:
            payments.pick()

    assert first == "payments-1"
    assert picked == {"payments-1", "payments-3"}
    assert info.value.reason == "filtered_out"  # payments-2 is ONLINE, in another zone
    assert [view for _, view in changes] == [["payments-1", "payments-3"], ["payments-3"], []]
    [thread] = {thread for thread, _ in changes}
    assert thread.startswith("aegis-sdk-")  # the caller's background thread
