"""The no-false-death rule: an instance its owner keeps heard is never reported dead.

An answered contact proves the router heard the owner at some moment between
the op's invoke and completion, so it keeps the instance alive at least until
invoke + unhealthy_after. Spans of such certainty are built per instance id;
a report of UNHEALTHY, OFFLINE or removal whose decision must lie inside one
is false, unless a trouble window explains it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.chaos.checker_model import (
    BAD_STATUSES,
    History,
    InstanceOps,
    Key,
    Verdict,
    Violation,
    at,
    is_contact,
    key_of,
    owner_of,
)
from tests.chaos.checker_time import Span, Window, covering, first_overlap, merge
from tests.chaos.history import Record


@dataclass(frozen=True, slots=True)
class DeathReport:
    """Someone said an instance is dead; the decision was taken within [lo, hi]."""

    key: Key
    source: str  # "event", "log" or "view"
    router: str | None  # None for an event: whichever router published it is unknown
    lo: float
    hi: float
    record: Record
    # A view's: every write committed before this moment is in it (None: unknown).
    fresh: float | None = None

    @property
    def reporter(self) -> str:
        """Who said it, for a human."""
        return self.source if self.router is None else f"{self.source} of {self.router}"


def alive_spans(history: History, ops: InstanceOps) -> list[Span]:
    """When the instance was certainly heard recently enough that no router may judge it dead.

    Each answered contact c protects [c.complete, c.invoke + unhealthy_after -
    contact_margin], cut at its owner's next possible deregister. Consecutive
    contacts whose gap (the later's completion minus the earlier's invoke)
    fits in that bound therefore join into one span.
    """
    bounds = history.bounds
    reach = bounds.unhealthy_after - bounds.contact_margin
    spans = []
    for contact in ops.ops:
        if not is_contact(contact):
            continue
        leave = ops.first_leave(owner_of(contact), at(contact, "invoke"))
        lo, hi = at(contact, "complete"), min(at(contact, "invoke") + reach, leave)
        if hi > lo:
            spans.append(Span(lo, hi, (contact,)))
    return merge(spans)


def death_reports(history: History) -> list[DeathReport]:
    """Every event, router log line and REST view saying an instance is dead.

    An event or a log line reports a decision taken at most ``report_lag``
    before it was written (an event, before the harness stalls it was read
    after); a view may show one ``propagation`` older.
    """
    lag = history.bounds.report_lag
    reports = []
    for event in history.events:
        if event.get("status") in BAD_STATUSES or event.get("event") == "removed":
            t = at(event, "t")  # when the harness read it: later if it was stalled
            lo = history.received_from(t) - lag
            reports.append(DeathReport(key_of(event), "event", None, lo, t, event))
    for line in history.logs:
        fields = line.get("fields") or {}
        removed = line.get("event") == "instance_removed"
        changed = line.get("event") == "instance_status_changed"
        if removed or (changed and fields.get("status") in BAD_STATUSES):
            t = at(line, "t")
            reports.append(DeathReport(key_of(fields), "log", line["router"], t - lag, t, line))
    for router, shots in history.shots.items():
        for shot in shots:
            lo = shot.lo - history.bounds.propagation
            fresh = history.fresh_since(shot)
            for key, status in shot.listing.items():
                if status in BAD_STATUSES:
                    reports.append(DeathReport(key, "view", router, lo, shot.hi, shot.view, fresh))
    return reports


def _version(record: Record) -> int | None:
    """The instance version an event carries, or a contact's reply showed."""
    if record["type"] == "event":
        value = record.get("version")
    else:
        reply = record.get("reply")
        instance = reply.get("instance") if isinstance(reply, dict) else None
        value = instance.get("version") if isinstance(instance, dict) else None
    return value if type(value) is int else None


def decided_by(report: DeathReport, span: Span, lag: float) -> DeathReport:
    """``report`` with its decision no later than the first contact that saw its version.

    Within one span the instance is never removed, so its versions only grow:
    a contact whose reply shows the event's version or a later one was answered
    after the change (an event delivered late must not look like a false one).
    """
    version = _version(report.record) if report.source == "event" else None
    if version is None:
        return report
    seen = [at(c, "complete") for c in span.records if (_version(c) or -1) >= version]
    hi = min([report.hi, *seen])
    lo = min(report.lo, hi - lag)  # no later than the harness's stalls allowed
    return DeathReport(
        report.key, report.source, report.router, lo, hi, report.record, report.fresh
    )


def excuse(history: History, report: DeathReport) -> Window | None:
    """A trouble window explaining ``report``: of its router, or of any router for an event.

    A view shows a decision of whichever router holds the lease, one propagation
    later; and while its own router's cache lags (its staleness, unless the view is
    proven fresh enough) an older one. A lagging cache catches up within
    propagation of its staleness's end: that needs no death_grace, which is for a
    deciding router's sweeps (its troubles are among every router's).
    """
    bounds = history.bounds
    lo, hi, lead = report.lo, report.hi, bounds.fault_lead
    if report.router is None:
        windows = history.all_troubles
    elif report.source == "log":
        windows = history.troubles(report.router)
    else:
        after = bounds.death_grace + bounds.propagation
        found = first_overlap(history.all_troubles, lo, hi, before=lead, after=after)
        if found is not None or (report.fresh is not None and report.fresh >= lo):
            return found
        stale = history.stale(report.router)
        return first_overlap(stale, lo, hi, before=lead, after=bounds.propagation)
    return first_overlap(windows, lo, hi, before=lead, after=bounds.death_grace)


def no_false_death(history: History) -> Verdict:
    """No router reports an instance dead while its owner was certainly heard.

    A report (event, router log line, REST view) of UNHEALTHY, OFFLINE or
    removal whose decision window lies inside one alive span is false, unless
    a trouble window (router paused, cut off from NATS or not sweeping by its
    own log, or any NATS node down) widened by death_grace overlaps it.
    """
    spans = {key: alive_spans(history, ops) for key, ops in history.instances.items()}
    violations: list[Violation] = []
    excused = 0
    reported: set[tuple[Key, float, str]] = set()
    for candidate in death_reports(history):
        span = covering(spans.get(candidate.key, []), candidate.lo, candidate.hi)
        if span is None:
            continue
        report = decided_by(candidate, span, history.bounds.report_lag)
        if covering([span], report.lo, report.hi) is None:
            continue
        if excuse(history, report) is not None:
            excused += 1
            continue
        if (report.key, span.lo, report.reporter) in reported:
            continue  # one violation per span and reporter is enough to replay it
        reported.add((report.key, span.lo, report.reporter))
        heard = [c for c in span.records if at(c, "complete") <= report.hi][-3:]
        service, instance = report.key
        violations.append(
            Violation(
                "no_false_death",
                f"{service}/{instance} reported dead by {report.reporter} at "
                f"{report.hi:.3f} while its owner's contacts were answered within "
                f"unhealthy_after - margin (last answered op {heard[-1]['id']})",
                [*heard, report.record],
            )
        )
    return violations, excused
