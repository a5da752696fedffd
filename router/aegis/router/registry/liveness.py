"""Liveness: steady heartbeats kept in memory, and the sweep that applies the deadlines.

A steady heartbeat (``heard``) only moves its instance's contact in memory
and moves no deadline; when the stored contact is due its refresh, that write
is handed to ``write_later`` (the registry's recoveries). The sweep pops the
deadlines that came due from the engine's index: a key heard from since just
moves to its contact's deadline (``_heard_since``), and only the rest are
expired through the engine's compare-and-set (``_expire``), at most
``SWEEP_IN_FLIGHT`` writes at once and no faster than the expiry budget lets a
mass transition go (its tokens are taken as each write starts, so writes
slower than the budget are never held back by it).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from datetime import datetime

import structlog
from aegis.router.domain import InstanceKey, InstanceRecord
from aegis.router.metrics import EXPIRY_SLOWED, SWEEP_CHANGES
from aegis.router.registry.engine import Change, RegistryEngine
from aegis.router.registry.expiry_budget import ExpiryBudget
from aegis.wire.messages import InstanceStatus

log = structlog.get_logger("aegis.router.registry.liveness")

# Keys popped per turn of the event loop during a sweep: a mass expiry on the
# JetStream store goes out concurrently, and the loop gets a turn between batches.
SWEEP_BATCH = 64
# A key past the expiry budget is looked at again this much later (next sweep).
DEFERRED_FOR = 0.1
# Expiry writes in flight at once: a sliding window, not batches in lockstep,
# so a mass expiry runs at the store's throughput rather than its latency.
SWEEP_IN_FLIGHT = 512


class Liveness:
    """Takes steady heartbeats in memory and sweeps the deadlines of the leases held."""

    def __init__(
        self,
        engine: RegistryEngine,
        budget: ExpiryBudget | None = None,
        *,
        write_later: Callable[[InstanceKey, str], None],
    ) -> None:
        self._engine = engine
        # Where a steady heartbeat's due refresh goes: written in the background
        # (the registry's recoveries, Recoveries.defer).
        self._write_later = write_later
        self._store = engine.store
        self._leases = engine.leases
        self._deadlines = engine.deadlines
        self.timings = engine.timings
        self._refresh_after = engine.timings.refresh_after  # read on every heartbeat
        self._budget = budget or ExpiryBudget()
        self.expiry_slowed = False  # a mass transition is being slowed (expiry_budget)

    def heard(
        self,
        key: InstanceKey,
        session_id: str,
        at: float,
        partition: int | None = None,
        *,
        seq: int | None = None,
    ) -> InstanceRecord | None:
        """Take a steady heartbeat at ``at`` (epoch seconds) in memory only: the stored
        record (whose contact is now ``at``), or None, having changed nothing, when
        it must go to the store.

        ``partition`` is ``key``'s, if the caller has it already (the hot path
        hashes it once a request). A ``seq`` the record's own overtook is answered
        by the full heartbeat (409). A stored contact older than
        ``timings.refresh_after`` is rewritten through ``write_later``.
        """
        current = self._store.peek(key)
        if current is None:
            return None
        stored = current.record
        if stored.status is not InstanceStatus.ONLINE or stored.session_id != session_id:
            return None
        if seq is not None and stored.seq is not None and seq < stored.seq:
            return None
        timings = self.timings
        stored_at = stored.last_heartbeat_at.timestamp()
        leases = self._leases
        # alive_at is never before the last contact: a contact within
        # unhealthy_after settles it without the partition's floors (the common case).
        if (
            at - leases.last_contact(key, stored_at) >= timings.unhealthy_after
            and at - leases.alive_at(stored, partition) >= timings.unhealthy_after
        ):
            return None  # UNHEALTHY by age already: the recovery is news
        # No deadline moves: the sweep finds the contact when the old one comes
        # due (_heard_since), once per unhealthy_after instead of on every beat.
        leases.heard(key, at)
        if at - stored_at >= self._refresh_after:
            # The stored contact's refresh is news to no one waiting: written in the
            # background at the store's pace, so a wave of them (every instance of a
            # storm falls due together) never holds replies or takes the slow path.
            self._write_later(key, session_id)
        return stored

    async def sweep(self) -> int:
        """Apply the liveness deadlines that have passed; returns how many changed.

        Costs time in proportion to the instances due, not to the registry. A
        mass expiry keeps up to ``SWEEP_IN_FLIGHT`` writes going at once, and
        yields to the event loop every ``SWEEP_BATCH`` keys, so requests keep
        being served.
        """
        now = self._engine.now()
        slots = asyncio.Semaphore(SWEEP_IN_FLIGHT)
        running: set[asyncio.Task[bool]] = set()
        changed = 0

        async def expire(key: InstanceKey) -> bool:
            try:
                return await self._expire(key, now)
            finally:
                slots.release()

        def done(task: asyncio.Task[bool]) -> None:
            nonlocal changed
            running.discard(task)
            changed += not task.cancelled() and task.exception() is None and task.result()

        # Never more keys than the index holds: a key made due again in this
        # sweep waits for the next one.
        left = held = len(self._deadlines)
        expiring = 0  # keys handed to _expire (not those only heard since)
        deferred = 0  # keys past the expiry budget, left for the next sweep
        frozen = False
        at = now.timestamp()
        budget_at = at  # the clock as the budget last read it: moves on while writes wait
        while left > 0 and (batch := self._deadlines.pop_due(at, SWEEP_BATCH)):
            left -= len(batch)
            if expiring >= SWEEP_BATCH:
                # A mass expiry replaces many records at once, and CPython's full
                # collection would then scan them all in one go. Records hold no
                # reference cycles: exempt what lives now from cyclic-GC scans
                # (O(1)) instead of pausing the loop. The price: a cycle alive at
                # this moment and dropped later is never collected (rare: only
                # sweeps that expire more than a batch do it, not the steady ones
                # that find contacts).
                if not frozen:
                    # Young cycles are collected first (cheap: the young
                    # generations are small), since a frozen cycle never is.
                    gc.collect(1)
                    frozen = True
                gc.freeze()
            for key in batch:
                if self._heard_since(key, at):
                    continue
                # The slot first, then the token: a mass expiry whose writes take
                # longer than the budget's pace is spending no more than it earns,
                # so it must not be deferred to the next tick for tokens taken
                # before its writes could start.
                await slots.acquire()
                if not self._budget.take(budget_at, held):
                    budget_at = max(budget_at, self._engine.now().timestamp())
                    if not self._budget.take(budget_at, held):
                        slots.release()
                        self._deadlines.set(key, at + DEFERRED_FOR)
                        deferred += 1
                        continue
                expiring += 1
                task = asyncio.create_task(expire(key))
                running.add(task)
                task.add_done_callback(done)
            await asyncio.sleep(0)
        if running:
            await asyncio.wait(running)
        self._say_slowed(deferred, held)
        return changed

    def _say_slowed(self, deferred: int, held: int) -> None:
        """Log and flag when a mass transition starts and stops being slowed."""
        if deferred and not self.expiry_slowed:
            self.expiry_slowed = True
            EXPIRY_SLOWED.set(1)
            log.warning(
                "mass_expiry_slowed",
                deferred=deferred,
                held=held,
                per_second=self._budget.rate(held),
            )
        elif not deferred and self.expiry_slowed:
            self.expiry_slowed = False
            EXPIRY_SLOWED.set(0)
            log.info("mass_expiry_caught_up", held=held)

    def _heard_since(self, key: InstanceKey, at: float) -> bool:
        """Whether ``key``, due at ``at``, was heard from within ``unhealthy_after``
        after all; if so its deadline moves to that contact's.

        Steady heartbeats leave deadlines where they were (``heard``), so most
        keys a sweep pops need only this look, not an ``_expire``. A contact is
        heard only while the instance is ONLINE and forgotten when it leaves
        the live statuses, so a fresh one means an instance that is alive;
        should another router have marked it UNHEALTHY meanwhile, its real
        deadline (``offline_after``) is later still. The new deadline counts
        from that contact, never later than ``alive_at`` would put it: at worst
        the key is looked at again early, where ``_expire`` decides.
        """
        # Not asking whether the lease is still ours (a hash, much of this
        # look's cost): a key whose partition moved away is re-added at most once,
        # and its next look finds the contacts gone to the new holder, so
        # _expire drops it from the index (writing nothing: the holder's floors).
        heard = self._leases.contact(key)
        if heard is None:
            return False
        due = heard + self.timings.unhealthy_after
        if due <= at:
            return False
        self._deadlines.set(key, due)
        return True

    async def _expire(self, key: InstanceKey, now: datetime) -> bool:
        """Write what age did to one instance (nothing, if it did nothing)."""

        def change(seen: InstanceRecord | None) -> Change[None]:
            return Change(None, seen)

        try:
            _, wrote = await self._engine.apply(key, change, "expired", now)
        except Exception:
            # Not lost: try this key again on a later tick.
            log.exception("sweep_failed", service=key.service_name, instance=key.instance_id)
            self._deadlines.set(key, now.timestamp() + 1.0)
            return False
        SWEEP_CHANGES.inc(wrote)
        return wrote
