"""Views proven fresh: a router's watch revision against the stream's last sequence.

Before each view the harness reads the router's ``aegis_store_watch_revision``
(the view lists every change up to it) and it samples the registry stream's
last sequence twice a second (every write committed before a sample was asked
is at or below it). A view whose revision reaches a sample has every write
committed before that sample: it is judged whatever faults are near, and once
a view shows the watch caught up after a fault (and a write stored after the
fault in it), the fault's ``watch_reset`` tail ends there.

In ``clean_run`` i1's ack completes at 1.02 and every view lists it; here n2
is killed from 3 to 4, which (no node URLs: unknown) may cut off every router:
their views may lag until 4 + 10 s (watch_reset), + 2.5 s (propagation).
"""

from __future__ import annotations

import pytest

from tests.chaos.checker import check
from tests.chaos.history import Record
from tests.unit.chaos.histories import INSTANCE, ROUTERS, SERVICE, Run, clean_run


def killed_n2() -> Run:
    """``clean_run`` with n2 killed from 3 to 4."""
    run = clean_run()
    run.fault("node_kill", "n2", 3.0)
    run.fault("node_start", "n2", 4.0)
    return run


def view_at(run: Run, router: str, t: float) -> Record:
    (view,) = [
        r for r in run.records if r["type"] == "view" and r["router"] == router and r["invoke"] == t
    ]
    return view


def test_a_view_proven_to_have_the_acks_write_is_judged_whatever_the_faults() -> None:
    run = killed_n2()
    run.sample(0.5, 3)  # before the ack
    run.sample(11.5, 50)  # after it: the ack's write is at or below 50
    view = view_at(run, "r0", 12.0)
    view["instances"], view["revision"] = [], 50

    report = check(run.records)

    assert [v.invariant for v in report.violations] == ["no_lost_ack"]
    assert "every write committed by 11.500 (watch revision 50)" in report.violations[0].message


@pytest.mark.parametrize("revision", [None, 49], ids=["unknown", "below-the-sample"])
def test_a_view_not_proven_fresh_is_still_excused_by_the_fault(revision: int | None) -> None:
    run = killed_n2()
    run.sample(0.5, 3)
    run.sample(11.5, 50)
    view = view_at(run, "r0", 12.0)
    view["instances"], view["revision"] = [], revision

    report = check(run.records)

    assert report.violations == []
    assert report.excused["no_lost_ack"] == 1


@pytest.mark.parametrize(
    ("leader", "earlier"),
    [
        ("n2", None),  # the node faulted from 3 to 4 answered, within its 5 s grace
        ("n0", 60),  # below an earlier sample
        (None, None),  # who answered is unknown
    ],
    ids=["from-the-faulted-node", "below-an-earlier-one", "no-leader"],
)
def test_a_sample_that_may_be_stale_proves_nothing(leader: str | None, earlier: int | None) -> None:
    # Seen: an isolated node that had led the stream answered for 4 s after its
    # links came back with a sequence 214 below the real one.
    run = killed_n2()
    run.sample(0.5, 3)
    if earlier is not None:
        run.sample(8.0, earlier)
    run.sample(8.5, 50)["leader"] = leader
    view = view_at(run, "r0", 9.0)
    view["instances"], view["revision"] = [], 50

    report = check(run.records)

    assert report.violations == []
    assert report.excused["no_lost_ack"] == 1


def test_the_same_sample_from_a_true_leader_proves_the_view_fresh() -> None:
    run = killed_n2()
    run.sample(8.5, 50, leader="n1")
    view = view_at(run, "r0", 9.0)
    view["instances"], view["revision"] = [], 50

    assert [v.invariant for v in check(run.records).violations] == ["no_lost_ack"]


def caught_up_at_6(run: Run, revision: int = 46) -> None:
    """Samples after the kill (40 at 4.5, 45 at 5.5); both routers' views at 6 read
    ``revision`` first."""
    run.sample(4.5, 40)
    run.sample(5.5, 45)
    for router in ROUTERS:
        view_at(run, router, 6.0)["revision"] = revision


def test_a_view_showing_the_watch_caught_up_after_the_fault_ends_its_tail() -> None:
    run = killed_n2()
    caught_up_at_6(run)
    view_at(run, "r0", 9.0)["instances"] = []  # no revision: not proven itself

    report = check(run.records)

    assert [v.invariant for v in report.violations] == ["no_lost_ack"]
    assert "r0's view at 9.000, with no fault to explain it" in report.violations[0].message
    # Each router's staleness from 3 to 6 (not 14), less the lead, + propagation.
    assert report.excusable_s["no_lost_ack"] == pytest.approx(8.5 - 2.0)


def test_a_watch_that_received_nothing_stored_after_the_fault_keeps_its_tail() -> None:
    # A watch that lost its consumer still has every write made before the fault:
    # only one that received a later write is shown alive.
    run = killed_n2()
    caught_up_at_6(run, revision=40)
    view_at(run, "r0", 9.0)["instances"] = []

    report = check(run.records)

    assert report.violations == []
    assert report.excused["no_lost_ack"] == 1


def test_a_view_proven_fresh_showing_a_death_is_not_excused_by_its_staleness() -> None:
    run = killed_n2()
    run.sample(12.1, 60)
    # Decided in [12, 14.55]: after every trouble's grace (r1's pause: 6 + 3 + 2.5).
    shown = run.view("r0", 14.5, i1="UNHEALTHY")
    shown["revision"] = 60

    report = check(run.records)

    assert [v.invariant for v in report.violations] == ["no_false_death"]
    assert report.violations[0].records[-1] is shown


def test_a_view_not_proven_fresh_showing_a_death_is_excused_by_its_staleness() -> None:
    run = killed_n2()
    run.view("r0", 14.5, i1="UNHEALTHY")  # r0 may lag until 14 + 5.5

    report = check(run.records)

    assert report.violations == []
    assert report.excused["no_false_death"] == 1


def test_a_sweep_paused_for_two_reasons_resumes_for_each_apart() -> None:
    # Seen in a seed: paused for a disconnection, then for not hearing itself;
    # the first resume does not end the second pause.
    run = clean_run()
    run.log("r0", "sweep_paused", 12.0, reason="nats_disconnected")
    run.log("r0", "sweep_paused", 12.5, reason="not_hearing_itself")
    run.log("r0", "sweep_resumed", 13.0, reason="nats_disconnected")
    run.log("r0", "sweep_resumed", 18.0, reason="not_hearing_itself")
    fields = {"service": SERVICE, "instance": INSTANCE, "status": "UNHEALTHY"}
    run.log("r0", "instance_status_changed", 17.0, **fields)  # 13 + 3 s grace is past

    report = check(run.records)

    assert report.violations == []
    assert report.excused["no_false_death"] == 1


def test_a_view_lags_its_routers_staleness_by_propagation_not_by_death_grace() -> None:
    # r0 killed from 12 to 13: its views may lag until 13 + 2.5 s, and show a
    # decision 2.5 s older still; a view at 18.2 shows one taken after 15.7.
    run = clean_run()
    run.fault("router_kill", "r0", 12.0)
    run.fault("router_start", "r0", 13.0)
    run.view("r0", 15.0, i1="UNHEALTHY")  # may show one from before 13 + 2.5 s: excused
    late = run.view("r0", 18.2, i1="UNHEALTHY")

    report = check(run.records)

    assert [v.records[-1] for v in report.violations] == [late]
    assert report.excused["no_false_death"] == 1
