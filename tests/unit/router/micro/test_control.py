"""aegis.router.micro.control: the ADR-32 JSON a router gives ``$SRV.PING`` / INFO / STATS.

Each answer is also read back with nats-py's own ``nats.micro`` parsers, which
other tools' shapes were written against.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from aegis.router.bootstrap import bootstrap
from aegis.router.bus.endpoint_stats import EndpointStats
from aegis.router.bus.endpoints import endpoints
from aegis.router.bus.responder import QUEUE_GROUP, NatsResponder
from aegis.router.micro.control import MicroControl, control_subjects, endpoint_name
from aegis.router.settings import Settings
from nats.micro.service import ServiceInfo, ServicePing, ServiceStats

NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # ADR-32's names of services and endpoints
SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:[-+].*)?$")


def router_control(router_id: str = "r-7") -> tuple[MicroControl, dict[str, EndpointStats]]:
    """The control of a router serving the real registry subjects, and their counters."""
    registry = bootstrap(Settings(store="memory", router_id=router_id), nats=None).ctx.registry
    handlers = endpoints(registry, max_request_bytes=4096, max_metadata_bytes=1024)
    stats = NatsResponder(handlers, max_in_flight=4).stats
    control = MicroControl(router_id, stats, queue_group=QUEUE_GROUP, metadata={"store": "memory"})
    return control, stats


def over_the_wire(answer: dict[str, Any]) -> dict[str, Any]:
    """What a client decodes: the answer as JSON and back."""
    decoded: dict[str, Any] = json.loads(json.dumps(answer))
    return decoded


def test_ping_names_the_router_instance() -> None:
    control, _ = router_control("r-7")

    ping = over_the_wire(control.ping())

    assert ping == {
        "type": "io.nats.micro.v1.ping_response",
        "name": "aegis-router",
        "id": "r-7",
        "version": ping["version"],
        "metadata": {"store": "memory"},
    }
    assert SEMVER.match(ping["version"])
    assert ServicePing.from_dict(ping).id == "r-7"


def test_info_lists_every_subject_the_router_serves() -> None:
    control, _ = router_control("r-7")

    info = over_the_wire(control.info())
    parsed = ServiceInfo.from_dict(info)

    assert info["type"] == "io.nats.micro.v1.info_response"
    assert (info["name"], info["id"]) == ("aegis-router", "r-7")
    assert info["description"]
    assert {(e["name"], e["subject"]) for e in info["endpoints"]} == {
        ("register", "ipc.service.register"),
        ("heartbeat", "ipc.service.heartbeat"),
        ("deregister", "ipc.service.deregister"),
        ("discover", "ipc.service.discover"),
        ("router-heartbeat", "ipc.router.r-7.heartbeat"),
        ("router-forward", "ipc.router.r-7.forward"),
        ("svc-register", "ipc.svc.*.register"),
        ("svc-heartbeat", "ipc.svc.*.heartbeat"),
        ("svc-deregister", "ipc.svc.*.deregister"),
        ("svc-discover", "ipc.svc.*.discover"),
        ("svc-router-heartbeat", "ipc.svc.*.heartbeat.r-7"),
    }
    assert {e.queue_group for e in parsed.endpoints} == {"aegis-router"}
    assert all(NAME.match(e.name) for e in parsed.endpoints)


def test_stats_report_each_subjects_counts_in_nanoseconds() -> None:
    control, stats = router_control("r-7")
    register = stats["ipc.service.register"]
    for _ in range(4):
        register.num_requests += 1
        register.processing_time += 250_000
    stats["ipc.service.heartbeat"].failed(ConnectionResetError("socket closed"))

    answer = over_the_wire(control.stats())
    parsed = ServiceStats.from_dict(answer)
    by_subject = {e["subject"]: e for e in answer["endpoints"]}

    assert answer["type"] == "io.nats.micro.v1.stats_response"
    assert (parsed.name, parsed.id) == ("aegis-router", "r-7")
    assert by_subject["ipc.service.register"] == {
        "name": "register",
        "subject": "ipc.service.register",
        "queue_group": "aegis-router",
        "num_requests": 4,
        "num_errors": 0,
        "last_error": "",
        "processing_time": 1_000_000,
        "average_processing_time": 250_000,
        "data": {},
    }
    assert by_subject["ipc.service.heartbeat"]["num_errors"] == 1
    assert by_subject["ipc.service.heartbeat"]["last_error"] == (
        "ConnectionResetError: socket closed"
    )
    assert by_subject["ipc.service.discover"]["average_processing_time"] == 0
    # RFC 3339 in UTC, which nats-py (and JavaScript's Date) parse.
    assert answer["started"].endswith("Z")
    started = parsed.started.replace(tzinfo=UTC)
    assert abs((datetime.now(UTC) - started).total_seconds()) < 60


def test_the_router_answers_on_all_three_forms_of_each_verb() -> None:
    assert control_subjects("PING", "r-7") == [
        "$SRV.PING",
        "$SRV.PING.aegis-router",
        "$SRV.PING.aegis-router.r-7",
    ]
    assert endpoint_name("ipc.router.r-7.forward") == "router-forward"
    assert endpoint_name("ipc.service.discover") == "discover"
    assert endpoint_name("ipc.svc.*.register") == "svc-register"
    assert endpoint_name("ipc.svc.*.heartbeat.r-7") == "svc-router-heartbeat"
