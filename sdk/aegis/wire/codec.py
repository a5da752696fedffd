"""MessagePack in and out: the one place a wire model becomes bytes and back."""

from __future__ import annotations

from typing import Any

import msgpack
from pydantic import BaseModel


def pack(model: BaseModel) -> bytes:
    """``model`` as a MessagePack map: JSON-compatible values, unset optional fields left out."""
    packed: bytes = msgpack.packb(model.model_dump(mode="json", exclude_none=True))
    return packed


def pack_map(fields: dict[str, Any]) -> bytes:
    """A map already in wire form as MessagePack: what ``pack`` does after ``model_dump``.

    For hot paths that skip building a model (a reply is mostly serialisation
    cost). The caller keeps ``pack``'s rules: JSON-compatible values, no None
    members, keys in the model's field order (so the bytes are the same too).
    """
    packed: bytes = msgpack.packb(fields)
    return packed


def unpack(data: bytes) -> Any:
    """The MessagePack value in ``data`` (strings as ``str``); raises on malformed input."""
    return msgpack.unpackb(data, raw=False)
