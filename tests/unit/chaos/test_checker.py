"""The chaos checker on hand-made histories: each invariant broken, each excuse honoured.

Every test that expects a violation asserts exactly which invariants were
reported, so a silent checker, or one that blames the wrong rule, fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chaos.checker import Report, check, main
from tests.chaos.history import Record
from tests.unit.chaos.histories import INSTANCE, SERVICE, Run, clean_run


def broken(report: Report) -> list[str]:
    """The invariants a report found broken, one entry per violation, sorted."""
    return sorted(v.invariant for v in report.violations)


def view_at(run: Run, router: str, t: float) -> Record:
    """``router``'s view taken at ``t``."""
    (view,) = [
        r for r in run.records if r["type"] == "view" and r["router"] == router and r["invoke"] == t
    ]
    return view


def drop_from_view(run: Run, router: str, t: float) -> None:
    """Make ``router``'s view taken at ``t`` list nothing."""
    view_at(run, router, t)["instances"] = []


# --- a clean run ---------------------------------------------------------------


def test_a_clean_run_breaks_nothing() -> None:
    report = check(clean_run().records)

    assert report.violations == []
    assert report.convergence_s == pytest.approx(0.55)  # the first views after 21
    assert report.counts["ops"]["heartbeat ok"] == 47
    assert report.counts["faults"] == {"router_pause": 1, "router_resume": 1}
    assert report.counts["events"] == {"deregistered": 1, "registered": 1}
    lines = report.summary().splitlines()
    assert lines[:5] == [
        "no_lost_ack: 0 violation(s); judged strictly 82% of the run",
        "one_owner: 0 violation(s); judged strictly 100% of the run",
        "no_false_death: 0 violation(s); judged strictly 70% of the run "
        "(80% for its events and log lines, views aside)",
        "well_formed: 0 violation(s); judged strictly 72% of the run",
        "convergence: 0 violation(s); judged over the quiet period, 20% of the run",
    ]
    assert "convergence time: 0.6 s (bound 15.0 s)" in lines
    # r1's pause (5 to 6 s) less the 1 s lead, then each rule's grace after it: a
    # stale view 2.5 s (propagation), a death 3 s + 2.5 s, an unanswered request 5 s.
    assert report.run_s == pytest.approx(25.0)  # from the first request, at 1
    assert report.excusable_s == pytest.approx(
        {
            "no_lost_ack": 4.5,
            "one_owner": 0.0,
            "no_false_death": 7.5,
            "no_false_death (events, log lines)": 5.0,
            "well_formed": 7.0,
            "convergence": 20.0,
        }
    )


def test_a_history_without_meta_is_refused() -> None:
    with pytest.raises(ValueError, match="no meta record"):
        check(clean_run().records[1:])


# --- no lost acknowledgement ---------------------------------------------------


def test_an_acknowledged_instance_missing_from_a_view_is_lost() -> None:
    run = clean_run()
    drop_from_view(run, "r1", 10.0)

    report = check(run.records)

    assert broken(report) == ["no_lost_ack"]
    (violation,) = report.violations
    ack, view = violation.records
    assert (ack["kind"], ack["reply"]["status"], view["router"]) == ("register", 201, "r1")
    assert "missing from r1's view at 10.000" in violation.message


def test_a_view_missing_it_while_its_router_is_cut_off_is_stale_not_lost() -> None:
    run = clean_run()
    drop_from_view(run, "r1", 10.0)
    run.log("r1", "nats_disconnected", 9.5)
    run.log("r1", "nats_reconnected", 9.8)

    report = check(run.records)

    assert report.violations == []
    assert report.excused["no_lost_ack"] == 1
    assert "no_lost_ack: 0 violation(s) (1 excused by a fault window)" in report.summary()


def test_a_view_missing_it_during_a_node_fault_is_stale_not_lost() -> None:
    run = clean_run()
    drop_from_view(run, "r0", 12.0)
    run.fault("node_kill", "n2", 3.0)
    run.fault("node_start", "n2", 4.0)  # + watch reset 10 s + propagation 2.5 s > 12

    assert check(run.records).violations == []


def test_a_view_may_lag_the_ack_by_the_propagation_delay() -> None:
    run = Run()
    run.live(1.0, 10.0)
    run.view("r0", 2.0)  # 1 s after the ack: within 2 s + one heartbeat interval
    run.view("r0", 4.0)  # 3 s after: lost
    run.finish(10.0, i1="ONLINE")

    report = check(run.records)

    assert broken(report) == ["no_lost_ack"]
    assert report.violations[0].records[1]["invoke"] == 4.0


def test_an_instance_deregistered_or_expired_may_leave_the_views() -> None:
    run = Run()
    run.live(1.0, 5.0)
    run.op("deregister", 5.0, 200)
    run.view("r0", 6.0)  # deregistered
    run.live(10.0, 12.0, session="B")
    run.view("r0", 21.5)  # last contact at 11.8 + 10 s (less 1.25 s slack): removed
    run.views(21.6, 23.0)
    run.end(23.0, quiet_from=21.0)

    assert check(run.records).violations == []


def test_a_session_silent_past_remove_after_owes_nothing_until_it_registers_again() -> None:
    # A CI run (issue 22's storm round): a raw actor abandoned its instance, which
    # was removed 10 s after its last contact; the same session registered it
    # again later. Its later heartbeats must not stretch the first ack's duty.
    run = Run()
    run.live(1.0, 3.0)  # last contact at 2.6: removable from 11.35
    run.view("r0", 12.0)  # removed: not listed
    run.live(13.0, 16.0)  # the same session, a new registration
    run.views(13.5, 16.0, i1="ONLINE")
    run.end(16.0, quiet_from=15.0)

    assert check(run.records).violations == []


def test_an_instance_taken_over_is_still_listed_and_still_owed() -> None:
    run = Run()
    run.live(1.0, 3.0)
    run.live(9.0, 20.0, session="B")  # after A's OFFLINE: fine
    run.views(2.0, 20.0, i1="ONLINE")
    drop_from_view(run, "r0", 15.0)
    run.end(20.0, quiet_from=16.0)

    report = check(run.records)

    assert broken(report) == ["no_lost_ack"]
    assert report.violations[0].records[0]["session"] == "B"


# --- one owner -----------------------------------------------------------------


def test_a_takeover_after_offline_is_fine() -> None:
    run = Run()
    run.live(1.0, 2.9)  # A's last heartbeat is invoked at 2.6
    run.op("register", 6.4, 201, session="B")  # 3.82 s later: OFFLINE, less the slack
    run.op("heartbeat", 8.0, 403)  # A is told
    run.op("heartbeat", 8.4, 200, session="B", version=2)
    run.finish(10.0, i1="ONLINE")

    assert check(run.records).violations == []


def test_a_takeover_before_offline_gives_two_owners() -> None:
    run = Run()
    run.live(1.0, 2.9)
    taken = run.op("register", 4.0, 201, session="B")  # 1.42 s after A's last contact
    run.finish(6.0, i1="ONLINE")

    report = check(run.records)

    assert broken(report) == ["one_owner"]
    contact, second = report.violations[0].records
    assert (contact["session"], contact["invoke"]) == ("A", pytest.approx(2.6))
    assert second is taken
    assert "offline_after = 5.0 s" in report.violations[0].message


@pytest.mark.parametrize("answered", [True, False])
def test_a_takeover_after_the_owner_may_have_deregistered_is_fine(answered: bool) -> None:
    run = Run()
    run.live(1.0, 2.9)
    if answered:
        run.op("deregister", 3.0, 200, version=2)
    else:  # it may have been applied all the same
        run.op("deregister", 3.0, outcome="timeout", took=2.0)
        run.fault("node_pause", "n0", 3.0)  # explains the timeout
        run.fault("node_resume", "n0", 4.0)
    run.op("register", 5.5, 201, session="B")
    run.finish(7.0, i1="ONLINE")

    assert check(run.records).violations == []


def test_a_deregister_overtaken_by_the_same_sessions_registration_gives_no_excuse() -> None:
    # The bdb981d history: the deregister timed out; the same session registered
    # again (200); a takeover 1.4 s later is two owners, whatever the late
    # deregister did (the router must refuse it as stale).
    run = Run()
    run.live(1.0, 2.9)
    run.op("deregister", 3.0, outcome="timeout", took=2.0)
    run.fault("node_pause", "n0", 3.0)
    run.fault("node_resume", "n0", 4.0)
    renewed = run.op("register", 5.2, 200, version=1)
    run.op("register", 6.6, 201, session="B")
    run.finish(9.0, i1="ONLINE")

    report = check(run.records)

    assert broken(report) == ["one_owner"]
    assert report.violations[0].records[0] is renewed


def test_a_stale_reply_to_a_deregister_is_well_formed() -> None:
    run = clean_run()
    error = {"code": "STALE_REQUEST", "message": "overtaken"}
    run.op("deregister", 12.0, 409, reply={"ok": False, "status": 409, "error": error})

    assert check(run.records).violations == []


def test_the_old_owner_heard_after_a_takeover_is_a_second_owner() -> None:
    run = Run()
    run.live(1.0, 2.9)
    taken = run.op("register", 8.0, 201, session="B")
    late = run.op("heartbeat", 8.5, 200)  # A still answered 200 after B's 201
    run.op("heartbeat", 9.0, 200)  # one report per session is enough
    run.finish(10.0, i1="ONLINE")

    report = check(run.records)

    assert broken(report) == ["one_owner"]
    assert report.violations[0].records == [taken, late]


def test_the_old_owner_may_own_it_again_after_registering_again() -> None:
    run = Run()
    run.live(1.0, 2.9)
    run.op("register", 8.0, 201, session="B")
    run.op("register", 14.0, 201)  # B went OFFLINE; A took it back
    run.op("heartbeat", 14.4, 200)
    run.finish(16.0, i1="ONLINE")

    assert check(run.records).violations == []


@pytest.mark.parametrize(("lost_reply", "broken_rules"), [(True, []), (False, ["one_owner"])])
def test_a_register_without_an_answer_may_have_made_its_session_the_owner(
    lost_reply: bool, broken_rules: list[str]
) -> None:
    # From a chaos history: a register that timed out had been applied, so
    # the session's next register was a retry, answered 200.
    run = Run()
    run.live(1.0, 2.9)
    run.op("register", 8.0, 201, session="B")  # B's last contact: OFFLINE from 13
    if lost_reply:
        run.op("register", 14.0, outcome="timeout", took=2.0)
        run.fault("node_pause", "n0", 14.0)
        run.fault("node_resume", "n0", 15.0)
    run.op("register", 16.5, 200, version=3)
    run.finish(18.0, i1="ONLINE")

    assert broken(check(run.records)) == broken_rules


# --- no false death ------------------------------------------------------------


def test_unhealthy_while_heartbeats_are_answered_is_a_false_death() -> None:
    run = clean_run()
    event = run.event(10.0, "UNHEALTHY", version=2)
    run.event(11.0, "UNHEALTHY", version=4)  # the same span and reporter: one violation

    report = check(run.records)

    assert broken(report) == ["no_false_death"]
    (violation,) = report.violations
    assert violation.records[-1] is event
    assert [r["kind"] for r in violation.records[:-1]] == ["heartbeat"] * 3
    assert "reported dead by event at 10.000" in violation.message


def test_unhealthy_during_a_router_pause_is_excused() -> None:
    run = clean_run()
    run.event(5.5, "UNHEALTHY", version=2)  # r1 is paused from 5 to 6

    report = check(run.records)

    assert report.violations == []
    assert report.excused["no_false_death"] == 1


def test_unhealthy_just_after_the_pause_is_within_the_grace() -> None:
    run = clean_run()
    run.event(8.9, "UNHEALTHY", version=2)  # resumed at 6: grace 2 x 0.5 + 2 = 3 s

    assert check(run.records).violations == []


def test_unhealthy_after_the_grace_is_a_false_death() -> None:
    run = clean_run()
    run.event(9.6, "UNHEALTHY", version=2)  # decided at 9.1 at the earliest

    assert broken(check(run.records)) == ["no_false_death"]


def test_a_log_line_is_excused_only_by_its_own_routers_trouble() -> None:
    run = clean_run()
    fields = {"service": SERVICE, "instance": INSTANCE, "status": "UNHEALTHY"}
    run.log("r1", "instance_status_changed", 5.5, **fields)  # r1 paused: excused
    line = run.log("r0", "instance_status_changed", 5.5, **fields)  # r0 was not

    report = check(run.records)

    assert broken(report) == ["no_false_death"]
    assert report.violations[0].records[-1] is line
    assert "log of r0" in report.violations[0].message


def test_a_log_line_is_excused_while_its_router_is_cut_off_from_nats() -> None:
    run = clean_run()
    run.log("r0", "nats_disconnected", 12.0)
    run.log("r0", "sweep_paused", 12.0)
    run.log("r0", "nats_reconnected", 13.0)
    run.log("r0", "sweep_resumed", 13.0)
    fields = {"service": SERVICE, "instance": INSTANCE, "status": "OFFLINE"}
    run.log("r0", "instance_status_changed", 14.0, **fields)
    run.log("r0", "instance_removed", 14.5, service=SERVICE, instance=INSTANCE)

    assert check(run.records).violations == []


def test_a_view_showing_it_unhealthy_is_a_false_death() -> None:
    run = clean_run()
    run.view("r0", 15.5, i1="UNHEALTHY")  # r1's pause + grace + propagation is over

    report = check(run.records)

    assert broken(report) == ["no_false_death"]
    assert "view of r0" in report.violations[0].message


def test_unhealthy_after_the_heartbeats_stop_is_true() -> None:
    run = Run()
    run.live(1.0, 5.0)  # last heartbeat invoked at 4.6
    run.event(7.2, "UNHEALTHY", version=2)  # 2.6 s later
    run.event(9.7, "OFFLINE", version=3)
    run.event(14.7, "OFFLINE", "removed", version=4)
    run.views(7.5, 9.5, i1="UNHEALTHY")
    run.views(10.0, 14.5, i1="OFFLINE")
    run.views(15.0, 17.0)
    run.end(17.0, quiet_from=15.0)

    assert check(run.records).violations == []


@pytest.mark.parametrize(("version", "broken_rules"), [(2, []), (None, ["no_false_death"])])
def test_a_late_event_older_than_an_answered_heartbeat_is_not_false(
    version: int | None, broken_rules: list[str]
) -> None:
    run = Run()
    run.live(1.0, 2.9)  # last contact invoked at 2.6: UNHEALTHY from 5.1
    run.op("heartbeat", 5.15, 200, version=3)  # ONLINE again: its reply shows version 3
    run.op("heartbeat", 5.55, 200, version=3)
    run.event(5.8, "UNHEALTHY", version=version)  # decided at 5.1, heard late
    run.finish(8.0, i1="ONLINE")

    # Without a version, nothing shows that the event is older than the heartbeat.
    assert broken(check(run.records)) == broken_rules


# --- well-formed ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status", "reply", "problem"),
    [
        ("heartbeat", 200, {"ok": True}, "lacks a bool ok and an int status"),
        ("heartbeat", 200, [1, 2], "not a map"),
        ("heartbeat", 201, None, "status 201 is not one the wire contract allows"),
        ("register", 409, {"ok": False, "status": 409}, "has no error.code"),
        (
            "deregister",
            409,
            {"ok": False, "status": 409, "error": {"code": "DUPLICATE_INSTANCE", "message": "x"}},
            "is DUPLICATE_INSTANCE, not STALE_REQUEST",
        ),
        ("register", 201, {"ok": False, "status": 201}, "contradicts status 201"),
        ("register", 201, {"ok": True, "status": 201}, "has no instance"),
        ("discover", 200, {"ok": True, "status": 200}, "no instances list"),
        ("discover", 404, None, "status 404 is not one the wire contract allows"),
    ],
)
def test_a_reply_that_breaks_the_contract_is_malformed(
    kind: str, status: int, reply: object, problem: str
) -> None:
    run = clean_run()
    op = run.op(kind, 12.0, status, reply=reply)  # from i1's owner, who lives on

    report = check(run.records)

    assert broken(report) == ["well_formed"]
    assert problem in report.violations[0].message
    assert report.violations[0].records == [op]


def test_a_registration_shed_during_a_storm_keeps_the_contract_and_only_then() -> None:
    run = clean_run()
    busy = {"code": "OVERLOADED", "message": "at capacity"}
    refused = {"ok": False, "status": 503, "error": busy, "retry_after": 1.0}
    run.op("register", 12.0, 503, session="C", instance="i2", reply=refused)
    run.records.append({"type": "storm", "t": 12.5, "start": 11.5, "replies": {"503": 9}})
    run.op("register", 40.0, 503, session="D", instance="i3", reply=refused)  # no storm

    report = check(run.records)

    assert broken(report) == ["well_formed"]
    assert "op" in report.violations[0].message
    assert report.violations[0].records[0]["invoke"] == 40.0


@pytest.mark.parametrize(
    ("code", "leaderless", "excused"),
    [
        ("STORE_UNAVAILABLE", True, True),
        ("STORE_UNAVAILABLE", False, False),
        ("OVERLOADED", True, False),
    ],
)
def test_store_unavailable_while_the_stream_has_no_leader_keeps_the_contract(
    code: str, leaderless: bool, excused: bool
) -> None:
    # Seed 415: the stream elected a leader for 7 s after a node came back from
    # isolation, past every fault's grace; every router answered 503 meanwhile.
    run = clean_run()
    for n, t in enumerate((30.0, 30.5, 31.0, 31.5)):
        run.sample(t, 20 + n, leader=None if leaderless and t in (30.5, 31.0) else "n0")
    reply = {"ok": False, "status": 503, "error": {"code": code, "message": "..."}}
    run.op("register", 31.2, 503, session="C", instance="i2", reply=reply)

    report = check(run.records)

    assert broken(report) == ([] if excused else ["well_formed"])


def test_a_timeout_while_the_stream_has_no_leader_is_excused_and_only_then() -> None:
    run = clean_run()
    run.sample(30.0, 20, leader=None)
    run.sample(30.5, 20)
    run.op("discover", 29.0, session=None, outcome="timeout", took=1.2)  # ends in it
    run.op("discover", 31.0, session=None, outcome="timeout", took=0.5)  # after it

    report = check(run.records)

    assert broken(report) == ["well_formed"]
    assert report.violations[0].records[0]["invoke"] == 31.0


def test_a_reply_about_another_instance_is_malformed() -> None:
    run = clean_run()
    reply = {"ok": True, "status": 200, "instance": {"service_name": SERVICE, "instance_id": "x"}}
    run.op("heartbeat", 12.0, 200, reply=reply)

    assert broken(check(run.records)) == ["well_formed"]


def test_a_timeout_during_a_node_fault_is_excused() -> None:
    run = clean_run()
    run.fault("node_pause", "n1", 12.0)
    run.fault("node_resume", "n1", 13.0)
    run.op("discover", 17.0, session=None, outcome="timeout", took=2.0)  # grace: 2 + 3 s

    report = check(run.records)

    assert report.violations == []
    assert report.excused["well_formed"] == 1


@pytest.mark.parametrize("outcome", ["timeout", "no_responders", "error"])
def test_an_unanswered_request_outside_any_fault_is_malformed(outcome: str) -> None:
    run = clean_run()
    op = run.op("discover", 12.0, session=None, outcome=outcome, took=2.0)

    report = check(run.records)

    assert broken(report) == ["well_formed"]
    assert report.violations[0].records == [op]
    assert f"{outcome} with no fault" in report.violations[0].message


def test_a_503_needs_a_fault_to_explain_it() -> None:
    run = clean_run()
    run.op("register", 12.0, 503, session="Z", instance="other")
    run.op("register", 5.5, 503, session="Z", instance="other")  # r1 paused: explained

    report = check(run.records)

    assert broken(report) == ["well_formed"]
    assert "answered 503 with no fault" in report.violations[0].message


def test_unknown_kinds_outcomes_and_undecodable_events_are_malformed() -> None:
    run = clean_run()
    run.op("discover", 12.0, 200, session=None, outcome="lost")
    run.op("discover", 12.5, 200, session=None)["kind"] = "teleport"
    run.records.append({"type": "event", "t": 13.0, "node": "n0", "raw": "b'\\xc1'"})

    report = check(run.records)

    assert broken(report) == ["well_formed"] * 3
    messages = " | ".join(v.message for v in report.violations)
    assert "unknown outcome 'lost'" in messages
    assert "unknown op kind 'teleport'" in messages
    assert "undecodable change event" in messages


# --- convergence ---------------------------------------------------------------


def test_views_that_still_differ_at_the_end_do_not_converge() -> None:
    run = clean_run()
    run.view("r1", 25.5, i1="ONLINE", i2="ONLINE")

    report = check(run.records)

    assert broken(report) == ["convergence"]
    assert report.convergence_s is None
    assert "svc/i1: r0 OFFLINE, r1 ONLINE" in report.violations[0].message
    assert "svc/i2: r0 absent, r1 ONLINE" in report.violations[0].message
    assert "never agreed" in report.summary()


def test_views_that_agree_only_after_the_bound_fail() -> None:
    run = clean_run()
    for t in (21.5, 22.5, 23.5, 24.5):
        view_at(run, "r1", t)["instances"][0]["status"] = "UNHEALTHY"  # r1 lags until 25.5

    report = check(run.records, convergence_bound=4.0)

    assert broken(report) == ["convergence"]
    assert report.convergence_s == pytest.approx(4.55)
    assert "agreed only 4.6 s after the quiet began (bound 4.0 s)" in report.violations[0].message
    assert check(run.records).violations == []  # the default bound is 15 s


def test_views_read_either_side_of_a_change_do_not_delay_convergence() -> None:
    run = clean_run()
    view_at(run, "r1", 23.5)["instances"] = []  # i1 removed just before r1 was read
    view_at(run, "r0", 24.5)["instances"] = []  # and seen by r0 a round later

    report = check(run.records)

    assert report.violations == []
    assert report.convergence_s == pytest.approx(0.55)


def test_a_long_disagreement_restarts_the_convergence_clock() -> None:
    run = clean_run()
    for t in (22.5, 23.5, 24.5):
        view_at(run, "r1", t)["instances"] = []

    report = check(run.records)

    assert report.violations == []
    assert report.convergence_s == pytest.approx(4.55)


def test_views_after_the_final_round_are_not_compared() -> None:
    run = clean_run()
    view_at(run, "r0", 25.5)["final"] = True
    view_at(run, "r1", 25.5)["final"] = True
    run.view("r1", 26.5)  # i1 gone from r1 as the clients leave, r0 not read again

    assert check(run.records).violations == []


def test_a_router_without_a_view_after_the_quiet_does_not_converge() -> None:
    run = clean_run()
    run.records = [r for r in run.records if not (r["type"] == "view" and r["invoke"] > 21)]
    run.view("r0", 22.0, i1="OFFLINE")

    report = check(run.records)

    assert broken(report) == ["convergence"]
    assert "no readable view of r1" in report.violations[0].message


def test_a_history_that_breaks_off_does_not_converge() -> None:
    run = clean_run()
    run.records = [r for r in run.records if r["type"] != "end"]

    report = check(run.records)

    assert broken(report) == ["convergence"]
    assert "no end record" in report.violations[0].message


# --- the command line ----------------------------------------------------------


def write(run: Run, path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in run.records), encoding="utf-8")
    return path


def test_the_command_line_exits_0_on_a_clean_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(write(clean_run(), tmp_path / "h.jsonl"))]) == 0
    assert "no_lost_ack: 0 violation(s)" in capsys.readouterr().out


def test_the_command_line_exits_1_and_prints_each_violation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = clean_run()
    run.event(10.0, "UNHEALTHY", version=2)

    assert main([str(write(run, tmp_path / "h.jsonl"))]) == 1
    out = capsys.readouterr().out
    assert "no_false_death: 1 violation(s)" in out
    assert "[no_false_death] svc/i1 reported dead by event" in out
    assert '"status": "UNHEALTHY"' in out


def test_the_module_runs_as_a_script(tmp_path: Path) -> None:
    run = clean_run()
    drop_from_view(run, "r0", 10.0)
    path = write(run, tmp_path / "h.jsonl")

    done = subprocess.run(
        [sys.executable, "-m", "tests.chaos.checker", str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[3],
    )

    assert done.returncode == 1, done.stderr
    assert "no_lost_ack: 1 violation(s)" in done.stdout
