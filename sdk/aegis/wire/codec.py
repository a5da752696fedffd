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


def pack_map_around(fields: dict[str, Any], key: str) -> tuple[bytes, bytes]:
    """``pack_map(fields)`` cut around the value of ``key``, which ``fields`` must hold.

    ``before + pack_value(v) + after`` is ``pack_map({**fields, key: v})``: a
    map whose one member changes each time (a contact time) is packed once,
    then only that member is. MessagePack writes a map as its header followed
    by each key and value in order, so the pieces join byte for byte.
    """
    names = list(fields)
    at = names.index(key)  # ValueError if absent
    before = {name: fields[name] for name in names[:at]}
    after = {name: fields[name] for name in names[at + 1 :]}
    head = _PACKER.pack_map_header(len(fields)) + _members(before) + pack_value(key)
    return head, _members(after)


def _members(fields: dict[str, Any]) -> bytes:
    """A map's packed keys and values, without its header."""
    packed = pack_map(fields)
    # The header is 1, 3 or 5 bytes: fixmap, map 16, map 32.
    return packed[_MAP_HEADER_SIZE.get(packed[0], 1) :]


def pack_value(value: Any) -> bytes:
    """One JSON-compatible value as MessagePack (what it is inside ``pack_map``'s bytes)."""
    packed: bytes = msgpack.packb(value)
    return packed


_PACKER = msgpack.Packer()
_MAP_HEADER_SIZE = {0xDE: 3, 0xDF: 5}
