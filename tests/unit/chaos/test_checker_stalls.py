"""The harness's own stalls: a timeout they explain is not the registry's, and only then.

Under load from other processes the harness's event loops (its clients' own,
and the proxies' that relay every link) can run late by tenths of a second.
A request whose budget such a stall ate times out in the harness: the checker
excuses a timeout when the stalls at the ends of its wait (holding the request
back, or holding the deadline) left the registry less than half its budget.

In ``clean_run`` nothing is faulted after r1's pause (5 to 6 s, grace until
11 s); every op here comes later.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.chaos.checker import check
from tests.support.stalls import LoopStalls
from tests.unit.chaos.histories import Run, clean_run

# The SDK's heartbeat to the holder's own subject waits 0.25 s, then tries the shared one.
HOLDER_BUDGET = 0.25


def sdk_timeout(invoke: float, late: float = 0.0) -> dict[str, object]:
    """A holder-subject heartbeat that timed out, its end recorded ``late`` after its budget."""
    run_op = {"outcome": "timeout", "took": HOLDER_BUDGET + late, "budget": HOLDER_BUDGET}
    return {"kind": "heartbeat", "invoke": invoke, **run_op}


def test_a_timeout_whose_deadline_fell_in_a_harness_stall_is_not_the_registrys() -> None:
    run = clean_run()
    run.op(session="B", instance="i2", **sdk_timeout(12.0, late=0.05))  # type: ignore[arg-type]
    run.stall(12.1, 12.3)  # from 0.1 s into the wait: the registry had 0.1 s of 0.25

    report = check(run.records)

    assert report.violations == []
    assert report.excused["well_formed"] == 1
    assert report.counts["stalls"] == {"harness": 1}


def test_a_stall_of_the_proxies_holding_the_request_back_explains_it_too() -> None:
    run = clean_run()
    run.op(session="B", instance="i2", **sdk_timeout(12.0))  # type: ignore[arg-type]
    run.stall(11.95, 12.2, loop="proxies")  # the request left at 12.2: 0.05 s of 0.25

    assert check(run.records).violations == []


def test_a_stall_ending_within_a_tick_of_the_deadline_holds_it() -> None:
    # Seed 2: the proxies' loop stalled from 0.084 s into the wait to 0.225 s, and
    # again from 0.275 s: replies piled up meanwhile were still being relayed when
    # the 0.25 s deadline came. What a stall holds back is through only by the
    # next tick (0.05 s after it ended).
    run = clean_run()
    run.op(session="B", instance="i2", **sdk_timeout(12.0))  # type: ignore[arg-type]
    run.stall(12.084, 12.225, loop="proxies")

    assert check(run.records).violations == []


def test_a_timeout_without_a_stall_is_still_a_violation() -> None:
    run = clean_run()
    op = run.op(session="B", instance="i2", **sdk_timeout(12.0))  # type: ignore[arg-type]
    run.stall(14.0, 14.3)  # elsewhere

    report = check(run.records)

    assert [v.invariant for v in report.violations] == ["well_formed"]
    assert report.violations[0].records == [op]
    assert "timeout with no fault" in report.violations[0].message


@pytest.mark.parametrize(
    ("budget", "stall"),
    [
        (2.0, (13.7, 14.2)),  # holds a 2 s deadline (at 14), but the registry had 1.7 s
        # Inside the wait, and caught up a tick (0.05 s) later: a reply then was read
        # by 12.2, before the deadline at 12.25.
        (HOLDER_BUDGET, (12.05, 12.15)),
    ],
    ids=["too-short-for-the-budget", "inside-the-wait"],
)
def test_a_stall_that_could_not_have_eaten_the_budget_explains_nothing(
    budget: float, stall: tuple[float, float]
) -> None:
    run = clean_run()
    op = run.op(
        "heartbeat",
        12.0,
        session="B",
        instance="i2",
        outcome="timeout",
        took=budget,
        budget=budget,
    )
    run.stall(*stall)

    report = check(run.records)

    assert [v.invariant for v in report.violations] == ["well_formed"]
    assert report.violations[0].records == [op]
    assert "the harness stalled" in report.violations[0].message


@pytest.mark.parametrize("answer", [{"outcome": "no_responders"}, {"status": 503}])
def test_a_stall_explains_a_timeout_only_not_an_answer(answer: dict[str, object]) -> None:
    run = clean_run()
    run.op("heartbeat", 12.0, session="B", instance="i2", budget=HOLDER_BUDGET, **answer)  # type: ignore[arg-type]
    run.stall(12.0, 12.5)

    assert [v.invariant for v in check(run.records).violations] == ["well_formed"]


def test_a_stall_counts_against_well_formeds_strict_share_only() -> None:
    plain = check(clean_run().records)
    run = clean_run()
    run.stall(14.0, 14.3)

    report = check(run.records)

    # The stall and the tick after it (0.35 s), and within twice that of it each side:
    # a budget it could eat is under 0.7 s.
    assert report.excusable_s["well_formed"] == pytest.approx(
        plain.excusable_s["well_formed"] + 0.35 + 2 * 0.7
    )
    assert report.excusable_s["no_false_death"] == plain.excusable_s["no_false_death"]


async def test_the_loop_watch_records_a_stall_with_when_it_began_and_ended() -> None:
    stalls = LoopStalls("harness", tick=0.02, threshold=0.1)
    task = asyncio.create_task(stalls.run())
    await asyncio.sleep(0.05)
    before = time.time()
    time.sleep(0.3)  # noqa: ASYNC251 (the stall measured: the loop runs nothing meanwhile)
    await asyncio.sleep(0.05)
    task.cancel()

    (stall,) = [s for s in stalls.records() if s["late"] >= 0.2]
    assert stall["type"] == "stall"
    assert stall["loop"] == "harness"
    assert before - 0.05 <= stall["start"] <= before + 0.03
    assert stall["end"] == pytest.approx(stall["start"] + stall["late"])


def test_an_event_read_after_a_harness_stall_may_have_been_decided_before_it() -> None:
    # i1 falls silent after 4.6 (protected until 6.1) and is heard again from 10. An
    # UNHEALTHY event read at 10.6 looks decided within [10.1, 10.6], while i1 was
    # protected; but the harness read nothing from 8 to 10.55: it may have come then,
    # decided while i1 was silent.
    run = Run()
    run.live(1.0, 5.0)
    run.live(10.0, 14.0)
    run.views(2.0, 15.0, i1="ONLINE")
    run.event(10.6, "UNHEALTHY", version=2)
    run.end(15.5, quiet_from=14.0)

    assert [v.invariant for v in check(run.records).violations] == ["no_false_death"]

    run.stall(8.0, 10.55)

    assert check(run.records).violations == []
