"""Wire-contract facts the tests share, written out so a model change cannot move them."""

from __future__ import annotations

from typing import Any

INSTANCE_KEYS = {
    "service_name",
    "instance_id",
    "status",
    "metadata",
    "registered_at",
    "last_heartbeat_at",
}


def instance_body(service_name: str, instance_id: str, status: str = "ONLINE") -> dict[str, Any]:
    """An ``instance`` as a router would put it in a reply."""
    return {
        "service_name": service_name,
        "instance_id": instance_id,
        "status": status,
        "metadata": {},
        "registered_at": "2026-01-01T00:00:00.000Z",
        "last_heartbeat_at": "2026-01-01T00:00:00.000Z",
    }
