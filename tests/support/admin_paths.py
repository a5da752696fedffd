"""The admin API's paths the role tests walk: every read, for one instance of billing."""

from __future__ import annotations

ADMIN = "/api/v1/admin"
INSTANCE = f"{ADMIN}/services/billing/instances/b-1"
READS = [
    f"{ADMIN}/services",
    f"{ADMIN}/services/billing",
    f"{ADMIN}/services/billing/instances",
    INSTANCE,
    f"{ADMIN}/instances",
    f"{ADMIN}/whoami",
]
