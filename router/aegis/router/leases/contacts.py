"""Leases: the contacts this router heard but did not write, and what it may assume.

A steady heartbeat only moves an instance's contact here, in memory. The
store's ``last_heartbeat_at`` is refreshed at most once per
``Timings.refresh_after``, so an ONLINE instance's last contact is the later
of what the store says and what this router heard (``heard_at``).

Liveness counts from ``alive_at``: that contact, or a floor if later (a live
instance's contacts may have died with another router, or be in its memory):
for a partition this router holds, when it took it over (the last moment the
previous holder may have answered from memory: see ``membership.Handover``)
or started; for another router's partition, the last moment that router may
have answered (``Membership.answered_until``, never later than now: it vouches
for the instances it lets stay ONLINE). A router that cannot hear itself, or is
behind its requests (``holding_back``: the sweeper's pause), counts every live
instance alive now.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aegis.router.domain import InstanceKey, InstanceRecord
from aegis.router.leases.membership import Handover, Membership, partition_of
from aegis.wire.messages import InstanceStatus


class Leases:
    """Contacts heard and partition floors, over the membership's partition table."""

    def __init__(
        self, membership: Membership, since: float = 0.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.membership = membership
        self._heard: dict[InstanceKey, float] = {}
        self._floors: dict[int, float] = {}
        self._since = since  # the floor of every partition: when this router started
        self._clock = clock
        # True while the sweeper judges no deadline (the router is behind its own
        # requests, or within the grace after): a heartbeat then read must not find
        # its instance dead by age either, since its earlier ones may be unread.
        self.holding_back: Callable[[], bool] = lambda: False

    def hearing_from(self, at: float) -> None:
        """This router hears heartbeats from ``at`` on (it has just begun to answer
        them): every partition it holds counts its instances alive from there."""
        self._since = max(self._since, at)

    def holds(self, key: InstanceKey) -> bool:
        """Whether this router holds ``key``'s lease (and so sweeps it)."""
        return self.membership.holds(key)

    def heard(self, key: InstanceKey, at: float) -> None:
        """Contact from ``key``'s owner at ``at`` (epoch seconds), not written anywhere."""
        self._heard[key] = at

    def forget(self, key: InstanceKey) -> None:
        """``key`` is gone or OFFLINE: its heard contact no longer counts."""
        self._heard.pop(key, None)

    def contact(self, key: InstanceKey) -> float | None:
        """The last contact heard here from ``key``'s owner, if any (epoch seconds)."""
        return self._heard.get(key)

    def last_contact(self, key: InstanceKey, stored_at: float) -> float:
        """An ONLINE instance's last contact: heard here, or ``stored_at`` if later."""
        heard = self._heard.get(key)
        return heard if heard is not None and heard > stored_at else stored_at

    def heard_at(self, record: InstanceRecord, key: InstanceKey | None = None) -> float:
        """``record``'s last contact, heard here or stored (epoch seconds); ``key`` is its
        key, if the caller has it already."""
        at = record.last_heartbeat_at.timestamp()
        # UNHEALTHY too: a recovery heard while its write waits (recoveries.py).
        if record.status is not InstanceStatus.OFFLINE:
            heard = self._heard.get(record.key if key is None else key)
            if heard is not None and heard > at:
                return heard
        return at

    def alive_at(
        self, record: InstanceRecord, partition: int | None = None, key: InstanceKey | None = None
    ) -> float:
        """Where ``record``'s liveness deadlines count from (epoch seconds); ``partition``
        and ``key`` are its key's and its key, if the caller has them already.

        The floors hold for an OFFLINE record too: one that went OFFLINE by age
        counted from a floor (its contacts died with another router), and its
        removal must count from the same moment, not from the older contact in
        the store, which could remove it on the very next sweep.
        """
        at = self.heard_at(record, key)
        now = self._clock()
        if not self.membership.hearing(now) or self.holding_back():
            # This router cannot hear itself (or has not read what it was sent), so
            # neither the contacts nor the sightings it has are current: it takes
            # nobody for dead by age (no takeover of a live registration, no
            # expiry) until it hears again.
            return max(at, now)
        if partition is None:
            partition = partition_of(record.key if key is None else key)
        holder = self.membership.holder_of(partition)
        if holder == self.membership.self_id:
            floor = self._floors.get(partition, self._since)
        else:
            # Not later than now: a live holder's contacts are its own to judge.
            floor = min(self.membership.answered_until(holder), now)
        return max(at, floor, self._since)

    def take(self, handover: Handover) -> None:
        """Apply a handover: floors for gained partitions, none for lost ones."""
        for partition in handover.lost:
            self._floors.pop(partition, None)
        for partition, floor in handover.gained.items():
            self._floors[partition] = max(floor, self._floors.get(partition, 0.0))

    @property
    def heard_count(self) -> int:
        """How many contacts are held in memory only."""
        return len(self._heard)
