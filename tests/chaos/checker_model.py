"""What the checker's rules share: the history indexed, the run's bounds, op helpers.

Every time is a float on the history's one axis (``time.time()``). The
windows of trouble and spans of certainty built from it are in checker_time.py.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import urlparse

from tests.chaos.checker_time import Span, Window, merge, pair_windows
from tests.chaos.history import Record

INVARIANTS = ("no_lost_ack", "one_owner", "no_false_death", "well_formed", "convergence")

Key = tuple[str, str]  # (service, instance)

# Each fault that takes something down, and the faults that bring it back.
FAULT_UP = {
    "router_kill": ("router_start",),
    "router_pause": ("router_resume", "router_start"),
    "node_pause": ("node_resume", "node_start"),
    "node_kill": ("node_start",),
    # Partitions (through the harness's proxies). A router cut from NATS, or with
    # one direction of its links dropped, is away as a paused one is; a node whose
    # routes are cut (split 2/1, or isolated from its clients too) is away as a
    # paused node is, for the routers it may cut off.
    "router_cut": ("router_rejoin", "router_start"),
    "router_drop": ("router_rejoin", "router_start"),
    "node_isolate": ("node_rejoin", "node_start"),
    "node_split": ("node_rejoin", "node_start"),
    # Slowed or half-dropped links: they explain unanswered requests only (those
    # of their ``client`` alone, when the record names one), no report of death.
    "link_latency": ("link_heal",),
    "client_drop": ("link_heal",),
}
# The faults after which a router is away (alive, but neither heard nor hearing).
ROUTER_AWAY = ("router_pause", "router_cut", "router_drop")
# Each router log event that says "cut off", and those that end it (a restart too).
LOG_UP = {
    "nats_disconnected": ("nats_reconnected", "router_ready"),
    "sweep_paused": ("sweep_resumed", "router_ready"),
}
BAD_STATUSES = ("UNHEALTHY", "OFFLINE")
# The harness's loop watch's period, for stall records that do not say (stalls.TICK).
STALL_TICK = 0.05


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken invariant, with the records a human needs to replay it."""

    invariant: str
    message: str
    records: list[Record] = field(default_factory=list)


# What a rule returns: its violations, and how many reports a fault window excused.
Verdict = tuple[list[Violation], int]


@dataclass(frozen=True, slots=True)
class Shot:
    """One readable REST view: taken within [lo, hi], listing each instance's status.

    ``revision``: the router's watch revision read just before (the view lists
    every change up to it), if known.
    """

    lo: float
    hi: float
    view: Record
    listing: dict[Key, str]
    revision: int | None = None


@dataclass(frozen=True, slots=True)
class Sample:
    """The registry stream's last sequence, asked at ``invoke``: every write committed
    before ``invoke`` is at or below ``last_seq``, and none above it was stored before
    the answer (at ``invoke`` or later)."""

    invoke: float
    last_seq: int


@dataclass(frozen=True, slots=True)
class Bounds:
    """The run's liveness timings and every tolerance the rules allow, in seconds."""

    heartbeat_interval: float
    unhealthy_after: float
    offline_after: float
    remove_after: float
    client_timeout: float
    # After an ack, or after a router's trouble ends, until every router's
    # REST view must show the change: a KV watch delivery plus one heartbeat.
    propagation: float
    # After a fault ends, until a request may again be expected to be answered:
    # one client timeout for requests sent into it, 3 s for elections and reconnects.
    fault_grace: float
    # After a router's trouble ends, until its sweeps may be trusted again:
    # one interval for each client to reach it, one more for the SDK's
    # fallback from a dead subject, 2 s for the sweep tick and event delivery.
    death_grace: float
    # A router's bucket watch (nats-py's ordered consumer) that lost its consumer to a
    # node fault or a reconnect notices only after two missed 5 s idle heartbeats.
    watch_reset: float = 10.0
    # A fault record is written when the action is done: it may have begun up to this earlier.
    fault_lead: float = 1.0
    # Answered contacts must be this much closer than unhealthy_after to protect an
    # instance: a new lease holder may count from a floor up to 1 s (the membership
    # put period) before the last contact.
    contact_margin: float = 1.0
    # A takeover may precede last contact + offline_after by this much: the same
    # 1 s floor, plus 0.25 s for timers and the op's recorded times.
    takeover_slack: float = 1.25
    # An event or log line is written this long after the decision it reports, at most
    # (outside faults, which excuse anything later).
    report_lag: float = 0.5
    # Every router's views agree, for good, within this long after the quiet period
    # begins. Expiries legitimately change the views until the last instance silent
    # at that moment is removed (remove_after, plus up to unhealthy_after more when
    # its lease moved), and then propagate; so never less than that, nor than 15 s.
    convergence_bound: float = 15.0

    @classmethod
    def for_run(cls, meta: Record, *, convergence_bound: float | None = None) -> Bounds:
        """The bounds for a run described by its ``meta`` record."""
        timings = meta["timings"]
        interval = float(timings["heartbeat_interval"])
        unhealthy = float(timings["unhealthy_after"])
        remove = float(timings["remove_after"])
        timeout = float(meta["client_timeout"])
        propagation = 2.0 + interval
        if convergence_bound is None:
            convergence_bound = max(15.0, remove + unhealthy + propagation)
        return cls(
            heartbeat_interval=interval,
            unhealthy_after=unhealthy,
            offline_after=float(timings["offline_after"]),
            remove_after=remove,
            client_timeout=timeout,
            propagation=propagation,
            fault_grace=timeout + 3.0,
            death_grace=2 * interval + 2.0,
            convergence_bound=convergence_bound,
        )


def status_of(op: Record) -> int | None:
    """The reply's status if the op was answered with a consistent one, else None.

    A reply whose ``ok`` contradicts its status proves nothing (well_formed reports it).
    """
    reply = op.get("reply")
    if op.get("outcome") != "ok" or not isinstance(reply, dict):
        return None
    status, ok = reply.get("status"), reply.get("ok")
    if type(status) is not int or type(ok) is not bool or ok is not (200 <= status < 300):
        return None
    return status


def key_of(record: Record) -> Key:
    """The instance id a record is about."""
    return (str(record.get("service")), str(record.get("instance")))


def owner_of(op: Record) -> str:
    """The op's session; an op without one owns nothing another op can share."""
    session = op.get("session")
    return str(session) if session is not None else f"<no session: op {op.get('id')}>"


def is_contact(op: Record) -> bool:
    """An answered contact: the router heard its owner (register 201/200, heartbeat 200)."""
    status = status_of(op)
    return (op["kind"] == "register" and status in (200, 201)) or (
        op["kind"] == "heartbeat" and status == 200
    )


def may_have_applied(op: Record) -> bool:
    """Whether an op without a definite answer may still have changed the registry.

    A timeout or a client error may come after the router applied it; so may a
    5xx (a store write that timed out may have landed). No responders: never sent.
    """
    if op.get("outcome") in ("timeout", "error"):
        return True
    status = status_of(op)
    return status is not None and status >= 500


def may_have_left(op: Record) -> bool:
    """A deregister the router may have applied: answered 200, or without a definite answer."""
    return op["kind"] == "deregister" and (status_of(op) == 200 or may_have_applied(op))


def may_have_registered(op: Record) -> bool:
    """A register that may have made its session the owner: 201, or without a definite answer."""
    return op["kind"] == "register" and (status_of(op) == 201 or may_have_applied(op))


def at(record: Record, name: str) -> float:
    """A time field of a record."""
    return float(record[name])


class InstanceOps:
    """The ops on one instance id (discover excluded), in invoke order, indexed by session."""

    def __init__(self, ops: list[Record]) -> None:
        self.ops = sorted(ops, key=lambda o: at(o, "invoke"))
        self._leaves: dict[str, list[Record]] = defaultdict(list)
        self._registrations: dict[str, list[Record]] = defaultdict(list)
        for op in self.ops:
            if may_have_left(op):
                self._leaves[owner_of(op)].append(op)
            if may_have_registered(op):
                self._registrations[owner_of(op)].append(op)

    def first_leave(self, owner: str, since: float) -> float:
        """When ``owner`` may first have left: the earliest deregister that may follow ``since``."""
        return min(
            (at(op, "invoke") for op in self._leaves[owner] if at(op, "complete") >= since),
            default=math.inf,
        )

    def registered_between(self, owner: str, lo: float, hi: float) -> bool:
        """Whether ``owner`` may have registered anew (201, or no definite answer) in (lo, hi)."""
        return any(
            at(op, "complete") > lo and at(op, "invoke") < hi for op in self._registrations[owner]
        )


@dataclass
class History:
    """The records of one run, sorted by kind and indexed for the rules."""

    meta: Record
    end: Record | None
    bounds: Bounds
    ops: list[Record] = field(default_factory=list)
    events: list[Record] = field(default_factory=list)
    faults: list[Record] = field(default_factory=list)
    views: list[Record] = field(default_factory=list)
    logs: list[Record] = field(default_factory=list)
    storms: list[Record] = field(default_factory=list)
    stalls: list[Record] = field(default_factory=list)  # the harness's own
    streams: list[Record] = field(default_factory=list)  # samples of the registry's stream
    last_t: float = 0.0  # the latest time of any record
    _node_faults: dict[str, list[Window]] = field(default_factory=dict, repr=False)
    _stale: dict[str, list[Window]] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, records: list[Record], *, convergence_bound: float | None = None) -> History:
        """Index ``records``; the first ``meta`` and the last ``end`` are the run's."""
        metas = [r for r in records if r["type"] == "meta"]
        if not metas:
            raise ValueError("the history has no meta record: its timings are unknown")
        ends = [r for r in records if r["type"] == "end"]
        history = cls(
            metas[0],
            ends[-1] if ends else None,
            Bounds.for_run(metas[0], convergence_bound=convergence_bound),
        )
        lists: dict[str, list[Record]] = {
            "op": history.ops,
            "event": history.events,
            "fault": history.faults,
            "view": history.views,
            "router_log": history.logs,
            "storm": history.storms,
            "stall": history.stalls,
            "stream": history.streams,
        }
        for record in records:
            if record["type"] in lists:
                lists[record["type"]].append(record)
        history.last_t = max(float(r["t"]) for r in records)
        return history

    @cached_property
    def harness_stalls(self) -> list[Span]:
        """When the harness itself ran nothing (either of its loops), joined; each until
        one tick after its end (what piled up is worked through by the next tick)."""
        return merge(
            [
                Span(at(s, "start"), at(s, "end") + float(s.get("tick", STALL_TICK)), (s,))
                for s in self.stalls
            ]
        )

    def received_from(self, t: float) -> float:
        """The earliest moment something the harness wrote down at ``t`` may have come:
        ``t``, or the start of its stalls (joined) that end at most ``report_lag``
        before it (what came during a stall is read, and timed, when it ends)."""
        earliest = t
        for stall in reversed(self.harness_stalls):
            if stall.lo <= earliest and stall.hi >= earliest - self.bounds.report_lag:
                earliest = stall.lo
        return earliest

    @property
    def routers(self) -> list[str]:
        """The routers the run started (else those with views)."""
        return [str(r) for r in self.meta.get("routers", [])] or sorted(self.shots)

    @cached_property
    def instances(self) -> dict[Key, InstanceOps]:
        """The ops on each instance id."""
        by_key: dict[Key, list[Record]] = defaultdict(list)
        for op in self.ops:
            if op["kind"] != "discover":
                by_key[key_of(op)].append(op)
        return {key: InstanceOps(ops) for key, ops in by_key.items()}

    @property
    def end_t(self) -> float:
        """The end of the run (inf when the history stops without one)."""
        return float(self.end["t"]) if self.end is not None else math.inf

    @cached_property
    def fault_windows(self) -> dict[str, list[Window]]:
        """Nemesis windows per target (router or node name)."""
        return pair_windows(self.faults, FAULT_UP, kind="kind", target="target", end_t=self.end_t)

    @cached_property
    def node_windows(self) -> list[Window]:
        """Every NATS node fault, whichever routers it may have cut off."""
        return sorted(
            (
                window
                for windows in self.fault_windows.values()
                for window in windows
                if window.cause["kind"].startswith("node_")
            ),
            key=lambda w: w.start,
        )

    @cached_property
    def log_windows(self) -> dict[str, list[Window]]:
        """Per router, where its own log says it was cut off from NATS or not sweeping.

        The sweeper pauses for each reason apart (``reason``: ``nats_disconnected``,
        ``not_hearing_itself``, ...) and resumes for each apart: a resume ends the
        pause of its own reason only. A restart (``router_ready``) ends them all.
        """
        named = {*LOG_UP, *(up for ups in LOG_UP.values() for up in ups)}
        logs = sorted((r for r in self.logs if r.get("event") in named), key=lambda r: at(r, "t"))
        windows: dict[str, list[Window]] = defaultdict(list)
        open_: dict[tuple[str, str, object], Record] = {}  # (router, down event, reason)

        def close(key: tuple[str, str, object], t: float) -> None:
            down = open_.pop(key)
            windows[key[0]].append(Window(at(down, "t"), t, down))

        for line in logs:
            router, event = str(line.get("router")), str(line.get("event"))
            reason = (line.get("fields") or {}).get("reason")
            if event in LOG_UP:
                key = (router, event, reason if event == "sweep_paused" else None)
                open_.setdefault(key, line)  # a repeat is inside the window already open
                continue
            for key in [k for k in open_ if k[0] == router]:
                _, down, paused_for = key
                if event == "router_ready" or (
                    event in LOG_UP[down] and (down != "sweep_paused" or paused_for == reason)
                ):
                    close(key, at(line, "t"))
        for key in list(open_):
            close(key, self.end_t)
        return {router: sorted(found, key=lambda w: w.start) for router, found in windows.items()}

    @cached_property
    def shots(self) -> dict[str, list[Shot]]:
        """Each router's readable views, by invoke time."""
        shots: dict[str, list[Shot]] = defaultdict(list)
        for view in sorted(self.views, key=lambda v: float(v["invoke"])):
            if view.get("error") is None and isinstance(view.get("instances"), list):
                listing = {key_of(e): str(e.get("status")) for e in view["instances"]}
                revision = view.get("revision")
                revision = revision if type(revision) is int else None
                shot = Shot(float(view["invoke"]), float(view["complete"]), view, listing, revision)
                shots[str(view["router"])].append(shot)
        return shots

    @cached_property
    def samples(self) -> list[Sample]:
        """The registry stream's samples that can be trusted, by the time they were asked.

        A node cut off while it led the stream may still answer as its leader,
        from its own copy, until it hears of the new leader (seen: a sequence 214
        below the real one, 4 s after the node's links came back). So a sample
        counts only if it names the node that answered, that node is not the
        target of a node fault from ``fault_lead`` before its start to
        ``fault_grace`` after its end, and it is not below an earlier sample
        that counts (a lower one is certainly stale).
        """
        bounds = self.bounds
        faulted = [
            (str(w.cause.get("target")), w.start - bounds.fault_lead, w.end + bounds.fault_grace)
            for w in self.node_windows
        ]
        found: list[Sample] = []
        for record in sorted(self.streams, key=lambda r: at(r, "invoke")):
            last, leader, asked = record.get("last_seq"), record.get("leader"), at(record, "invoke")
            if type(last) is not int or not isinstance(leader, str):
                continue
            if any(node == leader and lo <= asked <= hi for node, lo, hi in faulted):
                continue
            if found and last < found[-1].last_seq:
                continue
            found.append(Sample(asked, last))
        return found

    @cached_property
    def leaderless(self) -> list[Span]:
        """When the registry's stream said it had no leader: each sample answered with
        none, from the sample before it to the one after it (the election may have
        begun or ended anywhere between), joined.

        A replica answers ``stream_info`` without a leader while the stream elects
        one (seen: 7 s after a node rejoined from isolation, seed 415). No router
        can read or write meanwhile; "store unavailable" is then the contract's
        answer, whatever fault began it.
        """
        ordered = sorted(self.streams, key=lambda r: at(r, "invoke"))
        spans = [
            Span(
                at(ordered[i - 1], "complete") if i > 0 else at(record, "invoke"),
                at(ordered[i + 1], "invoke") if i + 1 < len(ordered) else at(record, "complete"),
                (record,),
            )
            for i, record in enumerate(ordered)
            if "leader" in record and record["leader"] is None
        ]
        return merge(spans)

    def fresh_since(self, shot: Shot) -> float | None:
        """A moment before which every committed write is in ``shot``: the latest sample,
        asked no later than the view ended, at or below its watch revision. None if none
        is (or the revision is unknown)."""
        if shot.revision is None:
            return None
        proven = [
            s.invoke for s in self.samples if s.invoke <= shot.hi and s.last_seq <= shot.revision
        ]
        return max(proven, default=None)

    def watch_back(self, router: str, since: float) -> float | None:
        """The first of ``router``'s views (its start) showing its bucket watch alive and
        caught up after ``since``: it has every write committed before some moment after
        ``since``, and a revision above a sample asked after ``since`` (so a write stored
        after ``since`` reached it). None if no view shows that."""
        after = [s.last_seq for s in self.samples if s.invoke >= since]
        if not after:
            return None
        stored_after = min(after)  # any revision above it was stored after ``since``
        for shot in self.shots.get(router, []):
            if shot.lo < since or shot.revision is None or shot.revision <= stored_after:
                continue
            fresh = self.fresh_since(shot)
            if fresh is not None and fresh >= since:
                return shot.lo
        return None

    @cached_property
    def node_names(self) -> dict[str, str] | None:
        """Each node's name by its ``host:port``; None when the meta record lacks the URLs.

        A node may have several: its own, and each proxy's that leads to it.
        """
        urls = self.meta.get("node_urls")
        if not isinstance(urls, dict):
            return None
        return {
            host_port(str(url)): str(name)
            for name, given in urls.items()
            for url in (given if isinstance(given, list) else [given])
        }

    @cached_property
    def connections(self) -> dict[str, list[tuple[float, str | None]]]:
        """Per router, from when on it was on which node (None: unknown), in time order.

        Its log names the server at each start (``router_ready``) and reconnect
        (``nats_reconnected``); a kill makes it unknown until the next start logs
        one (a starting router connects before it is ready).
        """
        names = self.node_names or {}
        changes: dict[str, list[tuple[float, str | None]]] = defaultdict(list)
        for line in self.logs:
            if line.get("event") in ("router_ready", "nats_reconnected"):
                server = (line.get("fields") or {}).get("server")
                node = names.get(server) if isinstance(server, str) else None
                changes[str(line["router"])].append((at(line, "t"), node))
        for router, windows in self.fault_windows.items():
            for window in windows:
                if window.cause["kind"] == "router_kill":
                    changes[router].append((window.start, None))
        return {router: sorted(found, key=lambda c: c[0]) for router, found in changes.items()}

    def may_be_on(self, router: str, node: str, lo: float, hi: float) -> bool:
        """Whether ``router`` may have been connected to ``node`` at some time in [lo, hi]."""
        if self.node_names is None:
            return True  # an older history: which router was on which node is unknown
        changes = self.connections.get(router, [])
        if not changes or lo < changes[0][0]:
            return True  # before its first logged connection, unknown
        for index, (since, on) in enumerate(changes):
            until = changes[index + 1][0] if index + 1 < len(changes) else math.inf
            if since <= hi and until >= lo and on in (None, node):
                return True
        return False

    def cuts_off(self, window: Window, router: str) -> bool:
        """Whether a node fault may have cut ``router`` off NATS or stalled its streams.

        So it did if the node led a stream every router uses (its ``leaders``,
        or they are unknown), or the router may have been connected to it.
        """
        leaders = window.cause.get("leaders")
        if not isinstance(leaders, list) or window.cause["target"] in leaders:
            return True
        lo = window.start - self.bounds.fault_lead
        return self.may_be_on(router, str(window.cause["target"]), lo, window.end)

    def node_faults(self, router: str) -> list[Window]:
        """The node faults that may have cut ``router`` off (see ``cuts_off``)."""
        if router not in self._node_faults:  # asked once per report: worked out once
            self._node_faults[router] = [w for w in self.node_windows if self.cuts_off(w, router)]
        return self._node_faults[router]

    @cached_property
    def all_troubles(self) -> list[Window]:
        """Every router's troubles: for reports whose router is unknown.

        A node fault counts if it may have cut some router off.
        """
        paused = [
            w
            for windows in self.fault_windows.values()
            for w in windows
            if w.cause["kind"] in ROUTER_AWAY
        ]
        cut_off = [w for windows in self.log_windows.values() for w in windows]
        nodes = [w for w in self.node_windows if any(self.cuts_off(w, r) for r in self.routers)]
        return paused + cut_off + nodes

    def troubles(self, router: str) -> list[Window]:
        """Where ``router`` was paused or partitioned away, its log says it was cut off,
        or a node fault may have cut it off (a kill is not here)."""
        paused = [w for w in self.fault_windows.get(router, []) if w.cause["kind"] in ROUTER_AWAY]
        return paused + self.log_windows.get(router, []) + self.node_faults(router)

    def stale(self, router: str) -> list[Window]:
        """Where ``router``'s REST view may lag: paused, killed, partitioned away, cut
        off by its log, or a node fault that may have cut it off.

        After a node fault or a reconnect its bucket watch may need a reset
        first, so those windows last ``watch_reset`` longer: until one of its
        views shows the watch alive and caught up after the window (``watch_back``).
        """
        if router not in self._stale:  # asked once per report: worked out once
            reset = self.bounds.watch_reset
            lagging = []
            for w in self.log_windows.get(router, []) + self.node_faults(router):
                back = self.watch_back(router, w.end)
                end = w.end + reset if back is None else min(w.end + reset, back)
                lagging.append(Window(w.start, end, w.cause))
            self._stale[router] = self.fault_windows.get(router, []) + lagging
        return self._stale[router]


def host_port(url: str) -> str:
    """A NATS URL's ``host:port``, without credentials (as the router logs ``server``)."""
    return urlparse(url).netloc.rpartition("@")[2]
