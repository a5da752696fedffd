"""Which live router holds which instance's lease: membership and the partition table.

Instances hash into ``PARTITIONS`` partitions; each partition goes to the live
router that scores highest for it (rendezvous hashing). Every router computes
the same table from the same member list, so nobody writes who holds what,
a joining router takes about 1/n of the partitions, and when a router leaves
only its own partitions move. Pure: the KV-backed runtime feeds it sightings.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aegis.router.domain import InstanceKey

PARTITIONS = 1024
MEMBER_REFRESH = 1.0  # seconds between a router's membership puts
# Three missed refreshes: a router is gone. Well above any loop stall we allow
# (50 ms), well below unhealthy_after, which a live instance must not reach
# (see ``shortest_unhealthy_after``).
MEMBER_TTL = 3.0
# After a router hears itself again following a gap, its copy of the registry
# bucket may still be behind (a watch on a frozen node catches up, or the store's
# guard restarts it within two 2 s checks). For this long it answers nothing
# from memory alone: contacts go through the store's compare-and-set, which
# reads what is really there.
SETTLE_AFTER_GAP = 4.0


def shortest_unhealthy_after(heartbeat_interval: float) -> float:
    """The bound ``unhealthy_after`` must exceed for shared leases to hold: ``MEMBER_TTL``
    plus one heartbeat interval.

    A lease holder silent for up to ``MEMBER_TTL`` (a pause, a frozen NATS
    node) is neither counted gone by the others nor deaf by its own account,
    so it keeps its leases; back, it may sweep before reading the heartbeats
    queued for it, judging contacts up to that silence plus one interval old.
    """
    return MEMBER_TTL + heartbeat_interval


def partition_of(key: InstanceKey) -> int:
    """The partition of an instance (the same in every router process)."""
    data = f"{key.service_name}\x00{key.instance_id}".encode()
    return zlib.crc32(data) % PARTITIONS


def _score(member_id: str, partition: int) -> int:
    digest = hashlib.blake2b(f"{member_id}/{partition}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner_table(member_ids: Iterable[str]) -> list[str]:
    """The holder of each partition among ``member_ids`` (which must not be empty)."""
    members = sorted(member_ids)
    return [max(members, key=lambda m: _score(m, p)) for p in range(PARTITIONS)]


@dataclass(frozen=True, slots=True)
class Handover:
    """What a change of membership moved to or from this router.

    ``gained`` maps each partition this router now holds to a contact floor:
    the last moment its previous holder may have answered a heartbeat from
    memory (its in-memory contacts are lost, or still with it). No live
    instance in such a partition is older than that floor; see
    docs/architecture.md.
    """

    gained: dict[int, float]
    lost: frozenset[int]


@dataclass(slots=True)
class Member:
    """A router as seen by this one: last sighting on this router's clock."""

    member_id: str
    seen_at: float


Listener = Callable[[Handover], None]


class Membership:
    """The live routers, this one included, and the partition table they imply.

    ``seen`` records a sighting (a membership refresh), ``left`` a router that
    said goodbye, ``expire`` drops routers not seen for ``ttl`` seconds. Each
    change recomputes the table and tells the listener what moved here.
    """

    def __init__(self, self_id: str, ttl: float, now: float) -> None:
        self.self_id = self_id
        self.ttl = ttl
        self._members: dict[str, Member] = {self_id: Member(self_id, now)}
        self._table = owner_table([self_id])
        self._listener: Listener | None = None
        self._resigned = False
        self.version = 0
        # When this router last heard its own sighting come back through NATS;
        # None while nothing tracks it (a lone router, which always hears itself).
        self.heard_self_at: float | None = None
        self._settled_at = 0.0  # see SETTLE_AFTER_GAP

    def hearing(self, now: float) -> bool:
        """Whether this router heard itself within ``ttl``. One that did not cannot be
        sure it hears anyone, nor that the others still count it alive."""
        return self.heard_self_at is None or now - self.heard_self_at <= self.ttl

    def may_answer_from_memory(self, partition: int, now: float) -> bool:
        """Whether this router may answer a heartbeat of ``partition`` heard at ``now``
        from memory, keeping its contact here, where the lease's holder will see it.

        Only if it holds the lease and hears itself: one that does not may have
        been counted gone by the others, who took its leases. Not just after a
        gap either: its copy of the store may still lag (``SETTLE_AFTER_GAP``).
        Otherwise the contact goes to the holder, or to the store, which every
        router reads. Asked once per heartbeat, as it arrives.
        """
        if self._table[partition] != self.self_id:
            return False
        # hearing(now), inlined: this runs for every heartbeat.
        heard_at = self.heard_self_at
        return (heard_at is None or now - heard_at <= self.ttl) and now >= self._settled_at

    def set_listener(self, listener: Listener | None) -> None:
        """Call ``listener`` with every handover (after the table changed)."""
        self._listener = listener

    @property
    def member_ids(self) -> list[str]:
        """The live routers, sorted."""
        return sorted(self._members)

    def owner(self, key: InstanceKey) -> str:
        """The router holding ``key``'s lease."""
        return self._table[partition_of(key)]

    def holds(self, key: InstanceKey) -> bool:
        """Whether this router holds ``key``'s lease."""
        return self.holds_partition(partition_of(key))

    def holds_partition(self, partition: int) -> bool:
        """Whether this router holds ``partition``'s leases."""
        return self._table[partition] == self.self_id

    def holder_of(self, partition: int) -> str:
        """The router holding ``partition``."""
        return self._table[partition]

    def answered_until(self, member_id: str) -> float:
        """The latest moment ``member_id`` may have answered heartbeats from memory (0 if
        it is not a member): its last sighting plus ``ttl``.

        A router answers from memory while it hears itself within ``ttl``
        (``may_answer_from_memory``), and it hears its own put when the others
        see it, so one cut off keeps acknowledging contacts, kept only in its
        memory, for up to ``ttl`` after its last sighting. Counting its
        instances from the sighting alone judged them on contacts up to ``ttl``
        older than the ones they were answered (docs/reliability.md, known
        limit 7).
        """
        member = self._members.get(member_id)
        return member.seen_at + self.ttl if member is not None else 0.0

    def held_partitions(self) -> int:
        """How many partitions this router holds."""
        return sum(1 for owner in self._table if owner == self.self_id)

    def seen(self, member_id: str, now: float) -> None:
        """A sighting of ``member_id`` (its refresh reached us)."""
        if member_id == self.self_id:
            self._members[member_id].seen_at = now
            return
        known = self._members.get(member_id)
        if known is not None:
            known.seen_at = max(known.seen_at, now)
            return
        self._members[member_id] = Member(member_id, now)
        self._recompute(now, {})

    def seen_all(self, now: float) -> None:
        """This router hears again after it could not: count every known router as seen
        at ``now``, and its own partitions as taken over at ``now`` (the others may
        have held them meanwhile, and heard their contacts)."""
        for member in self._members.values():
            member.seen_at = max(member.seen_at, now)
        self._settled_at = now + SETTLE_AFTER_GAP
        held = {p: now for p, owner in enumerate(self._table) if owner == self.self_id}
        if held and self._listener is not None:
            self._listener(Handover(held, frozenset()))

    def left(self, member_id: str, last_seen: float) -> None:
        """``member_id`` stopped (a goodbye, or its entry expired) at ``last_seen``."""
        if member_id == self.self_id or member_id not in self._members:
            return
        del self._members[member_id]
        self._recompute(last_seen, {member_id: last_seen})

    def expire(self, now: float) -> list[str]:
        """Drop routers silent for ``ttl`` seconds; returns their ids."""
        # Their partitions count from when they may last have answered, not from
        # their last sighting (``answered_until``): never later than now.
        gone = {
            m.member_id: m.seen_at + self.ttl
            for m in self._members.values()
            if m.member_id != self.self_id and now - m.seen_at > self.ttl
        }
        for member_id in gone:
            del self._members[member_id]
        if gone:
            self._recompute(now, gone)
        return sorted(gone)

    def resign(self) -> None:
        """This router is stopping: hand every partition to the others, if there are any
        (heartbeats that still reach it are then forwarded to the new holders)."""
        others = [m for m in self._members if m != self.self_id]
        if others:
            self._resigned = True
            self._recompute(0.0, {})

    def _recompute(self, now: float, dead: dict[str, float]) -> None:
        members = [m for m in self._members if not (self._resigned and m == self.self_id)]
        before, self._table = self._table, owner_table(members)
        self.version += 1
        gained: dict[int, float] = {}
        lost: set[int] = set()
        for partition, (old, new) in enumerate(zip(before, self._table, strict=True)):
            if old == new:
                continue
            if new == self.self_id:
                # A live previous holder still has the contacts (and forwards);
                # a dead one may have answered until ``answered_until``.
                gained[partition] = dead.get(old, now)
            elif old == self.self_id:
                lost.add(partition)
        if (gained or lost) and self._listener is not None:
            self._listener(Handover(gained, frozenset(lost)))
