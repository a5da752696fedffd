"""The hot replies built as plain maps send the bytes the ``Reply`` model would.

Heartbeat, register and deregister successes skip building and dumping the
pydantic models (see ``handlers.ReplyMap``); the wire must not notice.
"""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgpack
import pytest
from aegis.router.bus.endpoints import endpoints, steady_heartbeat_reply
from aegis.router.domain import (
    InstanceKey,
    InstanceRecord,
    MaintenanceMark,
    event_map,
    iso,
    packed_event,
)
from aegis.router.registry.operations import Registry
from aegis.router.store.port import MemoryStore
from aegis.wire.codec import pack, pack_map
from aegis.wire.messages import (
    DEREGISTER_SUBJECT,
    HEARTBEAT_SUBJECT,
    REGISTER_SUBJECT,
    ChangeEvent,
    EventKind,
    InstanceStatus,
    Reply,
)

from tests.support import T0
from tests.unit.router.fakes import SESSION, TIMINGS

METADATA: list[dict[str, Any]] = [
    {},
    {"version": "1.4.2", "zone": "eu-west-1a", "port": 8080},
    {"none": None, "nested": {"deep": [1, 2.5, None, True, {"x": "y"}]}, "big": 2**64 - 1},
    {"neg": -(2**63), "float": 0.1, "empty": [], "map": {}},
]


def record(metadata: dict[str, Any], status: InstanceStatus, version: int) -> InstanceRecord:
    later = T0 + timedelta(seconds=12, microseconds=345_678)
    return InstanceRecord("billing", "b-1.a:9", status, metadata, T0, later, SESSION, version)


@pytest.mark.parametrize("metadata", METADATA)
@pytest.mark.parametrize("status", list(InstanceStatus))
@pytest.mark.parametrize("version", [0, 1, 2**40])
def test_public_map_packs_as_the_public_model(
    metadata: dict[str, Any], status: InstanceStatus, version: int
) -> None:
    r = record(metadata, status, version)
    assert pack_map(r.to_public_map()) == msgpack.packb(
        r.to_public().model_dump(mode="json", exclude_none=True)
    )
    subject = "ipc.router.r-1.heartbeat"
    heartbeat = {"ok": True, "status": 200, "instance": r.to_public_map()}
    model = Reply(ok=True, status=200, instance=r.to_public())
    assert pack_map(heartbeat) == pack(model)
    heartbeat["heartbeat_subject"] = subject
    model = Reply(ok=True, status=200, instance=r.to_public(), heartbeat_subject=subject)
    assert pack_map(heartbeat) == pack(model)


@pytest.mark.parametrize(
    "moment",
    [
        T0,
        datetime(2026, 3, 4, 5, 6, 7, 891_234, tzinfo=UTC),
        datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC),
        datetime(2026, 3, 4, 7, 6, 7, 5_000, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_iso_is_utc_with_milliseconds_and_z(moment: datetime) -> None:
    expected = moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert iso(moment) == expected


def model_reply(reply: dict[str, Any]) -> bytes:
    """The bytes the ``Reply`` model gives for what a reply map decodes to."""
    return pack(Reply.model_validate(reply))


async def test_every_hot_reply_is_byte_for_byte_the_model() -> None:
    handlers = endpoints(
        Registry(MemoryStore(), TIMINGS), max_request_bytes=65536, max_metadata_bytes=16384
    )
    base = {"service_name": "billing", "instance_id": "b-1", "session_id": SESSION}
    register = msgpack.packb({**base, "metadata": METADATA[2]})
    for subject, body, status in [
        (REGISTER_SUBJECT, register, 201),
        (REGISTER_SUBJECT, register, 200),
        (HEARTBEAT_SUBJECT, msgpack.packb(base), 200),
        (DEREGISTER_SUBJECT, msgpack.packb(base), 200),
    ]:
        raw = await handlers[subject](body)
        reply = msgpack.unpackb(raw)
        assert (reply["ok"], reply["status"]) == (True, status)
        assert raw == model_reply(reply), subject


@pytest.mark.parametrize("metadata", METADATA)
@pytest.mark.parametrize("marked", [False, True])
def test_steady_heartbeat_reply_is_the_model_with_the_new_contact(
    metadata: dict[str, Any], marked: bool
) -> None:
    stored = record(metadata, InstanceStatus.ONLINE, 7)
    if marked:
        stored = replace(stored, maintenance=MaintenanceMark("kernel upgrade", T0))
    subject = "ipc.router.r-1.heartbeat"
    for seconds in (1, 2):  # the second reply comes from the record's packed pieces
        contact = stored.last_heartbeat_at + timedelta(seconds=seconds, microseconds=1500)
        heard = replace(stored, last_heartbeat_at=contact)
        model = Reply(ok=True, status=200, instance=heard.to_public(), heartbeat_subject=subject)
        assert steady_heartbeat_reply(stored, contact, subject) == pack(model)


async def test_a_changed_record_replies_with_its_change_not_the_old_pieces() -> None:
    registry = Registry(MemoryStore(), TIMINGS)
    handlers = endpoints(registry, max_request_bytes=65536, max_metadata_bytes=16384)
    base = {"service_name": "billing", "instance_id": "b-1", "session_id": SESSION}
    await handlers[REGISTER_SUBJECT](msgpack.packb(base))
    beat = handlers[HEARTBEAT_SUBJECT]
    assert "maintenance" not in msgpack.unpackb(await beat(msgpack.packb(base)))["instance"]
    await registry.set_maintenance(InstanceKey("billing", "b-1"), "drain")
    instance = msgpack.unpackb(await beat(msgpack.packb(base)))["instance"]
    assert instance["maintenance"]["reason"] == "drain"
    assert instance["version"] == 2


@pytest.mark.parametrize("kind", list(EventKind))
@pytest.mark.parametrize("previous", [None, *InstanceStatus])
@pytest.mark.parametrize("actor", [None, "oncall"])
def test_event_map_packs_as_the_change_event_model(
    kind: EventKind, previous: InstanceStatus | None, actor: str | None
) -> None:
    r = record(METADATA[1], InstanceStatus.UNHEALTHY, 3)
    model = ChangeEvent(event=kind, instance=r.to_public(), previous_status=previous, actor=actor)
    assert pack_map(event_map(kind, r.to_public_map(), previous, actor)) == pack(model)
    event, data = packed_event(kind, r, previous, actor)
    assert (event, data) == (event_map(kind, r.to_public_map(), previous, actor), pack(model))


def test_a_change_seen_twice_is_packed_once_and_another_anew() -> None:
    # The writer announces a change and its store's watch sees the write again.
    r = record(METADATA[1], InstanceStatus.UNHEALTHY, 3)
    online, changed = InstanceStatus.ONLINE, EventKind.STATUS_CHANGED
    announced = packed_event(changed, r, online)
    assert packed_event(changed, r, online)[1] is announced[1]
    assert msgpack.unpackb(packed_event(changed, r, None)[1]).get("previous_status") is None
    copy = r.with_version(r.version)
    assert packed_event(changed, copy, online)[1] is not announced[1]
    assert packed_event(changed, copy, online)[1] == announced[1]


def test_with_version_contact_and_status_keep_every_other_field() -> None:
    # A new field must be added to with_version, with_contact and with_status too:
    # this list makes that seen.
    names = [f.name for f in fields(InstanceRecord) if f.init]
    assert names == [
        "service_name",
        "instance_id",
        "status",
        "metadata",
        "registered_at",
        "last_heartbeat_at",
        "session_id",
        "version",
        "maintenance",
        "seq",
    ]
    r = replace(
        record(METADATA[1], InstanceStatus.UNHEALTHY, 4),
        maintenance=MaintenanceMark("x", T0),
        seq=12,
    )
    assert r.with_version(9) == replace(r, version=9)
    later = T0 + timedelta(seconds=3)
    assert r.with_contact(later) == replace(r, last_heartbeat_at=later)
    assert r.with_status(InstanceStatus.OFFLINE) == replace(r, status=InstanceStatus.OFFLINE)


def test_the_public_map_of_one_record_is_made_once_and_of_another_anew() -> None:
    a = record(METADATA[1], InstanceStatus.ONLINE, 1)
    b = replace(a, status=InstanceStatus.UNHEALTHY)
    assert a.to_public_map() is a.to_public_map()
    assert b.to_public_map()["status"] == "UNHEALTHY"
    assert a.to_public_map()["status"] == "ONLINE"


def test_contacts_in_one_millisecond_share_a_stamp_and_no_other_moment_does() -> None:
    stored = record(METADATA[1], InstanceStatus.ONLINE, 7)
    subject = "ipc.router.r-1.heartbeat"
    base = T0 + timedelta(seconds=5, microseconds=250_400)
    # Within the millisecond; then the same millisecond a minute, an hour, a day
    # later; and the next millisecond: each reply must show its own contact.
    for contact in (
        base,
        base + timedelta(microseconds=500),
        base + timedelta(minutes=1),
        base + timedelta(hours=1),
        base + timedelta(days=1),
        base + timedelta(microseconds=700),
        # Either side of the epoch, far in the future, and a sub-second offset.
        datetime(1970, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
        datetime(2600, 6, 1, 0, 0, 1, 999_000, tzinfo=UTC),
        datetime(2600, 6, 1, 0, 0, 2, 999_000, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 0, 500_000, tzinfo=timezone(timedelta(microseconds=600_000))),
        datetime(2026, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC),
    ):
        reply = msgpack.unpackb(steady_heartbeat_reply(stored, contact, subject))
        assert reply["instance"]["last_heartbeat_at"] == iso(contact)
