"""aegis.wire.messages: the per-service subjects (wire contract v1.2) and reading them back."""

from __future__ import annotations

import pytest
from aegis.wire.messages import (
    DEREGISTER,
    DISCOVER,
    HEARTBEAT,
    REGISTER,
    SHARED_SUBJECTS,
    service_heartbeat_subject,
    service_subject,
    subject_service,
)


def test_each_verb_has_a_subject_per_service_and_a_pattern_for_the_router() -> None:
    assert service_subject("billing", REGISTER) == "ipc.svc.billing.register"
    assert service_subject("billing", HEARTBEAT) == "ipc.svc.billing.heartbeat"
    assert service_subject("billing", DEREGISTER) == "ipc.svc.billing.deregister"
    assert service_subject("billing", DISCOVER) == "ipc.svc.billing.discover"
    assert service_subject(None, HEARTBEAT) == "ipc.svc.*.heartbeat"
    assert service_heartbeat_subject("billing", "r-1") == "ipc.svc.billing.heartbeat.r-1"
    assert service_heartbeat_subject(None, "r-1") == "ipc.svc.*.heartbeat.r-1"


def test_the_shared_v1_subjects_are_unchanged() -> None:
    assert SHARED_SUBJECTS == {
        "register": "ipc.service.register",
        "heartbeat": "ipc.service.heartbeat",
        "deregister": "ipc.service.deregister",
        "discover": "ipc.service.discover",
    }


@pytest.mark.parametrize(
    ("subject", "service"),
    [
        ("ipc.svc.billing.register", "billing"),
        ("ipc.svc.Bill-ing_2.heartbeat", "Bill-ing_2"),
        ("ipc.svc.billing.heartbeat.r-1", "billing"),
        ("ipc.svc.x.discover", "x"),
        # Not per-service subjects: nothing to compare a body with.
        ("ipc.service.register", None),
        ("ipc.svc.register", None),
        ("ipc.svc..register", None),
        ("ipc.svcx.billing.register", None),
        ("ipc.router.r-1.heartbeat", None),
        ("", None),
    ],
)
def test_subject_service_reads_the_service_token(subject: str, service: str | None) -> None:
    assert subject_service(subject) == service


def test_every_subject_made_reads_back_as_its_service() -> None:
    for verb in SHARED_SUBJECTS:
        assert subject_service(service_subject("orders-eu", verb)) == "orders-eu"
    assert subject_service(service_heartbeat_subject("orders-eu", "abc123")) == "orders-eu"
