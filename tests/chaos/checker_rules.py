"""Two of the registry's promises, judged on a history: no lost ack, and one owner.

Each rule returns its violations and how many reports a fault window excused
(a run whose faults excuse everything proves little, so the count is shown).
docs/reliability.md states each rule and why its tolerances are what they are.
"""

from __future__ import annotations

from bisect import bisect_left

from tests.chaos.checker_model import (
    History,
    InstanceOps,
    Shot,
    Verdict,
    Violation,
    at,
    is_contact,
    owner_of,
    status_of,
)
from tests.chaos.checker_time import Span, first_overlap, merge
from tests.chaos.history import Record


def ack_duty(history: History, ops: InstanceOps, ack: Record) -> Span | None:
    """When the instance an ack acknowledged must show in every router's view.

    From the ack plus propagation, until its owner may have deregistered it, or
    the liveness rules may have removed it: remove_after after its last
    answered contact (less the lease floor's slack). A takeover keeps the id
    listed, so it does not end the duty. None if that leaves no time at all.
    """
    bounds = history.bounds
    owner = owner_of(ack)
    start = at(ack, "invoke")
    leave = ops.first_leave(owner, start)
    contacts = sorted(
        at(op, "invoke")
        for op in ops.ops
        if owner_of(op) == owner and is_contact(op) and start <= at(op, "invoke") < leave
    )
    removable_after = bounds.remove_after - bounds.takeover_slack
    last = start
    for contact in contacts:
        if contact - last >= removable_after:
            # Silent that long, it may have been removed: a later contact of the same
            # session comes from a registration of its own (an ack with its own duty).
            break
        last = contact
    span = Span(
        at(ack, "complete") + bounds.propagation,
        min(leave, last + removable_after),
        (ack,),
    )
    return span if span.hi > span.lo else None


def _proven_owed(history: History, ops: InstanceOps, duty: Span, shot: Shot) -> Record | None:
    """An ack of ``duty`` that ``shot`` must show whatever the faults: its own duty
    covers the view, and the view has every write committed after the ack (its
    watch revision is at or above the stream's last sequence asked later)."""
    fresh = history.fresh_since(shot)
    if fresh is None:
        return None
    for ack in duty.records:
        own = ack_duty(history, ops, ack)
        covers = own is not None and own.lo <= shot.lo and shot.hi <= own.hi
        if covers and at(ack, "complete") <= fresh:
            return ack
    return None


def no_lost_ack(history: History) -> Verdict:
    """Every acknowledged registration shows in every router's view while its duty lasts.

    A view is excused when it overlaps a window in which its router was paused,
    killed, cut off from NATS (its own log), or any NATS node was down, widened
    by the propagation delay after it ends; unless the view is proven to have
    every write committed after the ack (``History.fresh_since``).
    """
    bounds = history.bounds
    violations: list[Violation] = []
    excused = 0
    for key, ops in history.instances.items():
        acks = [op for op in ops.ops if op["kind"] == "register" and status_of(op) in (200, 201)]
        duties = merge([d for d in (ack_duty(history, ops, a) for a in acks) if d is not None])
        for router, shots in history.shots.items():
            starts = [shot.lo for shot in shots]
            for duty in duties:
                for shot in shots[bisect_left(starts, duty.lo) :]:
                    if shot.hi > duty.hi:
                        break
                    if key in shot.listing:
                        continue
                    proven = _proven_owed(history, ops, duty, shot)
                    if proven is None and first_overlap(
                        history.stale(router),
                        shot.lo,
                        shot.hi,
                        before=bounds.fault_lead,
                        after=bounds.propagation,
                    ):
                        excused += 1
                        continue
                    ack = proven or [a for a in duty.records if at(a, "complete") <= shot.lo][-1]
                    why = "with no fault to explain it"
                    if proven is not None:
                        why = (
                            f"though that view had every write committed by "
                            f"{history.fresh_since(shot):.3f} (watch revision {shot.revision})"
                        )
                    violations.append(
                        Violation(
                            "no_lost_ack",
                            f"{key[0]}/{key[1]} acknowledged {status_of(ack)} at "
                            f"{at(ack, 'complete'):.3f} (op {ack['id']}) is missing from "
                            f"{router}'s view at {shot.lo:.3f}, {why}",
                            [ack, shot.view],
                        )
                    )
                    break  # one report per router and duty: the first view that lost it
    return violations, excused


def _takeover_too_early(
    history: History, ops: InstanceOps, taken: Record
) -> list[tuple[Record, float]]:
    """Other sessions' last contacts that ``taken`` (a 201) came too soon after.

    For each other session, its last answered contact invoked before the 201
    completed: unless that session may have deregistered since, the 201 must
    complete at least offline_after (less the slack) after it.
    """
    bounds = history.bounds
    new_owner = owner_of(taken)
    done = at(taken, "complete")
    last: dict[str, Record] = {}
    for op in ops.ops:
        if owner_of(op) != new_owner and is_contact(op) and at(op, "invoke") < done:
            last[owner_of(op)] = op  # ops are in invoke order: the last one wins
    early: list[tuple[Record, float]] = []
    for owner, contact in last.items():
        gap = done - at(contact, "invoke")
        if gap >= bounds.offline_after - bounds.takeover_slack:
            continue
        if ops.first_leave(owner, at(contact, "invoke")) < done:
            continue  # the old owner may have left first: a takeover is fine then
        early.append((contact, gap))
    return early


def _answered_after_takeover(ops: InstanceOps, taken: Record) -> list[Record]:
    """200s to another session for ops invoked after the 201 ``taken`` completed.

    Only that session's own registration (a 201, or one without a definite
    answer, which may have been applied) can make it the owner again. One per
    session.
    """
    new_owner = owner_of(taken)
    found: dict[str, Record] = {}
    for op in ops.ops:
        owner = owner_of(op)
        if owner == new_owner or owner in found or status_of(op) != 200:
            continue
        if at(op, "invoke") <= at(taken, "complete"):
            continue
        if not ops.registered_between(owner, at(taken, "invoke"), at(op, "complete")):
            found[owner] = op
    return list(found.values())


def one_owner(history: History) -> Verdict:
    """No instance id is live under two sessions at once.

    A 201 to B must complete at least offline_after (less the slack) after
    every other session's last answered contact, unless that session may have
    deregistered since; and no other session gets a 200 for an op invoked
    after B's 201 completed, unless it may have registered again in between.
    """
    bounds = history.bounds
    violations: list[Violation] = []
    for key, ops in history.instances.items():
        for taken in (op for op in ops.ops if op["kind"] == "register" and status_of(op) == 201):
            for contact, gap in _takeover_too_early(history, ops, taken):
                violations.append(
                    Violation(
                        "one_owner",
                        f"{key[0]}/{key[1]} went to a new session with 201 (op {taken['id']}) "
                        f"{gap:.3f} s after the last answered contact (op {contact['id']}) of "
                        f"the session that held it; it may be taken over only after "
                        f"offline_after = {bounds.offline_after} s "
                        f"(slack {bounds.takeover_slack} s)",
                        [contact, taken],
                    )
                )
            for late in _answered_after_takeover(ops, taken):
                violations.append(
                    Violation(
                        "one_owner",
                        f"{key[0]}/{key[1]}: {late['kind']} (op {late['id']}) of the old "
                        f"session answered 200 after the instance went to a new session "
                        f"with 201 (op {taken['id']})",
                        [taken, late],
                    )
                )
    return violations, 0
