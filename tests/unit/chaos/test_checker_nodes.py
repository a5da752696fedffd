"""The checker's node faults: one excuses a router only if it could have cut that router off.

A NATS node fault explains a router's report when the router was connected to
that node (its log's ``router_ready`` / ``nats_reconnected`` ``server``, named
through the meta record's ``node_urls``), when the node led a stream every
router uses (the fault's ``leaders``), or when either is unknown (older
histories: then every node fault excuses every router, as before).

In each history r0 is on n0 and r1 on n1 from the start; i1 is heartbeated
until 20 (``clean_run``), and n2, which no router is on, is frozen from 12 to
13. A report at 13.5 lies within that window's 3 s grace.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.chaos.checker import check
from tests.chaos.history import Record
from tests.unit.chaos.histories import INSTANCE, SERVICE, Run, clean_run

UNHEALTHY = {"service": SERVICE, "instance": INSTANCE, "status": "UNHEALTHY"}


def placed_run(node: str = "n2", **fault: Any) -> Run:
    """``clean_run`` with the routers on their nodes, and ``node`` frozen from 12 to 13."""
    run = clean_run()
    run.name_nodes()
    run.connect("r0", "n0", 0.5)
    run.connect("r1", "n1", 0.5)
    run.fault("node_pause", node, 12.0, **fault)
    run.fault("node_resume", node, 13.0)
    return run


def deaths(run: Run) -> tuple[list[Record], int]:
    """The records of each no_false_death violation, and how many reports were excused."""
    report = check(run.records)
    assert {v.invariant for v in report.violations} <= {"no_false_death"}
    return [v.records[-1] for v in report.violations], report.excused["no_false_death"]


def test_a_fault_on_a_node_no_router_was_on_and_that_led_nothing_excuses_no_log_line() -> None:
    run = placed_run(leaders=["n0"])
    line = run.log("r0", "instance_status_changed", 13.5, **UNHEALTHY)

    assert deaths(run) == ([line], 0)


def test_a_fault_on_the_routers_own_node_excuses_its_log_line() -> None:
    run = placed_run("n0", leaders=["n1"])
    run.log("r0", "instance_status_changed", 13.5, **UNHEALTHY)

    assert deaths(run) == ([], 1)


def test_a_fault_on_another_routers_node_excuses_only_that_router() -> None:
    run = placed_run("n1", leaders=["n2"])
    run.log("r1", "instance_status_changed", 13.5, **UNHEALTHY)
    line = run.log("r0", "instance_status_changed", 13.5, **UNHEALTHY)

    assert deaths(run) == ([line], 1)


def test_a_fault_on_a_stream_leader_excuses_every_router() -> None:
    run = placed_run(leaders=["n0", "n2"])
    run.log("r0", "instance_status_changed", 13.5, **UNHEALTHY)
    run.log("r1", "instance_status_changed", 13.5, **UNHEALTHY)

    assert deaths(run) == ([], 2)


@pytest.mark.parametrize("fault", [{"leaders": None}, {}], ids=["unknown", "not recorded"])
def test_unknown_leaders_fall_back_to_excusing_every_router(fault: dict[str, Any]) -> None:
    run = placed_run(**fault)
    run.log("r0", "instance_status_changed", 13.5, **UNHEALTHY)

    assert deaths(run) == ([], 1)


def test_without_node_urls_every_node_fault_excuses_every_router() -> None:
    run = placed_run(leaders=["n0"])
    del run.records[0]["node_urls"]  # an older history: the servers cannot be named
    run.log("r0", "instance_status_changed", 13.5, **UNHEALTHY)

    assert deaths(run) == ([], 1)


def test_a_router_that_reconnected_to_the_node_is_excused_one_that_left_it_is_not() -> None:
    run = placed_run(leaders=["n1"])
    run.connect("r0", "n2", 9.0, "nats_reconnected")  # r0 on n2 when it froze
    run.connect("r1", "n2", 5.0, "nats_reconnected")
    run.connect("r1", "n1", 8.0, "nats_reconnected")  # r1 left n2 before
    run.log("r0", "instance_status_changed", 13.5, **UNHEALTHY)
    line = run.log("r1", "instance_status_changed", 13.5, **UNHEALTHY)

    assert deaths(run) == ([line], 1)


def test_a_router_starting_again_may_be_on_any_node_until_its_log_says() -> None:
    run = placed_run(leaders=["n0"])
    run.fault("router_kill", "r0", 11.0)
    run.fault("router_start", "r0", 12.8)
    run.connect("r0", "n0", 12.9)  # the start's router_ready: the fault had begun
    run.log("r0", "instance_status_changed", 13.5, **UNHEALTHY)

    assert deaths(run) == ([], 1)


def test_an_event_is_excused_only_by_a_node_fault_that_could_cut_some_router_off() -> None:
    run = placed_run(leaders=["n0"])
    event = run.event(13.5, "UNHEALTHY", version=2)

    assert deaths(run) == ([event], 0)

    run = placed_run("n1", leaders=["n0"])  # r1 is on n1
    run.event(13.5, "UNHEALTHY", version=2)

    assert deaths(run) == ([], 1)


def test_a_view_missing_an_ack_during_a_fault_that_could_not_cut_its_router_off_is_lost() -> None:
    run = placed_run(leaders=["n0"])
    view = [r for r in run.records if r.get("router") == "r1" and r.get("invoke") == 14.0]
    view[0]["instances"] = []  # n2's window + watch reset: the old rule excused it

    report = check(run.records)

    assert [v.invariant for v in report.violations] == ["no_lost_ack"]
    assert report.violations[0].records[-1] is view[0]
