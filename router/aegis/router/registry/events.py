"""Change events in wire form, as the registry announces them (bus.event_sink publishes)."""

from __future__ import annotations

from typing import Any

from aegis.wire.messages import EventKind, InstanceStatus


def event_map(
    kind: EventKind,
    instance: dict[str, Any],
    previous: InstanceStatus | None,
    actor: str | None = None,
) -> dict[str, Any]:
    """A ``ChangeEvent`` in wire form, as ``pack`` would see it after ``model_dump``.

    Built as a map, like the hot replies: validating and dumping the model cost
    more than the rest of announcing a change (tests/unit/router/bus/
    test_endpoints_reply_maps.py checks the bytes are the model's).
    """
    event: dict[str, Any] = {"event": kind.value, "instance": instance}
    if previous is not None:
        event["previous_status"] = previous.value
    if actor is not None:
        event["actor"] = actor  # who asked: an admin token's name (operator changes only)
    return event
