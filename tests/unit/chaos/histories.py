"""Hand-made chaos histories for the checker's tests.

Times are small floats (seconds from the run's start). The run's timings
are the harness's: heartbeat 0.5 s, UNHEALTHY after 2.5 s, OFFLINE after
5 s, removed after 10 s, client timeout 2 s; so an answered contact
protects an instance for 2.5 - 1 (margin) = 1.5 s after its invoke.
"""

from __future__ import annotations

import itertools
from typing import Any

from tests.chaos.history import Record

TIMINGS = {
    "heartbeat_interval": 0.5,
    "unhealthy_after": 2.5,
    "offline_after": 5.0,
    "remove_after": 10.0,
}
ROUTERS = ["r0", "r1"]
NODE_URLS = {f"n{i}": f"nats://127.0.0.1:{4220 + i}" for i in range(3)}
SERVICE, INSTANCE = "svc", "i1"
ERRORS = {400: "VALIDATION_ERROR", 403: "SESSION_MISMATCH", 404: "INSTANCE_NOT_FOUND"}
ERRORS |= {409: "DUPLICATE_INSTANCE", 500: "INTERNAL_ERROR", 503: "STORE_UNAVAILABLE"}


def reply_for(kind: str, status: int, instance: str, version: int) -> dict[str, Any]:
    """A reply as the router sends it (wire contract v1)."""
    if status >= 400:
        return {"ok": False, "status": status, "error": {"code": ERRORS[status], "message": ""}}
    if kind == "discover":
        return {"ok": True, "status": status, "instances": []}
    shown = "OFFLINE" if kind == "deregister" else "ONLINE"
    body = {"service_name": SERVICE, "instance_id": instance, "status": shown, "version": version}
    return {"ok": True, "status": status, "instance": body}


class Run:
    """Builds one history, record by record."""

    def __init__(self) -> None:
        self.records: list[Record] = [
            {
                "type": "meta",
                "t": 0.0,
                "seed": 1,
                "timings": TIMINGS,
                "routers": ROUTERS,
                "nodes": ["n0", "n1", "n2"],
                "client_timeout": 2.0,
            }
        ]
        self._ids = itertools.count(1)

    def op(
        self,
        kind: str,
        invoke: float,
        status: int | None = None,
        *,
        session: str | None = "A",
        instance: str = INSTANCE,
        outcome: str = "ok",
        took: float = 0.02,
        version: int = 1,
        reply: Any = None,
        budget: float | None = None,
    ) -> Record:
        """One client request; the reply follows ``status`` unless given; ``budget``: how
        long the client would wait (its ``timeout``), if recorded."""
        if reply is None and outcome == "ok":
            reply = reply_for(kind, status or 200, instance, version)
        record: Record = {
            "type": "op",
            "t": invoke + took,
            "id": next(self._ids),
            "client": f"client-{session}",
            "kind": kind,
            "service": SERVICE,
            "instance": None if kind == "discover" else instance,
            "session": session,
            "invoke": invoke,
            "complete": invoke + took,
            "request": {"service_name": SERVICE},
            "outcome": outcome,
            "reply": reply,
        }
        if budget is not None:
            record["timeout"] = budget
        self.records.append(record)
        return record

    def live(
        self, start: float, end: float, *, session: str = "A", instance: str = INSTANCE
    ) -> Record:
        """Register at ``start`` (201) and heartbeat every 0.4 s until ``end``; the ack."""
        ack = self.op("register", start, 201, session=session, instance=instance)
        beat = start + 0.4
        while beat < end:
            self.op("heartbeat", beat, 200, session=session, instance=instance)
            beat += 0.4
        return ack

    def event(
        self, t: float, status: str, event: str = "status_changed", version: int | None = None
    ) -> Record:
        """A change event seen on the bus."""
        record: Record = {"type": "event", "t": t, "event": event, "service": SERVICE}
        record |= {"instance": INSTANCE, "status": status, "version": version}
        self.records.append(record)
        return record

    def fault(self, kind: str, target: str, t: float, **fields: Any) -> Record:
        """A nemesis action, done at ``t`` (``fields``: more, such as ``leaders``)."""
        record: Record = {"type": "fault", "t": t, "kind": kind, "target": target, "detail": ""}
        self.records.append(record | fields)
        return self.records[-1]

    def stall(self, start: float, end: float, loop: str = "harness") -> Record:
        """The harness's own ``loop`` ran nothing from ``start`` to ``end``."""
        record: Record = {"type": "stall", "t": end, "loop": loop, "start": start, "end": end}
        self.records.append(record | {"late": end - start})
        return self.records[-1]

    def sample(self, t: float, last_seq: int, leader: str | None = "n0") -> Record:
        """The registry stream's last sequence, asked at ``t`` and answered by ``leader``
        (None: by a replica that knows no leader)."""
        record: Record = {"type": "stream", "t": t + 0.01, "stream": "KV_aegis_registry"}
        record |= {"invoke": t, "complete": t + 0.01, "last_seq": last_seq, "leader": leader}
        self.records.append(record)
        return record

    def name_nodes(self) -> None:
        """Give the meta record the nodes' URLs, as the harness does since it logs them."""
        self.records[0]["node_urls"] = NODE_URLS

    def connect(self, router: str, node: str, t: float, event: str = "router_ready") -> Record:
        """``router`` logs that it is connected to ``node`` (at a start, or a reconnect)."""
        server = NODE_URLS[node].removeprefix("nats://")
        return self.log(router, event, t, server=server)

    def log(self, router: str, event: str, t: float, **fields: Any) -> Record:
        """One router log line."""
        record: Record = {"type": "router_log", "t": t, "router": router, "event": event}
        record["fields"] = fields
        self.records.append(record)
        return record

    def view(self, router: str, t: float, **instances: str) -> Record:
        """A REST view taken at ``t``, listing ``instance=status``."""
        listing = [{"service": SERVICE, "instance": i, "status": s} for i, s in instances.items()]
        record: Record = {"type": "view", "t": t + 0.05, "router": router, "invoke": t}
        record |= {"complete": t + 0.05, "instances": listing}
        self.records.append(record)
        return record

    def views(self, start: float, end: float, **instances: str) -> None:
        """Every router's view once a second in [start, end)."""
        t = start
        while t < end:
            for router in ROUTERS:
                self.view(router, t, **instances)
            t += 1.0

    def finish(self, t: float, **instances: str) -> None:
        """Quiet from ``t`` - 1.5; each router's last view at ``t`` - 1 lists ``instances``."""
        self.views(t - 1.0, t, **instances)
        self.end(t, quiet_from=t - 1.5)

    def end(self, t: float, quiet_from: float, last_fault: float | None = None) -> Record:
        """The last record."""
        record: Record = {"type": "end", "t": t, "quiet_from": quiet_from}
        record["last_fault"] = last_fault
        self.records.append(record)
        return record


def clean_run() -> Run:
    """A run that keeps every invariant: A registers, lives, deregisters; r1 is paused once.

    i1 is registered at 1.0, heartbeats until 20, is deregistered at 20.0;
    every router's view lists it ONLINE from 2 to 20 and OFFLINE after.
    The quiet period begins at 21; the run ends at 26.
    """
    run = Run()
    run.event(1.03, "ONLINE", "registered", version=1)
    run.live(1.0, 20.0)
    run.op("discover", 3.0, 200, session=None)
    run.fault("router_pause", "r1", 5.0)
    run.fault("router_resume", "r1", 6.0)
    run.views(2.0, 20.0, i1="ONLINE")
    run.op("deregister", 20.0, 200, version=2)
    run.event(20.03, "OFFLINE", "deregistered", version=2)
    run.views(20.5, 26.0, i1="OFFLINE")
    run.end(26.0, quiet_from=21.0, last_fault=6.0)
    return run
