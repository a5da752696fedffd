"""The per-service subjects (``ipc.svc.<service>.<verb>``): answered as the shared ones,
but a body naming another service than the subject is refused (400), with both names,
and changes nothing."""

from __future__ import annotations

from typing import Any

import msgpack
from aegis.router.bus.endpoints import Endpoint, endpoints
from aegis.wire.messages import (
    DEREGISTER,
    DISCOVER,
    HEARTBEAT,
    REGISTER,
    SHARED_SUBJECTS,
    Reply,
    router_forward_subject,
    router_heartbeat_subject,
    service_heartbeat_subject,
    service_subject,
)
from structlog.testing import capture_logs

from tests.unit.router.bus.test_endpoints_answer_now import held_by, router
from tests.unit.router.fakes import SESSION

PATTERN = {verb: service_subject(None, verb) for verb in SHARED_SUBJECTS}


def body(service: str = "billing", instance: str = "b-1", **more: Any) -> bytes:
    return msgpack.packb(
        {"service_name": service, "instance_id": instance, "session_id": SESSION, **more}
    )


def served(**options: Any) -> dict[str, Endpoint[Any]]:
    registry, _ = router()
    return endpoints(registry, max_request_bytes=65536, max_metadata_bytes=1024, **options)


async def ask(endpoint: Endpoint[Any], data: bytes, subject: str) -> dict[str, Any]:
    """The reply ``endpoint`` gives ``data`` sent on ``subject`` (the full path)."""
    reply: dict[str, Any] = msgpack.unpackb(await endpoint(data, subject=subject))
    return reply


def test_the_router_serves_each_verb_per_service_with_one_wildcard_subscription() -> None:
    handlers = served()

    assert set(handlers) == {
        *SHARED_SUBJECTS.values(),
        *PATTERN.values(),
        router_heartbeat_subject("me"),
        service_heartbeat_subject(None, "me"),
        router_forward_subject("me"),
    }
    assert all(handlers[subject].scoped for subject in PATTERN.values())
    assert handlers[service_heartbeat_subject(None, "me")] is handlers[PATTERN[HEARTBEAT]]
    assert not any(handlers[subject].scoped for subject in SHARED_SUBJECTS.values())
    assert not handlers[router_forward_subject("me")].scoped


def test_with_the_shared_subjects_off_only_the_per_service_ones_are_served() -> None:
    handlers = served(shared_subjects=False)

    assert set(handlers) == {
        *PATTERN.values(),
        service_heartbeat_subject(None, "me"),
        router_forward_subject("me"),  # routers' own, between them
    }


async def test_register_heartbeat_deregister_and_discover_on_the_services_own_subjects() -> None:
    handlers = served()
    own = {verb: service_subject("billing", verb) for verb in SHARED_SUBJECTS}

    registered = await ask(handlers[PATTERN[REGISTER]], body(), own[REGISTER])
    beat = await ask(handlers[PATTERN[HEARTBEAT]], body(), own[HEARTBEAT])
    found = await ask(
        handlers[PATTERN[DISCOVER]], msgpack.packb({"service_name": "billing"}), own[DISCOVER]
    )
    left = await ask(handlers[PATTERN[DEREGISTER]], body(), own[DEREGISTER])

    assert registered["status"] == 201
    # Replies to per-service requests name the per-service heartbeat subject, which a
    # credential limited to ipc.svc.billing.> may publish on.
    assert registered["heartbeat_subject"] == "ipc.svc.billing.heartbeat.me"
    assert (beat["status"], beat["heartbeat_subject"]) == (200, "ipc.svc.billing.heartbeat.me")
    assert [i["instance_id"] for i in found["instances"]] == ["b-1"]
    assert (left["status"], left["instance"]["status"]) == (200, "OFFLINE")


async def test_the_shared_subjects_still_name_the_shared_heartbeat_subject() -> None:
    handlers = served()
    registered = await ask(handlers[SHARED_SUBJECTS[REGISTER]], body(), "ipc.service.register")
    assert registered["heartbeat_subject"] == "ipc.router.me.heartbeat"


async def test_a_body_naming_another_service_is_refused_with_both_names_and_nothing_stored() -> (
    None
):
    registry, _ = router()
    handlers = endpoints(registry, max_request_bytes=65536, max_metadata_bytes=1024)

    with capture_logs() as logs:
        refused = await ask(
            handlers[PATTERN[REGISTER]], body("billing"), "ipc.svc.checkout.register"
        )

    assert (refused["ok"], refused["status"]) == (False, 400)
    assert refused["error"]["code"] == "VALIDATION_ERROR"
    message = refused["error"]["message"]
    assert "'billing'" in message
    assert "'checkout'" in message
    assert "ipc.svc.checkout.register" in message
    [detail] = refused["error"]["details"]
    assert (detail["loc"], detail["type"]) == (["service_name"], "subject_mismatch")
    assert await registry.instances("billing", None) == []
    assert await registry.instances("checkout", None) == []
    [line] = [entry for entry in logs if entry["event"] == "registration"]
    assert line["result"] == "subject_mismatch"
    assert (line["service"], line["subject"]) == ("billing", "ipc.svc.checkout.register")


async def test_a_mismatched_heartbeat_or_deregister_changes_nothing_even_with_the_session() -> None:
    registry, clock = router()
    handlers = endpoints(registry, max_request_bytes=65536, max_metadata_bytes=1024)
    await ask(handlers[PATTERN[REGISTER]], body(), "ipc.svc.billing.register")
    clock.at(1.0)
    beat, leave = handlers[PATTERN[HEARTBEAT]], handlers[PATTERN[DEREGISTER]]

    # Sent on checkout's subjects (a credential limited to checkout) naming billing's
    # instance, with its very session: refused, even on the fast lane.
    later = beat.answer_now(body(), None, "ipc.svc.checkout.heartbeat")
    assert not isinstance(later, bytes)
    assert (await later(body(), subject="ipc.svc.checkout.heartbeat")) == await beat(
        body(), subject="ipc.svc.checkout.heartbeat"
    )
    with capture_logs() as logs:
        direct = await ask(beat, body(), "ipc.svc.checkout.heartbeat.me")
        left = await ask(leave, body(), "ipc.svc.checkout.deregister")

    assert direct["status"] == left["status"] == 400
    assert [e["result"] for e in logs if e["event"] in ("heartbeat", "deregistration")] == [
        "subject_mismatch",
        "subject_mismatch",
    ]
    [still] = await registry.instances("billing", None)
    assert still.status == "ONLINE"  # not deregistered


async def test_a_steady_heartbeat_on_its_own_subject_is_answered_at_once() -> None:
    registry, clock = router()
    handlers = endpoints(registry, max_request_bytes=65536, max_metadata_bytes=1024)
    await ask(handlers[PATTERN[REGISTER]], body(), "ipc.svc.billing.register")
    clock.at(1.0)
    beat = handlers[PATTERN[HEARTBEAT]]

    now = beat.answer_now(body(), None, "ipc.svc.billing.heartbeat.me")

    assert isinstance(now, bytes)
    assert now == await beat(body(), subject="ipc.svc.billing.heartbeat")
    assert msgpack.unpackb(now)["heartbeat_subject"] == "ipc.svc.billing.heartbeat.me"


async def test_a_repeated_registration_on_its_own_subject_is_answered_at_once() -> None:
    handlers = served()
    register = handlers[PATTERN[REGISTER]]
    await ask(register, body(seq=1), "ipc.svc.billing.register")

    again = register.answer_now(body(seq=1), None, "ipc.svc.billing.register")
    elsewhere = register.answer_now(body(seq=1), None, "ipc.svc.checkout.register")

    assert isinstance(again, bytes)
    assert msgpack.unpackb(again)["heartbeat_subject"] == "ipc.svc.billing.heartbeat.me"
    assert not isinstance(elsewhere, bytes)


async def test_a_body_that_is_not_a_name_is_the_usual_validation_error() -> None:
    handlers = served()
    bad = msgpack.packb({"service_name": 7, "instance_id": "b-1", "session_id": SESSION})
    missing = msgpack.packb({"instance_id": "b-1"})

    for data in (bad, missing):
        reply = await ask(handlers[PATTERN[REGISTER]], data, "ipc.svc.billing.register")
        assert (reply["status"], reply["error"]["code"]) == (400, "VALIDATION_ERROR")
        assert reply["error"]["message"] == "request failed validation"


async def test_a_forwarded_heartbeat_names_the_holders_per_service_subject() -> None:
    registry, clock = router("other")
    theirs = held_by(registry, "other")
    forwarded: list[str] = []

    async def forward(router_id: str, request: Any) -> Reply:
        forwarded.append(router_id)
        return Reply(ok=True, status=200, heartbeat_subject=router_heartbeat_subject(router_id))

    handlers = endpoints(
        registry, max_request_bytes=65536, max_metadata_bytes=1024, forward=forward
    )
    await ask(handlers[PATTERN[REGISTER]], body(instance=theirs), "ipc.svc.billing.register")
    clock.at(1.0)

    beat = await ask(
        handlers[PATTERN[HEARTBEAT]], body(instance=theirs), "ipc.svc.billing.heartbeat"
    )
    shared = await ask(handlers[SHARED_SUBJECTS[HEARTBEAT]], body(instance=theirs), "")

    assert forwarded == ["other", "other"]
    assert beat["heartbeat_subject"] == "ipc.svc.billing.heartbeat.other"
    assert shared["heartbeat_subject"] == "ipc.router.other.heartbeat"
