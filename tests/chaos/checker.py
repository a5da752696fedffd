"""The chaos checker: reads a run's history and reports each broken invariant.

    python -m tests.chaos.checker HISTORY.jsonl [--convergence-bound SECONDS]

prints the summary and every violation with the records involved, and exits
1 on any violation (0 otherwise). In code, ``check(records)`` gives a
:class:`Report`. The invariants are ``no_lost_ack``, ``one_owner``,
``no_false_death`` (checker_deaths.py), ``well_formed`` (checker_replies.py)
and ``convergence`` (checker_convergence.py); docs/reliability.md states each rule and its
tolerances.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos.checker_convergence import convergence
from tests.chaos.checker_deaths import no_false_death
from tests.chaos.checker_model import INVARIANTS, Bounds, History, Violation
from tests.chaos.checker_replies import well_formed
from tests.chaos.checker_rules import no_lost_ack, one_owner
from tests.chaos.checker_time import Span, merge
from tests.chaos.history import Record, read_history

__all__ = ["INVARIANTS", "Report", "Violation", "check", "main"]

# no_false_death judging events and router log lines only (not views): its own figure.
NO_FALSE_DEATH_REPORTS = "no_false_death (events, log lines)"


@dataclass
class Report:
    """What the checker found in one history."""

    violations: list[Violation]
    # Per group ("ops", "replies", "faults", "events", "views", "stalls": the harness's
    # own, by loop): how many of each kind.
    counts: dict[str, dict[str, int]]
    # From the quiet period's start (or the last fault) until every router's views
    # agreed for good; None if they never did.
    convergence_s: float | None
    bounds: Bounds
    # Per invariant: reports a fault window excused (a fault-heavy run proves less).
    excused: dict[str, int] = field(default_factory=dict)
    # Seconds of the run; per invariant, how many of them lay in a window (with
    # its grace) that the rule may excuse a report by: it judges the rest strictly.
    # Convergence is judged only from the quiet period on: its figure is the rest.
    run_s: float = 0.0
    excusable_s: dict[str, float] = field(default_factory=dict)

    def strict_share(self, invariant: str) -> float:
        """The share of the run's wall time in which ``invariant`` excused nothing."""
        if self.run_s <= 0:
            return 0.0
        return max(0.0, 1.0 - self.excusable_s.get(invariant, 0.0) / self.run_s)

    def count(self, invariant: str) -> int:
        """How many violations of ``invariant``."""
        return sum(1 for v in self.violations if v.invariant == invariant)

    def summary(self) -> str:
        """One line per invariant with its violation count, then the run's figures."""
        lines = []
        for invariant in INVARIANTS:
            line = f"{invariant}: {self.count(invariant)} violation(s)"
            if self.excused.get(invariant):
                line += f" ({self.excused[invariant]} excused by a fault window)"
            share = f"{100 * self.strict_share(invariant):.0f}%"
            if invariant == "convergence":
                line += f"; judged over the quiet period, {share} of the run"
            else:
                line += f"; judged strictly {share} of the run"
            if invariant == "no_false_death" and NO_FALSE_DEATH_REPORTS in self.excusable_s:
                reports = 100 * self.strict_share(NO_FALSE_DEATH_REPORTS)
                line += f" ({reports:.0f}% for its events and log lines, views aside)"
            lines.append(line)
        if self.convergence_s is None:
            lines.append("convergence time: none (the routers' views never agreed for good)")
        else:
            lines.append(
                f"convergence time: {self.convergence_s:.1f} s "
                f"(bound {self.bounds.convergence_bound:.1f} s)"
            )
        lines.append(
            f"run: {self.run_s:.1f} s; judged strictly: outside every fault window, "
            "widened by its grace, by which the rule may excuse a report"
        )
        for group, kinds in self.counts.items():
            shown = ", ".join(f"{kind} {n}" for kind, n in kinds.items()) or "none"
            lines.append(f"{group}: {shown}")
        return "\n".join(lines)


def tally(history: History) -> dict[str, dict[str, int]]:
    """Operations per kind and outcome (and per reply status), faults, events, views."""
    counts: dict[str, Counter[str]] = {
        name: Counter() for name in ("ops", "replies", "faults", "events", "views", "stalls")
    }
    for op in history.ops:
        counts["ops"][f"{op.get('kind')} {op.get('outcome')}"] += 1
        reply = op.get("reply")
        if op.get("outcome") == "ok" and isinstance(reply, dict):
            counts["replies"][f"{op.get('kind')} {reply.get('status')}"] += 1
    counts["faults"].update(str(f.get("kind")) for f in history.faults)
    counts["events"].update(str(e.get("event", "undecodable")) for e in history.events)
    counts["views"].update("error" if v.get("error") else "ok" for v in history.views)
    counts["stalls"].update(str(s.get("loop")) for s in history.stalls)
    return {name: dict(sorted(c.items())) for name, c in counts.items()}


def excusable_time(history: History) -> tuple[float, dict[str, float]]:
    """(run length from the first request, per invariant the seconds in which its rule
    may excuse a report).

    Each rule's windows, widened as the rule widens them, joined: no_lost_ack
    excuses a view in its router's staleness windows; no_false_death a report in
    any router's troubles (the widest: a view's, death_grace + propagation after)
    or a view in its router's staleness (propagation after), and, under
    NO_FALSE_DEATH_REPORTS, an
    event or log line in any router's troubles (death_grace after); well_formed
    an unanswered request in any fault window (fault_grace after), or one that
    met a stall of the harness (within twice its length of it). one_owner
    excuses nothing; convergence judges nothing before the quiet period.
    """
    bounds = history.bounds
    # From the workload's first request: the cluster's start-up judges nothing.
    start = min((float(op["invoke"]) for op in history.ops), default=float(history.meta["t"]))
    end = min(history.end_t, history.last_t)
    stale = [w for r in history.routers for w in history.stale(r)]
    faults = [w for windows in history.fault_windows.values() for w in windows]
    widened = {
        "no_lost_ack": (stale, bounds.propagation),
        "no_false_death": (history.all_troubles, bounds.death_grace + bounds.propagation),
        # The same rule for events and log lines alone, which no staleness excuses.
        NO_FALSE_DEATH_REPORTS: (history.all_troubles, bounds.death_grace),
        "well_formed": (faults, bounds.fault_grace),
    }
    excusable = {"one_owner": 0.0}
    for invariant, (windows, after) in widened.items():
        spans = [Span(w.start - bounds.fault_lead, w.end + after, ()) for w in windows]
        if invariant == "no_false_death":  # a view lagging its own router's staleness
            spans += [
                Span(w.start - bounds.fault_lead, w.end + bounds.propagation, ()) for w in stale
            ]
        if invariant == "well_formed":
            # A timeout a harness stall explains: its budget under twice the stalls that
            # ate it, so its wait within twice the stall's length of it (and never more
            # than half a client timeout: no budget is longer).
            half = bounds.client_timeout / 2
            for stall in history.harness_stalls:
                near = min(2 * (stall.hi - stall.lo), half)
                spans.append(Span(stall.lo - near, stall.hi + near, ()))
        spans = [Span(max(start, s.lo), min(end, s.hi), ()) for s in spans]
        excusable[invariant] = sum(s.hi - s.lo for s in merge([s for s in spans if s.hi > s.lo]))
    quiet = history.end.get("quiet_from") if history.end is not None else None
    excusable["convergence"] = end - start if quiet is None else max(0.0, float(quiet) - start)
    return end - start, excusable


def check(records: list[Record], *, convergence_bound: float | None = None) -> Report:
    """Judge a history (``read_history``'s records) against every invariant.

    ``convergence_bound`` (seconds) overrides the default, max(15 s,
    remove_after + unhealthy_after + propagation). ValueError if the history
    has no ``meta`` record.
    """
    history = History.of(records, convergence_bound=convergence_bound)
    violations: list[Violation] = []
    excused: dict[str, int] = {}
    for name, rule in (
        ("no_lost_ack", no_lost_ack),
        ("one_owner", one_owner),
        ("no_false_death", no_false_death),
        ("well_formed", well_formed),
    ):
        found, excused[name] = rule(history)
        violations += found
    found, took = convergence(history)
    run_s, excusable_s = excusable_time(history)
    return Report(
        violations + found, tally(history), took, history.bounds, excused, run_s, excusable_s
    )


def main(argv: list[str] | None = None) -> int:
    """The command line: print the summary and each violation; 1 if there is any."""
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.checker", description=__doc__)
    parser.add_argument("history", type=Path, help="a history.jsonl written by the harness")
    parser.add_argument("--convergence-bound", type=float, default=None, metavar="SECONDS")
    args = parser.parse_args(argv)
    report = check(read_history(args.history), convergence_bound=args.convergence_bound)
    print(report.summary())
    for violation in report.violations:
        print(f"\n[{violation.invariant}] {violation.message}")
        for record in violation.records:
            print("  " + json.dumps(record, sort_keys=True, default=str))
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
