"""MessagePack in and out: the one place a wire model becomes bytes and back."""

from __future__ import annotations

from typing import Any

import msgpack
from pydantic import BaseModel


def pack(model: BaseModel) -> bytes:
    """``model`` as a MessagePack map: JSON-compatible values, unset optional fields left out."""
    packed: bytes = msgpack.packb(model.model_dump(mode="json", exclude_none=True))
    return packed


def unpack(data: bytes) -> Any:
    """The MessagePack value in ``data`` (strings as ``str``); raises on malformed input."""
    return msgpack.unpackb(data, raw=False)
