"""Registry rules as plain Python: instance records and the registration decision.

Nothing here does I/O, so every rule is testable without NATS or a store.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, NamedTuple

from aegis.wire.codec import pack_map, pack_map_around, pack_value
from aegis.wire.messages import EventKind, Instance, InstanceStatus, Maintenance

LIVE_STATUSES = frozenset({InstanceStatus.ONLINE, InstanceStatus.UNHEALTHY})


def iso(moment: datetime) -> str:
    """Render a UTC moment as ISO-8601 with a ``Z`` suffix."""
    # Every record's moments are UTC already: skip the conversion. Formatting
    # the fields ourselves is a quarter cheaper than isoformat(timespec=...)
    # and gives the same text (milliseconds truncated, as isoformat does).
    m = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031 - f-string is slower
        m.year,
        m.month,
        m.day,
        m.hour,
        m.minute,
        m.second,
        m.microsecond // 1000,
    )


# The last record to_public_map was asked for, and its map. A strong reference,
# so the identity test cannot match a new record at a freed one's address.
_last_public: list[Any] = [None, None]


class InstanceKey(NamedTuple):
    """Identity of an instance: unique per service.

    A named tuple, not a dataclass: it keys several dicts on every heartbeat,
    and a tuple hashes and compares in C.
    """

    service_name: str
    instance_id: str


@dataclass(frozen=True, slots=True)
class MaintenanceMark:
    """An operator put the instance in maintenance: why, and since when."""

    reason: str
    since: datetime

    def to_public(self) -> Maintenance:
        """The wire view."""
        return Maintenance(reason=self.reason, since=iso(self.since))


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """What the router stores about one instance, session included."""

    service_name: str
    instance_id: str
    status: InstanceStatus
    metadata: dict[str, Any]
    registered_at: datetime
    last_heartbeat_at: datetime
    session_id: str | None
    # One more with each change event of the instance (not with a refresh).
    version: int = 0
    # Kept by heartbeats and renewals: only an operator clears it.
    maintenance: MaintenanceMark | None = None
    # The highest request order (wire ``seq``) of ``session_id`` whose registration or
    # deregistration made this record: an older request of that session is stale.
    seq: int | None = None
    # packed_with_contact's frame and pieces, made on first use. Not an init field, so a
    # record made by ``replace`` (any change) starts without them.
    _packed: tuple[bytes, bytes, bytes, bytes] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    # The change event this record's write announced: (kind, actor), set by the writer
    # (``noted``) and stored with it, so every router names the change from the store
    # alone. Not an init field: a copy (a refresh, any later write) starts without it.
    change: tuple[str, str | None] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    @property
    def key(self) -> InstanceKey:
        """The record's identity."""
        return InstanceKey(self.service_name, self.instance_id)

    @property
    def is_live(self) -> bool:
        """ONLINE or UNHEALTHY: someone claims this instance."""
        return self.status in LIVE_STATUSES

    def noted(self, kind: str, actor: str | None) -> InstanceRecord:
        """This record, marked as written by a change event ``kind`` of ``actor``.

        Only for a record just made (``with_version``): it sets the mark in place.
        """
        object.__setattr__(self, "change", (kind, actor))
        return self

    def with_version(self, version: int) -> InstanceRecord:
        """This record at ``version`` (what ``replace`` does, faster: see ``_copy``)."""
        return self._copy(self.last_heartbeat_at, version, self.status)

    def with_contact(self, contact: datetime) -> InstanceRecord:
        """This record last heard from at ``contact`` (a listing does it for every
        instance heard since its write)."""
        return self._copy(contact, self.version, self.status)

    def with_status(self, status: InstanceStatus) -> InstanceRecord:
        """This record at ``status`` (every expiry makes one)."""
        return self._copy(self.last_heartbeat_at, self.version, status)

    def _copy(self, contact: datetime, version: int, status: InstanceStatus) -> InstanceRecord:
        # Positional, every field: dataclasses.replace is several times slower, on
        # every write (tests/unit/router/bus/test_endpoints_reply_maps.py lists the fields).
        return InstanceRecord(
            self.service_name,
            self.instance_id,
            status,
            self.metadata,
            self.registered_at,
            contact,
            self.session_id,
            version,
            self.maintenance,
            self.seq,
        )

    def to_public(self) -> Instance:
        """The wire view: the session never leaves the router."""
        return Instance(
            service_name=self.service_name,
            instance_id=self.instance_id,
            status=self.status,
            metadata=self.metadata,
            registered_at=iso(self.registered_at),
            last_heartbeat_at=iso(self.last_heartbeat_at),
            version=self.version,
            maintenance=self.maintenance.to_public() if self.maintenance else None,
        )

    def to_public_map(self) -> dict[str, Any]:
        """``to_public()`` as the map ``pack`` sends, without building the model.

        For the hot replies (heartbeat, register): the same keys in the same
        order with the same values, so the same bytes, in a fraction of the
        time. ``metadata`` is shared, not copied: nothing changes it in place,
        nor the map itself: the last one made is handed out again for the same
        record (a change's event and its reply show the same record).
        """
        if _last_public[0] is self:
            last: dict[str, Any] = _last_public[1]
            return last
        registered_at = iso(self.registered_at)
        # A registration's record: both are the moment it was made.
        if self.last_heartbeat_at is self.registered_at:
            last_heartbeat_at = registered_at
        else:
            last_heartbeat_at = iso(self.last_heartbeat_at)
        public = {
            "service_name": self.service_name,
            "instance_id": self.instance_id,
            "status": self.status.value,
            "metadata": self.metadata,
            "registered_at": registered_at,
            "last_heartbeat_at": last_heartbeat_at,
            "version": self.version,
        }
        if self.maintenance is not None:
            public["maintenance"] = {
                "reason": self.maintenance.reason,
                "since": iso(self.maintenance.since),
            }
        _last_public[:] = [self, public]
        return public

    def packed_with_contact(self, contact: datetime, head: bytes = b"", tail: bytes = b"") -> bytes:
        """``head + pack_map(to_public_map()) + tail``, as if ``last_heartbeat_at`` were
        ``contact``.

        A steady heartbeat's reply is the stored record with a new contact
        time, framed by the same head and tail each time: the rest is packed
        once per record and frame (about 250 bytes kept with it), and each reply
        only joins the contact's stamp in, far cheaper than packing it all.
        """
        packed = self._packed
        if packed is None or packed[0] is not head or packed[1] is not tail:
            before, after = pack_map_around(self.to_public_map(), "last_heartbeat_at")
            packed = (head, tail, head + before, after + tail)
            # Frozen, but a cache of what the fields already say changes nothing.
            object.__setattr__(self, "_packed", packed)
        return packed[2] + packed_stamp(contact) + packed[3]


# The last moment packed_stamp packed: its millisecond since the epoch, as
# (days, seconds, milliseconds), and its bytes.
_last_stamp: list[Any] = [None, b""]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def packed_stamp(moment: datetime) -> bytes:
    """``pack_value(iso(moment))``: moments within one millisecond (which is all ``iso``
    shows) share the bytes of the last one, as a burst of heartbeats does."""
    if moment.tzinfo is None:  # iso reads it as local time; not worth a cache
        return pack_value(iso(moment))
    # Exact integers, whatever the era or the offset (a float timestamp is not).
    since = moment - _EPOCH
    key = (since.days, since.seconds, since.microseconds // 1000)
    if _last_stamp[0] != key:
        _last_stamp[:] = [key, pack_value(iso(moment))]
    stamp: bytes = _last_stamp[1]
    return stamp


class Outcome(Enum):
    """What a registration does to the registry."""

    CREATED = "created"  # new instance, or an OFFLINE one taken over: 201
    RENEWED = "renewed"  # same live session again: 200, counts as contact
    DUPLICATE = "duplicate"  # live under another (or no) session: 409
    STALE = "stale"  # overtaken by a later request of the same session: 409, no change


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of a registration and the record to store, if any."""

    outcome: Outcome
    record: InstanceRecord


def decide_registration(
    existing: InstanceRecord | None,
    *,
    service_name: str,
    instance_id: str,
    metadata: dict[str, Any],
    session_id: str | None,
    now: datetime,
    seq: int | None = None,
) -> Decision:
    """Apply the duplicate rules of wire contract v1, and the session's request order.

    For DUPLICATE and STALE the decision's record is the existing one, unchanged.
    """
    if session_id is not None and is_stale(existing, session_id, seq):
        assert existing is not None
        return Decision(Outcome.STALE, existing)
    if existing is None or not existing.is_live:
        return Decision(
            Outcome.CREATED,
            InstanceRecord(
                service_name=service_name,
                instance_id=instance_id,
                status=InstanceStatus.ONLINE,
                metadata=metadata,
                registered_at=now,
                last_heartbeat_at=now,
                session_id=session_id,
                seq=seq,
                # An operator's drain belongs to the instance id, not to one run of
                # it: a restart must not put a drained instance back in rotation.
                maintenance=existing.maintenance if existing is not None else None,
            ),
        )
    if session_id is not None and existing.session_id == session_id:
        # A retried request: metadata stays as first registered.
        return Decision(Outcome.RENEWED, ordered(touch(existing, now), seq))
    return Decision(Outcome.DUPLICATE, existing)


def is_stale(existing: InstanceRecord | None, session_id: str, seq: int | None) -> bool:
    """Whether a request of ``session_id`` carrying ``seq`` was overtaken: a later
    registration or deregistration of the same session made ``existing``.

    Like etcd's lease revision or Eureka's ``lastDirtyTimestamp``, the order is
    the client's own: a request delayed in the network (say, behind a frozen
    NATS node) must not undo what its session did after sending it. Equal is
    not stale: a retry carries the seq of the request it retries.
    """
    return (
        seq is not None
        and existing is not None
        and existing.seq is not None
        and existing.session_id == session_id
        and seq < existing.seq
    )


def ordered(record: InstanceRecord, seq: int | None) -> InstanceRecord:
    """``record`` written by a request carrying ``seq``: it keeps the highest order seen."""
    if seq is None or (record.seq is not None and record.seq >= seq):
        return record
    return replace(record, seq=seq)


@dataclass(frozen=True, slots=True)
class Timings:
    """Liveness settings, in seconds; each deadline counts from the last contact."""

    heartbeat_interval: float = 5.0
    unhealthy_after: float = 15.0
    offline_after: float = 30.0
    remove_after: float = 300.0
    # How stale the store's last_heartbeat_at of an ONLINE instance may grow
    # before a heartbeat writes it again (between those, contacts live in the
    # lease holder's memory). 24 heartbeats at the defaults: < 0.05 writes each.
    # Raised to max(30 s, unhealthy_after) if set lower: see ``refresh_after``.
    lease_refresh: float = 120.0

    def __post_init__(self) -> None:
        if not (
            0 < self.heartbeat_interval < self.unhealthy_after < self.offline_after
            and self.offline_after < self.remove_after
        ):
            raise ValueError(
                "liveness timings must satisfy 0 < heartbeat_interval < unhealthy_after < "
                f"offline_after < remove_after; got {self.heartbeat_interval} / "
                f"{self.unhealthy_after} / {self.offline_after} / {self.remove_after}"
            )

    def after(self, status: InstanceStatus) -> float:
        """Seconds without contact before an instance in ``status`` is next due for a
        check (its next transition)."""
        seconds: float = getattr(self, _AFTER_BY_STATUS[status])
        return seconds

    @property
    def refresh_after(self) -> float:
        """Seconds between store refreshes of a steady instance's contact: at most one
        write per instance per max(30 s, unhealthy_after), whatever ``lease_refresh`` says."""
        return max(self.lease_refresh, 30.0, self.unhealthy_after)


@dataclass(frozen=True, slots=True)
class LaneLimits:
    """How a request lane (``admission.Lane``) bounds its work; times in seconds."""

    workers: int = 32
    max_wait: float = 1.0  # the oldest queued one has waited this long: refuse new ones
    deadline: float = 5.0  # a queued one this old lost its caller: drop it

    def __post_init__(self) -> None:
        if self.workers < 1 or not 0 < self.max_wait <= self.deadline:
            raise ValueError(
                "a lane needs workers >= 1 and 0 < max_wait <= deadline; got "
                f"{self.workers} / {self.max_wait} / {self.deadline}"
            )


_AFTER_BY_STATUS = {
    InstanceStatus.ONLINE: "unhealthy_after",
    InstanceStatus.UNHEALTHY: "offline_after",
    InstanceStatus.OFFLINE: "remove_after",
}
_SEVERITY = {InstanceStatus.ONLINE: 0, InstanceStatus.UNHEALTHY: 1, InstanceStatus.OFFLINE: 2}


def next_deadline(record: InstanceRecord, timings: Timings, alive_at: float | None = None) -> float:
    """When the record is next due for a check (epoch seconds): its next transition if
    nothing is heard.

    Deadlines count from ``alive_at`` (epoch seconds) if given (see ``leases``), else
    from the record's last contact. Epoch seconds, not datetimes: every write
    schedules one.
    """
    since = record.last_heartbeat_at.timestamp() if alive_at is None else alive_at
    return since + timings.after(record.status)


def offline_at(record: InstanceRecord, timings: Timings) -> datetime:
    """When a live record goes OFFLINE (and may be taken over) if nothing is heard."""
    return record.last_heartbeat_at + timedelta(seconds=timings.offline_after)


def expire(
    record: InstanceRecord, now: datetime, timings: Timings, alive_at: datetime | None = None
) -> InstanceRecord | None:
    """The record as time alone leaves it: worse status by age, or None when removed
    (never while an operator's maintenance mark is on it).

    Age counts from ``alive_at`` if given, else from the last contact. Age
    never improves a status (a deregistered instance stays OFFLINE); only
    contact does.
    """
    age = (now - (alive_at or record.last_heartbeat_at)).total_seconds()
    if age >= timings.remove_after and record.maintenance is None:
        return None  # a record in maintenance stays, OFFLINE, until an operator clears it
    if age >= timings.offline_after:
        by_age = InstanceStatus.OFFLINE
    elif age >= timings.unhealthy_after:
        by_age = InstanceStatus.UNHEALTHY
    else:
        by_age = InstanceStatus.ONLINE
    if _SEVERITY[by_age] <= _SEVERITY[record.status]:
        return record
    return record.with_status(by_age)


class OwnerCheck(Enum):
    """Whether a heartbeat or deregistration may act on the stored record."""

    OK = "ok"
    NOT_FOUND = "not_found"  # unknown or OFFLINE: the client should register again
    SESSION_MISMATCH = "session_mismatch"  # live, but owned by another session or none
    STALE = "stale"  # the owner's own later registration or deregistration overtook it


def check_owner(
    existing: InstanceRecord | None, session_id: str, seq: int | None = None
) -> OwnerCheck:
    """Only the session that registered a live instance may speak for it, and only with
    a request its own later registration or deregistration did not overtake."""
    if existing is None or not existing.is_live:
        return OwnerCheck.NOT_FOUND
    if existing.session_id is None or existing.session_id != session_id:
        return OwnerCheck.SESSION_MISMATCH
    if is_stale(existing, session_id, seq):
        return OwnerCheck.STALE
    return OwnerCheck.OK


def touch(record: InstanceRecord, now: datetime) -> InstanceRecord:
    """Contact from the owner: ONLINE again, deadlines restart."""
    return replace(record, status=InstanceStatus.ONLINE, last_heartbeat_at=now)


def take_offline(record: InstanceRecord, now: datetime, seq: int | None = None) -> InstanceRecord:
    """Deregistered (by a request carrying ``seq``, if any): OFFLINE at once; removal
    counts from now."""
    return ordered(replace(record, status=InstanceStatus.OFFLINE, last_heartbeat_at=now), seq)


def change_kind(
    before: InstanceRecord | None,
    after: InstanceRecord | None,
    *,
    registered: bool = False,
    deregistered: bool = False,
) -> EventKind | None:
    """Name the change from ``before`` to ``after`` for a change event; None if no news.

    ``registered``/``deregistered`` say what the writer did: the records alone
    cannot tell a takeover in the same clock tick from a renewal.
    """
    if after is None:
        return EventKind.REMOVED if before is not None else None
    if registered or before is None:
        return EventKind.REGISTERED
    if deregistered:
        return EventKind.DEREGISTERED
    if after.status is not before.status:
        return EventKind.STATUS_CHANGED
    if after.maintenance != before.maintenance:
        return EventKind.MAINTENANCE
    return None


def event_map(
    kind: EventKind,
    instance: dict[str, Any],
    previous: InstanceStatus | None,
    actor: str | None = None,
) -> dict[str, Any]:
    """A ``ChangeEvent`` in wire form, as ``pack`` would see it after ``model_dump``.

    Built as a map, like the hot replies: validating and dumping the model cost
    more than the rest of announcing a change (tests/unit/router/bus/
    test_endpoints_reply_maps.py checks the bytes are the model's). The registry
    announces these; the JetStream store derives the same from its watch.
    """
    event: dict[str, Any] = {"event": kind.value, "instance": instance}
    if previous is not None:
        event["previous_status"] = previous.value
    if actor is not None:
        event["actor"] = actor  # who asked: an admin token's name (operator changes only)
    return event


# The change events packed lately, by the record they show: the writer packs one to
# announce its change, and the JetStream store's watch sees the same write back a
# moment later, with up to a sweep's writes in flight in between, and hands the
# event feed the same bytes. Strong references, so an identity match never meets
# a new record at a freed one's address; the oldest goes first. Twice a sweep's
# writes in flight: nearly every own write is met, and what is held past its time
# (records, their metadata, the packed events) stays bounded.
_EVENTS_KEPT = 1024
_packed_events: dict[
    int,
    tuple[
        InstanceRecord,
        tuple[EventKind, InstanceStatus | None, str | None],
        dict[str, Any],
        bytes,
    ],
] = {}


def packed_event(
    kind: EventKind,
    shown: InstanceRecord,
    previous: InstanceStatus | None,
    actor: str | None = None,
) -> tuple[dict[str, Any], bytes]:
    """``event_map(kind, shown.to_public_map(), previous, actor)`` and its MessagePack,
    made once for a record however often its change is announced or seen."""
    key = (kind, previous, actor)  # compared, never hashed: members by identity
    kept = _packed_events.get(id(shown))
    if kept is not None and kept[0] is shown and kept[1] == key:
        return kept[2], kept[3]
    event = event_map(kind, shown.to_public_map(), previous, actor)
    data = pack_map(event)
    _packed_events[id(shown)] = (shown, key, event, data)
    if len(_packed_events) > _EVENTS_KEPT:
        del _packed_events[next(iter(_packed_events))]
    return event, data
