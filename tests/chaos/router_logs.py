"""Router log lines copied into the history after a run, for the facts the checker needs.

Routers log one structlog JSON object per line with ``event`` and an ISO
``timestamp``; the file of a router gathers every start of it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from .history import Record

# State changes, connectivity, sweeping and membership: what explains a status.
EVENTS = frozenset(
    {
        "router_ready",
        "router_stopped",
        "router_failed",
        "store_ready",
        "nats_disconnected",
        "nats_reconnected",
        "sweep_paused",
        "sweep_resumed",
        "sweep_failed",
        "sweep_crashed",
        "instance_registered",
        "instance_status_changed",
        "instance_deregistered",
        "instance_removed",
        "router_joined",
        "router_seen",
        "router_left",
        "router_lost",
        "router_hearing_again",
        "router_refresh_failed",
        "heartbeat_forward_failed",
        "event_publish_failed",
        "nats_reply_failed",
        "http_unhandled_error",
        "kv_bad_entry",
    }
)
# Per-request lines are already in the history as ops.
REQUEST_EVENTS = frozenset({"registration", "heartbeat", "deregistration", "discovery"})


def router_log_records(router: str, path: Path) -> Iterator[Record]:
    """The lines of ``router``'s log worth keeping, as ``router_log`` records: the
    events above, and any other warning or error that is not a request line."""
    if not path.exists():
        return
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if not line.startswith("{"):
                continue
            try:
                fields = json.loads(line)
                event = fields.pop("event")
                t = datetime.fromisoformat(fields.pop("timestamp")).timestamp()
            except (ValueError, KeyError, TypeError):
                continue
            serious = fields.get("level") in ("warning", "error", "critical")
            if event in EVENTS or (serious and event not in REQUEST_EVENTS):
                yield {
                    "type": "router_log",
                    "t": t,
                    "router": router,
                    "event": event,
                    "fields": fields,
                }
