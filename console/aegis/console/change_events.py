"""Change events for the recent-events pane: from the router's stream, or from two polls."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from .api_client import parse_instance
from .models import InstanceInfo
from .sse import ServerSentEvent
from .tables import diff_rows


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """One change to one instance, as the events pane lists it.

    ``at`` is when the console learned of it: the router's events carry no time.
    """

    at: datetime
    kind: str
    instance: InstanceInfo
    previous_status: str | None = None
    actor: str | None = None  # the operator's token name, for changes an operator made


def record_from_event(event: ServerSentEvent, at: datetime) -> ChangeRecord:
    """A stream event's ``data`` (``{"event", "instance", "previous_status", "actor"?}``)
    to a record.

    Raises ``ValueError`` (or ``KeyError``/``TypeError``) if it is not that shape.
    """
    body = json.loads(event.data)
    previous, actor = body.get("previous_status"), body.get("actor")
    return ChangeRecord(
        at=at,
        kind=str(body.get("event") or event.event),
        instance=parse_instance(body["instance"]),
        previous_status=None if previous is None else str(previous),
        actor=None if actor is None else str(actor),
    )


def records_from_polls(
    old: Mapping[str, InstanceInfo], new: Mapping[str, InstanceInfo], at: datetime
) -> list[ChangeRecord]:
    """What changed between two polls, as the stream would have said it (for old routers)."""
    diff = diff_rows(old, new)
    records = [ChangeRecord(at, "registered", i) for i in diff.added.values()]
    for key, instance in diff.updated.items():
        before = old[key]
        if before.status != instance.status:
            records.append(ChangeRecord(at, "status_changed", instance, before.status))
        if before.maintenance != instance.maintenance:
            records.append(ChangeRecord(at, "maintenance", instance, before.status))
    records += [ChangeRecord(at, "removed", old[key], old[key].status) for key in diff.removed]
    return records
