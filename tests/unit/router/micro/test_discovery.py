"""aegis.router.micro.discovery and Registry.micro_seen: NATS micro services as instances.

How an ``$SRV.INFO`` answer maps to an instance, which router polls, and how
such an instance lives in the registry (on a fake clock): listed, kept alive
by answers, aged like any instance, and closed to the registry subjects.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from aegis.router.bus.endpoints import endpoints
from aegis.router.domain import InstanceKey, Outcome, OwnerCheck
from aegis.router.leases.membership import Membership, owner_table
from aegis.router.micro.discovery import (
    UnlistableError,
    instance_from_info,
    is_poller,
    poll_period,
)
from aegis.router.settings import load_settings
from aegis.wire.messages import DEREGISTER_SUBJECT, HEARTBEAT_SUBJECT, InstanceStatus
from structlog.testing import capture_logs

from tests.unit.router.fakes import LATE, SESSION, make_registry, register_request

INFO: dict[str, Any] = {
    "type": "io.nats.micro.v1.info_response",
    "name": "inventory",
    "id": "Ek5Qm3yL0vXb2",
    "version": "2.0.0",
    "description": "Stock levels",
    "metadata": {"team": "stock"},
    "endpoints": [
        {
            "name": "count",
            "subject": "inventory.count",
            "queue_group": "q",
            "metadata": {"x": "y"},
        },
    ],
}
KEY = InstanceKey("inventory", "Ek5Qm3yL0vXb2")
METADATA = instance_from_info(INFO, 16 * 1024).metadata


def test_an_info_answer_becomes_an_instance_marked_micro() -> None:
    found = instance_from_info(INFO, 16 * 1024)
    assert found.key == KEY
    assert found.metadata == {
        "source": "micro",
        "version": "2.0.0",
        "description": "Stock levels",
        "metadata": {"team": "stock"},
        "endpoints": [{"name": "count", "subject": "inventory.count", "queue_group": "q"}],
    }


def test_missing_or_odd_fields_become_empty_values() -> None:
    info = {"name": "bare", "id": "1", "metadata": None, "endpoints": None, "version": 3}
    metadata = instance_from_info(info, 16 * 1024).metadata
    assert metadata == {
        "source": "micro",
        "version": None,
        "description": None,
        "metadata": {},
        "endpoints": [],
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", "has.dots"), ("name", None), ("name", "x" * 65), ("id", "spa ce"), ("id", None)],
)
def test_names_the_registry_refuses_are_unlistable(field: str, value: object) -> None:
    with pytest.raises(UnlistableError):
        instance_from_info({**INFO, field: value}, 16 * 1024)


def test_endpoints_are_dropped_from_the_end_until_the_metadata_fits() -> None:
    many = [{"name": f"e{i}", "subject": f"inventory.e{i}", "queue_group": "q"} for i in range(50)]
    limit = 1024
    metadata = instance_from_info({**INFO, "endpoints": many}, limit).metadata
    kept = metadata["endpoints"]
    assert 0 < len(kept) < 50
    assert kept == many[: len(kept)]
    assert len(msgpack.packb(metadata)) <= limit


def test_info_too_large_even_without_endpoints_is_unlistable() -> None:
    with pytest.raises(UnlistableError, match="bytes"):
        instance_from_info({**INFO, "description": "x" * 2000}, 1024)


def test_only_the_holder_of_partition_zero_polls() -> None:
    routers = ["router-a", "router-b", "router-c"]
    holder = owner_table(routers)[0]
    polling = []
    for me in routers:
        membership = Membership(me, ttl=10.0, now=0.0)
        for other in routers:
            membership.seen(other, 0.0)
        polling.append(is_poller(membership))
    assert polling == [me == holder for me in routers]
    assert is_poller(Membership("alone", ttl=10.0, now=0.0))


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        ([], {}, True),
        ([], {"AEGIS_MICRO_DISCOVERY": "off"}, False),
        ([], {"AEGIS_MICRO_DISCOVERY": "0"}, False),
        ([], {"AEGIS_MICRO_DISCOVERY": "FALSE"}, False),
        ([], {"AEGIS_MICRO_DISCOVERY": "on"}, True),
        (["--no-micro-discovery"], {"AEGIS_MICRO_DISCOVERY": "1"}, False),
        (["--micro-discovery"], {"AEGIS_MICRO_DISCOVERY": "off"}, True),
    ],
)
def test_discovery_is_on_by_default_and_can_be_turned_off(
    argv: list[str], env: dict[str, str], expected: bool
) -> None:
    assert load_settings(argv, env).micro_discovery is expected


def test_a_switch_that_is_neither_on_nor_off_refuses_to_start(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        load_settings([], {"AEGIS_MICRO_DISCOVERY": "maybe"})
    assert "AEGIS_MICRO_DISCOVERY='maybe': must be on or off" in capsys.readouterr().err


def test_the_poll_period_is_seconds() -> None:
    assert load_settings([], {}).micro_poll == 5.0
    assert load_settings([], {"AEGIS_MICRO_POLL": "0.5"}).micro_poll == 0.5


# -- in the registry ------------------------------------------------------------------


async def test_a_micro_service_is_listed_without_a_session_and_kept_online() -> None:
    registry, clock, sink, _ = make_registry()
    first = await registry.micro_seen(KEY, METADATA)
    clock.advance(8)
    second = await registry.micro_seen(KEY, {**METADATA, "version": "2.0.1"})
    clock.advance(8)  # 16 s after the first answer, 8 after the last: still ONLINE
    await registry.liveness.sweep()

    assert (first.outcome, second.outcome) == (Outcome.CREATED, Outcome.RENEWED)
    [record] = await registry.instances("inventory")
    assert record.status is InstanceStatus.ONLINE
    assert record.session_id is None
    assert record.metadata["version"] == "2.0.1"
    assert [e.event.value for e in sink.events] == ["registered"]


async def test_a_silent_micro_service_ages_and_is_listed_again_when_it_answers() -> None:
    registry, clock, sink, _ = make_registry()
    await registry.micro_seen(KEY, METADATA)
    clock.advance(10 + LATE)
    await registry.liveness.sweep()
    clock.advance(10)
    await registry.liveness.sweep()
    again = await registry.micro_seen(KEY, METADATA)

    assert again.outcome is Outcome.CREATED
    assert sink.summary() == [
        ("registered", "ONLINE", None),
        ("status_changed", "UNHEALTHY", "ONLINE"),
        ("status_changed", "OFFLINE", "UNHEALTHY"),
        ("registered", "ONLINE", "OFFLINE"),
    ]


async def test_registry_clients_cannot_take_or_speak_for_a_micro_instance() -> None:
    registry, _, _, _ = make_registry()
    await registry.micro_seen(KEY, METADATA)
    taken = await registry.register(
        register_request(instance=KEY.instance_id, service=KEY.service_name)
    )
    heartbeat = await registry.heartbeat(KEY, SESSION)
    deregistered = await registry.deregister(KEY, SESSION)

    assert taken.outcome is Outcome.DUPLICATE
    assert heartbeat.check is deregistered.check is OwnerCheck.SESSION_MISMATCH
    [record] = await registry.instances("inventory")
    assert record.status is InstanceStatus.ONLINE


async def test_an_instance_a_registry_client_owns_is_left_alone() -> None:
    registry, _, _, _ = make_registry()
    await registry.register(register_request(instance=KEY.instance_id, service=KEY.service_name))
    decision = await registry.micro_seen(KEY, METADATA)

    assert decision.outcome is Outcome.DUPLICATE
    [record] = await registry.instances("inventory")
    assert (record.session_id, record.metadata) == (SESSION, {"v": 1})


@pytest.mark.parametrize("subject", [HEARTBEAT_SUBJECT, DEREGISTER_SUBJECT])
async def test_the_403_says_it_is_a_micro_service(subject: str) -> None:
    registry, _, _, _ = make_registry()
    await registry.micro_seen(KEY, METADATA)
    await registry.register(register_request(instance="b-1", session="someone-else"))
    handlers = endpoints(registry, max_request_bytes=64 * 1024, max_metadata_bytes=1024)

    async def ask(service: str, instance: str) -> dict[str, Any]:
        body = {"service_name": service, "instance_id": instance, "session_id": SESSION}
        reply: dict[str, Any] = msgpack.unpackb(await handlers[subject](msgpack.packb(body)))
        return reply

    micro = await ask(KEY.service_name, KEY.instance_id)
    other = await ask("billing", "b-1")

    assert (micro["status"], micro["error"]["code"]) == (403, "SESSION_MISMATCH")
    assert "NATS micro service" in micro["error"]["message"]
    assert "cannot be heartbeated or deregistered" in micro["error"]["message"]
    assert (other["status"], other["error"]["code"]) == (403, "SESSION_MISMATCH")
    assert other["error"]["message"].endswith("belongs to another session")


def test_a_poll_slower_than_unhealthy_after_is_shortened_and_said() -> None:
    # A micro service is heard only when it answers a poll: polled every 5 s with
    # unhealthy_after 4 s, each would be UNHEALTHY a second out of every five.
    with capture_logs() as logs:
        assert poll_period(5.0, 15.0) == 5.0
        assert poll_period(5.0, 4.0) == 2.0
    assert [(e["event"], e["period"]) for e in logs] == [("micro_poll_shortened", 2.0)]
