"""aegis.router.rest.instance_json: the REST listings' bytes are the models' bytes, and a
kept text never shows an instance as it was."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from aegis.router.bootstrap import bootstrap
from aegis.router.domain import InstanceKey, InstanceRecord, MaintenanceMark, iso
from aegis.router.registry.operations import Registry
from aegis.router.rest.instance_json import InstanceTexts
from aegis.router.settings import Settings
from aegis.router.store.port import MemoryStore
from aegis.wire.messages import InstanceStatus, RegisterRequest
from aegis.wire.rest import InstancesResponse, ServiceDetail
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from sanic import json

from tests.support import T0, FakeClock
from tests.unit.router.fakes import SESSION

STAMP = '"last_heartbeat_at":"2026-03-01T12:00:00.000Z"'
METADATA: list[dict[str, Any]] = [
    {},
    {"version": "1.4.2", "zone": "eu-west-1a", "port": 8080},
    {"none": None, "nested": {"deep": [1, 2.5, None, True, {"x": "y"}]}, "big": 2**64 - 1},
    {"neg": -(2**63), "float": 0.1, "empty": [], "map": {}, "tiny": 1e-300, "exp": 1e22},
    # Text that JSON escapes: slashes, quotes, controls, and beyond ASCII.
    {"url": "http://a/b?c=d", "q": 'say "hi"\\', "ctl": "\n\t\x00\x1f", "ü": "ß→😀"},
    # Keys like the instance's own, even with its very stamp.
    {"last_heartbeat_at": "2026-03-01T12:00:00.000Z", "maintenance": {"since": STAMP}},
]
MARKS = [
    None,
    MaintenanceMark("kernel upgrade", T0 + timedelta(minutes=3, microseconds=1)),
    MaintenanceMark(STAMP + ',"version":1}', T0),  # the reason a hostile operator gives
]


def model_bytes(model: BaseModel) -> bytes:
    """What the API sent before instance_json: the model dumped through Sanic's json()."""
    body = json(model.model_dump(mode="json")).body
    assert body is not None
    return body


def detail_bytes(name: str, records: list[InstanceRecord]) -> bytes:
    """The ``ServiceDetail`` body as the model gives it."""
    return model_bytes(ServiceDetail(name=name, instances=[r.to_public() for r in records]))


def instances_bytes(records: list[InstanceRecord], version: str | None = None) -> bytes:
    """The ``InstancesResponse`` body as the model gives it (one page: no next cursor)."""
    instances = [r.to_public() for r in records]
    return model_bytes(
        InstancesResponse(instances=instances, total=len(instances), version=version)
    )


def record(
    instance_id: str = "b-1.a:9",
    status: InstanceStatus = InstanceStatus.ONLINE,
    metadata: dict[str, Any] | None = None,
    version: int = 1,
    maintenance: MaintenanceMark | None = None,
) -> InstanceRecord:
    later = T0 + timedelta(seconds=12, microseconds=345_678)
    return InstanceRecord(
        "billing",
        instance_id,
        status,
        METADATA[1] if metadata is None else metadata,
        T0,
        later,
        SESSION,
        version,
        maintenance,
    )


@pytest.mark.parametrize("metadata", METADATA)
@pytest.mark.parametrize("status", list(InstanceStatus))
@pytest.mark.parametrize("mark", MARKS)
def test_bodies_are_the_models_bytes(
    metadata: dict[str, Any], status: InstanceStatus, mark: MaintenanceMark | None
) -> None:
    records = [
        record("b-1", status, metadata, 0, mark),
        record("b-2", status, metadata, 2**40),
        record("b-3", InstanceStatus.OFFLINE, METADATA[0], 3, mark),
    ]
    texts = InstanceTexts()
    for _ in range(2):  # rendered, then kept
        assert texts.service_detail("billing", records) == detail_bytes("billing", records)
        assert texts.instances_response(records) == instances_bytes(records)
    assert texts.service_detail("billing", []) == detail_bytes("billing", [])
    assert texts.instances_response([]) == instances_bytes([])


@pytest.mark.parametrize("metadata", METADATA)
@pytest.mark.parametrize("mark", MARKS)
def test_a_new_contact_shows_in_the_kept_text(
    metadata: dict[str, Any], mark: MaintenanceMark | None
) -> None:
    stored = record(metadata=metadata, maintenance=mark)
    texts = InstanceTexts()
    texts.text(stored)
    for contact in (
        stored.last_heartbeat_at + timedelta(microseconds=999),  # the same millisecond
        stored.last_heartbeat_at + timedelta(seconds=5, microseconds=1500),
        stored.last_heartbeat_at + timedelta(days=400),
        datetime(2026, 3, 1, 14, 0, 20, 5_000, tzinfo=timezone(timedelta(hours=2))),
        datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
    ):
        # As Registry._as_heard shows a contact heard here: a copy of the stored record.
        heard = replace(stored, last_heartbeat_at=contact)
        assert texts.service_detail("billing", [heard]) == detail_bytes("billing", [heard])
    assert texts.kept == 1


CHANGES: dict[str, Callable[[InstanceRecord], InstanceRecord]] = {
    "status": lambda r: replace(r, status=InstanceStatus.UNHEALTHY),
    "version": lambda r: r.with_version(r.version + 1),
    "registered_at": lambda r: replace(r, registered_at=r.registered_at + timedelta(seconds=1)),
    "maintenance": lambda r: replace(r, maintenance=MARKS[1]),
    "maintenance_reason": lambda r: replace(r, maintenance=MaintenanceMark("other", T0)),
    "maintenance_since": lambda r: replace(
        r, maintenance=MaintenanceMark("x", T0 + timedelta(milliseconds=1))
    ),
    "maintenance_lifted": lambda r: replace(r, maintenance=None),
    # Equal maps, other texts: 1 == 1.0 == True in Python, not in JSON.
    "metadata": lambda r: replace(r, metadata={**r.metadata, "port": 8080.0}),
    "metadata_bool": lambda r: replace(r, metadata={"v": True}),
}


@pytest.mark.parametrize("change", CHANGES)
def test_any_other_change_renders_the_record_afresh(change: str) -> None:
    first = record("b-1", maintenance=MaintenanceMark("x", T0), metadata={"v": 1, "port": 8080})
    texts = InstanceTexts()
    texts.text(first)
    changed = CHANGES[change](first)
    heard = replace(changed, last_heartbeat_at=changed.last_heartbeat_at + timedelta(seconds=3))
    for shown in (changed, heard, changed):
        assert texts.service_detail("billing", [shown]) == detail_bytes("billing", [shown])


def test_kept_texts_stay_within_the_limit_and_correct() -> None:
    texts = InstanceTexts(limit=5)
    records = [record(f"b-{i}", version=i) for i in range(12)]
    for _ in range(2):
        for r in records:
            assert texts.instances_response([r]) == instances_bytes([r])
            assert 1 <= texts.kept <= 5
    assert texts.instances_response(records) == instances_bytes(records)
    assert texts.kept <= 5


def test_instances_of_several_services_in_one_listing() -> None:
    texts = InstanceTexts()
    records = [replace(record(f"i-{i}"), service_name=f"svc-{i % 3}") for i in range(9)]
    records.sort(key=lambda r: (r.service_name, r.instance_id))
    assert texts.instances_response(records) == instances_bytes(records)
    assert texts.kept == 9


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
moments = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
)
steps = st.one_of(
    st.tuples(st.just("contact"), moments),
    st.tuples(st.just("status"), st.sampled_from(list(InstanceStatus))),
    st.tuples(st.just("metadata"), st.dictionaries(st.text(max_size=20), json_values)),
    st.tuples(st.just("mark"), st.none() | st.builds(MaintenanceMark, st.text(), moments)),
    st.tuples(st.just("version"), st.integers(min_value=0, max_value=2**63)),
    st.tuples(st.just("registered_at"), moments),
)
FIELDS = {
    "contact": "last_heartbeat_at",
    "status": "status",
    "metadata": "metadata",
    "mark": "maintenance",
    "version": "version",
    "registered_at": "registered_at",
}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=0, max_value=2), steps), max_size=12))
def test_whatever_changes_the_body_is_the_models(changes: list[tuple[int, Any]]) -> None:
    records = [record(f"b-{i}") for i in range(3)]
    texts = InstanceTexts(limit=2)
    for index, (step, value) in changes:
        records[index] = replace(records[index], **{FIELDS[step]: value})
        assert texts.service_detail("billing", records) == detail_bytes("billing", records)


# -- through the API -----------------------------------------------------------------

ADMIN = "/api/v1/admin"
# Each query, and the instances it keeps of those the test below registers.
QUERIES = {
    "": {"b-0", "b-1", "b-2", "b-3", "b-4", "b-5", "b-6"},
    "?status=online": {"b-0", "b-3", "b-4", "b-5"},
    "?status=OFFLINE": {"b-2"},
    "?status=unhealthy&maintenance=include": {"b-6"},
    "?meta.port=8080&maintenance=include": {"b-1"},
    "?maintenance=only": {"b-1"},
    "?maintenance=exclude": {"b-0", "b-2", "b-3", "b-4", "b-5", "b-6"},
}


async def test_the_routes_serve_the_models_bytes_with_each_new_contact() -> None:
    clock, store = FakeClock(), MemoryStore()
    app = bootstrap(Settings(store="memory"), store=store, nats=None, clock=clock)
    registry: Registry = app.ctx.registry
    for i, metadata in enumerate(METADATA):
        request = RegisterRequest(
            service_name="billing", instance_id=f"b-{i}", metadata=metadata, session_id=SESSION
        )
        await registry.register(request)
    await registry.set_maintenance(InstanceKey("billing", "b-1"), "kernel upgrade")
    await registry.force_deregister(InstanceKey("billing", "b-2"))
    await store.create(record("b-6", InstanceStatus.UNHEALTHY, METADATA[4]))
    await registry.load()

    async def served_as_the_models(queries: dict[str, set[str]] = QUERIES) -> None:
        listed = await registry.instances("billing")
        for query, kept in queries.items():
            shown = [r for r in listed if r.instance_id in kept]
            version = f"local:{registry.changes}"  # no event feed: the registry's count
            for path, expected in [
                (f"services/billing{query}", detail_bytes("billing", shown)),
                (f"services/billing/instances{query}", instances_bytes(shown, version)),
                (f"instances{query}", instances_bytes(shown, version)),
            ]:
                _, response = await app.asgi_client.get(f"{ADMIN}/{path}")
                assert response.status == 200
                assert response.headers["content-type"] == "application/json"
                assert response.headers["x-aegis-version"] == version
                assert response.content == expected, path

    await served_as_the_models()
    b0 = InstanceKey("billing", "b-0")
    for _ in range(3):  # steady heartbeats: contacts held in memory only
        clock.advance(2.5001)
        await registry.heartbeat(b0, SESSION)
        stored = store.peek(b0)
        assert stored is not None
        assert stored.record.last_heartbeat_at < clock.now  # held in memory, not written
        await served_as_the_models()
        _, response = await app.asgi_client.get(f"{ADMIN}/services/billing?status=online")
        assert f'"last_heartbeat_at":"{iso(clock.now)}"'.encode() in response.content
    await registry.set_maintenance(b0, "drain")
    await served_as_the_models({"": QUERIES[""], "?maintenance=only": {"b-0", "b-1"}})
