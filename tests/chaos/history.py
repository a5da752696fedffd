"""The chaos run's history: what the harness writes and the checker reads.

One JSON object per line. Every record has ``type`` and ``t`` (wall-clock
seconds, ``time.time()`` on this machine, so router log lines, which carry
ISO timestamps, fall on the same axis). Kinds of record:

``meta``
    once, first: ``seed``, ``timings`` (``heartbeat_interval``,
    ``unhealthy_after``, ``offline_after``, ``remove_after``, seconds),
    ``routers`` (names), ``nodes`` (NATS node names), ``node_urls``
    (optional: each node's client URL by name, or a list of them: its own
    and each proxy's that leads to it), ``client_timeout``, ``partitions``
    (optional: whether the nemesis's partition lane ran).
``op``
    one client request, written when it completes: ``id`` (unique int),
    ``client`` (name), ``kind`` (``register``, ``heartbeat``, ``deregister``,
    ``discover``), ``service``, ``instance``, ``session`` (may be ``None``),
    ``invoke`` and ``complete`` (times; ``t`` = ``complete``), ``request``
    (the body sent, session included), ``outcome`` (``ok``: a reply was
    decoded; ``timeout``; ``no_responders``; ``error``: anything else, with
    ``error`` text), ``reply`` (the decoded MessagePack reply, or ``None``).
``event``
    one change event seen on ``ipc.events.service.*``: ``event``,
    ``service``, ``instance``, ``status``, ``previous_status``, ``version``.
``fault``
    one nemesis action, when done: ``kind`` (``router_kill``,
    ``router_start``, ``router_pause``, ``router_resume``, ``node_pause``,
    ``node_resume``, ``node_kill``, ``node_start``; partitions:
    ``node_isolate`` and ``node_split`` ended by ``node_rejoin``,
    ``router_cut`` and ``router_drop`` ended by ``router_rejoin``,
    ``link_latency`` and ``client_drop`` ended by ``link_heal``),
    ``target`` (a router or node name; for a link fault the links' name,
    such as ``raw-2>*`` or ``route>node-1``), ``detail`` (free text, e.g.
    "stream leader"), ``start`` (optional: when the action began, if it took
    time; the checker's fault window opens there). ``node_pause``,
    ``node_kill``, ``node_isolate`` and ``node_split`` also carry ``leaders``:
    the nodes leading the streams every router uses (``KV_<bucket>`` and
    ``KV_<bucket>_routers``), asked of JetStream just before the fault;
    ``None`` (or absent, in older histories) when unknown. Partition faults
    and their ends carry ``links`` (the proxied links they changed); a fault
    on one client's links alone carries ``client`` (its name). The end of a
    node fault (``node_resume``, ``node_start``, ``node_rejoin``) is written
    once both streams have a leader again.
``view``
    one REST snapshot of a router, ``GET /api/v1/admin/instances``:
    ``router``, ``invoke``, ``complete``, ``instances`` (a list of
    ``{service, instance, status}``), or ``error`` when it could not be read;
    ``final`` (optional, true) on the round read at the end of the quiet
    period: the checker's convergence compares no view read after it;
    ``revision`` (optional): the router's ``aegis_store_watch_revision`` for
    the registry bucket, read just before (the view lists every change up to
    it), or ``None``; ``loop_lag`` (optional): its
    ``aegis_event_loop_lag_seconds`` then (the worst of 2 s), for diagnosis.
``stream``
    a sample of the registry's stream: ``stream`` (its name), ``invoke`` and
    ``complete`` of the request, ``last_seq``, ``leader`` (the node that
    answered as the stream's leader). From a true leader, every write committed
    before ``invoke`` has a sequence (a revision) at or below ``last_seq``; a
    node cut off while it led may answer from its stale copy (seen: 214 below
    the real sequence, for 4 s after its links came back).
``router_log``
    one line of a router's own structlog output, copied after the run for
    the facts the checker needs (``nats_disconnected``, ``nats_reconnected``,
    ``sweep_paused``, ``sweep_resumed``, ``instance_status_changed``,
    ``router_ready``, ...): ``router``, ``event``, ``fields`` (the rest;
    ``router_ready`` and ``nats_reconnected`` carry ``server``, the
    ``host:port`` the router is connected to, which ``node_urls`` names).
``stall``
    a moment the harness itself ran late (``tests/support/stalls.py``): ``loop``
    (``harness``: the clients' own event loop; ``proxies``: the loop relaying
    every link), ``start`` (when a wake-up of that loop was due) and ``end``
    (when it came: the loop ran nothing in between), ``late`` (seconds),
    ``tick`` (the wake-ups' period: the next one on time shows the loop has
    worked through what piled up).
    Written once the run is over.
``storm``
    a registration storm sent from its own process (``tests/chaos/storm.py``):
    ``start``, and ``replies``, its replies by status (``none``: unanswered).
    Load, not claims: the checker reads nothing of it, and it excuses nothing.
``end``
    once, last: ``last_fault`` (time of the last fault's end, or ``None``),
    ``quiet_from`` (when the nemesis stopped and every process was back).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

Record = dict[str, Any]
KINDS = (
    "meta",
    "op",
    "event",
    "fault",
    "view",
    "router_log",
    "stall",
    "stream",
    "storm",
    "end",
)


class HistoryWriter:
    """Appends records to a JSON-lines file, one line per record, flushed each time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: TextIO = path.open("a", encoding="utf-8")

    def write(self, record: Record) -> None:
        """Write one record (it must have ``type`` and ``t``)."""
        if record.get("type") not in KINDS or "t" not in record:
            raise ValueError(f"not a history record: {record!r}")
        self._file.write(json.dumps(record, default=str, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def read_history(path: Path) -> list[Record]:
    """Every record of a history file, in file order."""
    with path.open(encoding="utf-8") as lines:
        return list(parse_lines(lines))


def parse_lines(lines: Iterable[str]) -> Iterator[Record]:
    """Records from JSON lines; blank lines are skipped."""
    for number, line in enumerate(lines, 1):
        if line.strip():
            record = json.loads(line)
            if not isinstance(record, dict) or record.get("type") not in KINDS:
                raise ValueError(f"line {number} is not a history record")
            yield record
