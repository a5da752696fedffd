"""Many chaos runs, one seed after another, at CI length; one line per seed.

    python -m tests.chaos.seeds --seeds 20 [--first 1] [--duration 40] [--out DIR]
        [--routers 3] [--no-partitions] [--quiet-gap LOW HIGH]

Each run is ``python -m tests.chaos.run``'s (same defaults; the duration is
the CI test's), its history in ``DIR/seed-N``. Each line gives the seed, its
violations by invariant, the share of the run each invariant judged strictly,
and the faults injected by kind; a run the harness could not finish says so.
Exit code: 0 if no run had a violation, 1 if some had, 2 if the harness failed
in any run (the others still run).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from .checker import INVARIANTS, NO_FALSE_DEATH_REPORTS, Report, check
from .cluster import RoutesError
from .history import read_history
from .nemesis import HarnessError
from .run import CI_DURATION, RunConfig, RunResult, add_schedule_options, by_kind, run_chaos

# Short names, so a line fits a terminal.
SHORT = {
    "no_lost_ack": "ack",
    "one_owner": "owner",
    "no_false_death": "death",
    "well_formed": "form",
    "convergence": "conv",
}


def line(seed: int, result: RunResult, report: Report) -> str:
    """One seed's line: violations, strict shares, faults."""
    found = ", ".join(f"{SHORT[i]} {report.count(i)}" for i in INVARIANTS if report.count(i))
    strict = " ".join(f"{SHORT[i]} {100 * report.strict_share(i):.0f}%" for i in INVARIANTS)
    strict += f" (death events/logs {100 * report.strict_share(NO_FALSE_DEATH_REPORTS):.0f}%)"
    return (
        f"seed {seed}: violations {len(report.violations)}"
        + (f" ({found})" if found else "")
        + f" | strict {strict} | faults {by_kind(result.injected)}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the seeds, print a line as each ends; the exit code says how they went."""
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.seeds", description=__doc__)
    parser.add_argument("--seeds", type=int, required=True, help="how many seeds")
    parser.add_argument("--first", type=int, default=1, help="the first seed")
    parser.add_argument("--duration", type=float, default=CI_DURATION, help="seconds of faults")
    parser.add_argument("--out", type=Path, default=None, help="folder for the runs")
    parser.add_argument("--routers", type=int, choices=(2, 3), default=3)
    add_schedule_options(parser)
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="chaos-seeds-"))
    lines, worst = [], 0
    for seed in range(args.first, args.first + args.seeds):
        config = RunConfig(
            seed=seed,
            duration=args.duration,
            out=out / f"seed-{seed}",
            routers=args.routers,
            partitions=args.partitions,
            quiet_gap=(args.quiet_gap[0], args.quiet_gap[1]),
            storm=args.storm,
        )
        try:
            result = asyncio.run(run_chaos(config))
        except (HarnessError, RoutesError) as exc:
            lines.append(f"seed {seed}: harness failed: {exc}")
            worst = 2
        else:
            report = check(read_history(result.history))
            lines.append(line(seed, result, report))
            worst = max(worst, 1 if report.violations else 0)
        print(f"### {lines[-1]}", flush=True)
    print(f"\n{args.seeds} seeds, histories under {out}:")
    print("\n".join(lines))
    return worst


if __name__ == "__main__":
    sys.exit(main())
