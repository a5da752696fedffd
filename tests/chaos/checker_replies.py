"""The well-formed rule: every reply keeps wire contract v1, every request is answered.

A request may go unanswered (timeout, no responders, a client error) or be
answered 5xx only while a fault could explain it: some nemesis window,
widened by ``fault_lead`` before and ``fault_grace`` after, overlaps it. A
fault on one client's links (its ``client`` field) explains only that
client's requests. A timeout may also be the harness's own doing: when its
event loops stalled at the ends of the wait and left the registry less than
half the request's budget (``stalled_in_the_harness``). And a 503 "store
unavailable", or a timeout, while the registry's stream said it had no leader
(``History.leaderless``) is the store's state, which the reply reports.
"""

from __future__ import annotations

from typing import Any

from tests.chaos.checker_model import History, Verdict, Violation
from tests.chaos.checker_time import Window, first_overlap
from tests.chaos.history import Record

# docs/wire-contract.md: what each subject may answer. 400, 413, 500 and
# 503 come from the shared request path, so every subject may answer them.
ANY_SUBJECT = frozenset({400, 413, 500, 503})
ALLOWED = {
    "register": ANY_SUBJECT | {200, 201, 409, 429},
    "heartbeat": ANY_SUBJECT | {200, 403, 404, 409},
    "deregister": ANY_SUBJECT | {200, 403, 404, 409},
    "discover": ANY_SUBJECT | {200},
}
UNANSWERED = ("timeout", "no_responders", "error")


def reply_problem(op: Record) -> str | None:
    """What is wrong with an answered op's reply, or None if it keeps the contract."""
    reply: Any = op.get("reply")
    kind = op["kind"]
    if not isinstance(reply, dict):
        return "the reply is not a map"
    ok, status = reply.get("ok"), reply.get("status")
    if type(ok) is not bool or type(status) is not int:
        return "the reply lacks a bool ok and an int status"
    if status not in ALLOWED[kind]:
        return f"status {status} is not one the wire contract allows for {kind}"
    if ok is not (200 <= status < 300):
        return f"ok = {ok} contradicts status {status}"
    if not ok:
        error = reply.get("error")
        if not isinstance(error, dict) or not isinstance(error.get("code"), str):
            return f"a failed reply ({status}) has no error.code"
        if status == 409 and kind != "register" and error["code"] != "STALE_REQUEST":
            # An owner's request is refused with 409 only when its own later one came first.
            return f"a 409 to {kind} is {error['code']}, not STALE_REQUEST"
        return None
    if kind == "discover":
        return None if isinstance(reply.get("instances"), list) else "no instances list"
    instance = reply.get("instance")
    if not isinstance(instance, dict):
        return f"a {status} to {kind} has no instance"
    if (instance.get("service_name"), instance.get("instance_id")) != (
        op.get("service"),
        op.get("instance"),
    ):
        return "the reply's instance is not the one asked about"
    return None


def explaining(history: History, client: object) -> list[Window]:
    """The fault windows that may explain ``client``'s unanswered requests: every one
    but those of faults on another client's links alone."""
    return [
        window
        for windows in history.fault_windows.values()
        for window in windows
        if window.cause.get("client") in (None, client)
    ]


def _explained(history: History, op: Record) -> bool:
    """Whether a fault window that may touch the op's client, widened by the grace,
    overlaps the op."""
    bounds = history.bounds
    windows = explaining(history, op.get("client"))
    return (
        first_overlap(
            windows,
            float(op["invoke"]),
            float(op["complete"]),
            before=bounds.fault_lead,
            after=bounds.fault_grace,
        )
        is not None
    )


def stalled_in_the_harness(history: History, op: Record) -> bool:
    """Whether the harness's own stalls may have made ``op`` time out.

    The request leaves the harness at the first moment after its invoke when
    neither of the harness's loops is stalled, and a reply is read in time only
    if it comes through before a stall that holds the deadline begins (after it
    the timer that ends the wait and the reply waiting unread in the socket race,
    and the timer may win). Between the two the registry had the op's time; a
    timeout is the harness's doing only if that was less than half its budget.
    A stall inside the wait delays nothing: a reply that came during it is read
    when it ends, before the deadline.
    """
    if op.get("outcome") != "timeout":
        return False
    invoke = float(op["invoke"])
    budget = float(op.get("timeout") or float(op["complete"]) - invoke)
    sent, seen = invoke, invoke + budget
    for stall in history.harness_stalls:
        if stall.lo <= sent <= stall.hi:
            sent = stall.hi
        if stall.lo <= seen <= stall.hi:
            seen = stall.lo
    return seen - sent < budget / 2


def _stall_note(history: History, op: Record) -> str:
    """For a human: the harness stalls that met an unexcused op, too short to explain it."""
    lo, hi = float(op["invoke"]), float(op["complete"])
    met = [s for s in history.harness_stalls if s.lo <= hi and s.hi >= lo]
    if not met:
        return ""
    longest = max(s.hi - s.lo for s in met)
    return f" (the harness stalled {longest:.2f} s within it: too little to explain it)"


def _store_leaderless(history: History, op: Record) -> bool:
    """A 503 ``STORE_UNAVAILABLE`` or a timeout overlapping a moment when the registry's
    stream had no leader: nothing could be stored or read, and the reply says so."""
    if op.get("outcome") == "ok":
        error = op["reply"].get("error")
        if not isinstance(error, dict) or error.get("code") != "STORE_UNAVAILABLE":
            return False
    elif op.get("outcome") != "timeout":
        return False
    lo, hi = float(op["invoke"]), float(op["complete"])
    return any(span.lo <= hi and lo <= span.hi for span in history.leaderless)


def _shed_in_a_storm(history: History, op: Record) -> bool:
    """A registration refused 503 ``OVERLOADED`` while a registration storm ran (or
    within the grace after it): the router shedding what it cannot take, as it must.
    Nothing else is excused by a storm."""
    error = op["reply"].get("error")
    if op["kind"] != "register" or not isinstance(error, dict):
        return False
    if error.get("code") != "OVERLOADED":
        return False
    grace = history.bounds.fault_grace
    return any(
        float(storm["start"]) <= float(op["complete"])
        and float(op["invoke"]) <= float(storm["t"]) + grace
        for storm in history.storms
    )


def well_formed(history: History) -> Verdict:
    """Replies keep the contract; unanswered requests and 5xx answers have a fault nearby.

    Also: every change event was decodable (the harness writes ``raw`` otherwise).
    """
    violations: list[Violation] = []
    excused = 0
    for op in history.ops:
        outcome = op.get("outcome")
        if op.get("kind") not in ALLOWED:
            problem: str | None = f"unknown op kind {op.get('kind')!r}"
        elif outcome == "ok":
            problem = reply_problem(op)
            status = op["reply"].get("status") if problem is None else None
            if problem is None and isinstance(status, int) and status >= 500:
                if (
                    _explained(history, op)
                    or _shed_in_a_storm(history, op)
                    or _store_leaderless(history, op)
                ):
                    excused += 1
                else:
                    problem = f"answered {status} with no fault to explain it"
        elif outcome in UNANSWERED:
            if (
                _explained(history, op)
                or stalled_in_the_harness(history, op)
                or _store_leaderless(history, op)
            ):
                excused += 1
                problem = None
            else:
                problem = f"{outcome} with no fault within {history.bounds.fault_grace} s"
                problem += _stall_note(history, op)
        else:
            problem = f"unknown outcome {outcome!r}"
        if problem is not None:
            violations.append(
                Violation("well_formed", f"{op.get('kind')} op {op.get('id')}: {problem}", [op])
            )
    for event in history.events:
        if "raw" in event:
            violations.append(Violation("well_formed", "an undecodable change event", [event]))
    return violations, excused
