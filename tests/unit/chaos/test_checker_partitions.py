"""The checker's partition faults excuse exactly what they explain.

A router cut from NATS (or with one direction of its links dropped) is away
as a paused router is; a node whose routes are cut (isolated, or split 2/1)
is away as a paused node is; a slowed link explains unanswered requests but
no death; a fault on one client's links explains that client's requests only.

As in test_checker_nodes.py, r0 is on n0 and r1 on n1 (here through proxies,
whose addresses the meta record lists under each node), i1 is heartbeated
until 20, and a report at 13.5 lies within the 3 s grace of a fault from 12
to 13.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.chaos.checker import check
from tests.chaos.history import Record
from tests.unit.chaos.histories import INSTANCE, NODE_URLS, SERVICE, Run, clean_run

UNHEALTHY = {"service": SERVICE, "instance": INSTANCE, "status": "UNHEALTHY"}
# Each router reaches each node through a proxy of its own: r0 > n0 listens on 5000.
PROXIES = {f"r{r}>n{n}": f"nats://127.0.0.1:{5000 + 10 * r + n}" for r in (0, 1) for n in (0, 1, 2)}


def proxied_run(kind: str, target: str, end: str, **fault: Any) -> Run:
    """``clean_run`` with the routers on their nodes through proxies, and ``kind``
    on ``target`` from 12 to 13 (ended by ``end``)."""
    run = clean_run()
    run.records[0]["node_urls"] = {
        node: [url, *(p for link, p in PROXIES.items() if link.endswith(node))]
        for node, url in NODE_URLS.items()
    }
    for router, node in (("r0", "n0"), ("r1", "n1")):
        server = PROXIES[f"{router}>{node}"].removeprefix("nats://")
        run.log(router, "router_ready", 0.5, server=server)
    run.fault(kind, target, 12.0, **fault)
    run.fault(end, target, 13.0)
    return run


def deaths(run: Run) -> tuple[list[Record], int]:
    """The records of each no_false_death violation, and how many reports were excused."""
    report = check(run.records)
    assert {v.invariant for v in report.violations} <= {"no_false_death"}
    return [v.records[-1] for v in report.violations], report.excused["no_false_death"]


@pytest.mark.parametrize("kind", ["router_cut", "router_drop"])
def test_a_router_cut_off_is_away_like_a_paused_one(kind: str) -> None:
    run = proxied_run(kind, "r1", "router_rejoin")
    run.log("r1", "instance_status_changed", 13.5, **UNHEALTHY)
    line = run.log("r0", "instance_status_changed", 13.5, **UNHEALTHY)

    assert deaths(run) == ([line], 1)


def test_a_router_cut_off_may_show_a_stale_view() -> None:
    run = proxied_run("router_cut", "r1", "router_rejoin")
    run.view("r1", 12.5)  # i1 missing

    report = check(run.records)
    assert report.violations == []
    assert report.excused["no_lost_ack"] == 1


@pytest.mark.parametrize("kind", ["node_isolate", "node_split"])
def test_a_partitioned_node_excuses_the_router_on_it_through_its_proxy(kind: str) -> None:
    run = proxied_run(kind, "n1", "node_rejoin", leaders=["n2"])
    run.log("r1", "instance_status_changed", 13.5, **UNHEALTHY)
    line = run.log("r0", "instance_status_changed", 13.5, **UNHEALTHY)

    assert deaths(run) == ([line], 1)


def test_a_partitioned_stream_leader_excuses_every_router() -> None:
    run = proxied_run("node_split", "n2", "node_rejoin", leaders=["n2"])
    run.log("r0", "instance_status_changed", 13.5, **UNHEALTHY)

    assert deaths(run) == ([], 1)


def test_a_slow_link_excuses_no_death() -> None:
    run = proxied_run("link_latency", "r0>*", "link_heal", links=["r0>n0"])
    line = run.log("r0", "instance_status_changed", 13.5, **UNHEALTHY)

    assert deaths(run) == ([line], 0)


def test_a_slow_routers_link_explains_any_clients_timeout() -> None:
    run = proxied_run("link_latency", "r0>*", "link_heal", links=["r0>n0"])
    run.op("discover", 12.5, session="B", outcome="timeout", took=2.0)

    report = check(run.records)
    assert report.violations == []
    assert report.excused["well_formed"] == 1


def test_a_fault_on_one_clients_links_explains_only_its_requests() -> None:
    run = proxied_run("client_drop", "client-B>*", "link_heal", client="client-B")
    run.op("discover", 12.5, session="B", outcome="timeout", took=2.0)
    other = run.op("discover", 12.5, session="C", outcome="timeout", took=2.0)

    report = check(run.records)
    assert [v.records for v in report.violations] == [[other]]
    assert report.excused["well_formed"] == 1


def test_a_fault_on_one_clients_links_is_excusable_time_for_well_formed_only() -> None:
    plain = check(clean_run().records)
    dropped = check(
        proxied_run("client_drop", "client-B>*", "link_heal", client="client-B").records
    )

    # 12 to 13, less the 1 s lead, plus the 5 s grace: 7 s more to excuse requests by.
    assert dropped.excusable_s["well_formed"] == pytest.approx(plain.excusable_s["well_formed"] + 7)
    for invariant in ("no_lost_ack", "no_false_death"):
        assert dropped.excusable_s[invariant] == pytest.approx(plain.excusable_s[invariant])
