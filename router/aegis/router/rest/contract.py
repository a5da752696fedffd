"""What the REST API promises in every route: its prefix, the name rules of its paths,
and schema references that keep the OpenAPI document exact."""

from __future__ import annotations

import re
from typing import Any

from aegis.router.domain import InstanceKey
from aegis.wire.messages import INSTANCE_ID_PATTERN, SERVICE_NAME_PATTERN
from pydantic import BaseModel
from sanic_ext.extensions.openapi.definitions import Component

ADMIN_PREFIX = "/api/v1/admin"
SERVICE_NAME = re.compile(SERVICE_NAME_PATTERN)
INSTANCE_ID = re.compile(INSTANCE_ID_PATTERN)


def instance_key(name: str, instance_id: str) -> InstanceKey | None:
    """The key of a path's instance, or None for names no registration could have (so
    none can be in the store, nor be a store key)."""
    if SERVICE_NAME.fullmatch(name) and INSTANCE_ID.fullmatch(instance_id):
        return InstanceKey(name, instance_id)
    return None


def ref(model: type[BaseModel]) -> dict[str, Any]:
    """Response content pointing at ``model``'s full schema under components.

    sanic-ext writes an inline Pydantic model lossily (no ``required``); a
    registered component keeps the whole ``model_json_schema``.
    """
    return {"application/json": Component(model)}
