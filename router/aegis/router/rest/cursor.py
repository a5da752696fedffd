"""Opaque page cursors: the last key a page showed, for the next page to start after.

A keyset cursor, not an offset: instances that come or go before it do not
shift the next page, and it stays good for as long as the client keeps it.
Its text is ``base64url("1:" + service + ":" + instance id)`` (the first
field is the format's version); clients must treat it as opaque.
"""

from __future__ import annotations

import base64
import binascii

from aegis.router.domain import InstanceKey
from aegis.router.rest.contract import instance_key

FORMAT = "1"
MAX_CURSOR = 512  # characters: a service name (64) and an instance id (128), encoded


class CursorError(ValueError):
    """The text is not a cursor this router made."""


def encode_cursor(key: InstanceKey) -> str:
    """The cursor of a page that ended at ``key``."""
    raw = f"{FORMAT}:{key.service_name}:{key.instance_id}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(text: str) -> InstanceKey:
    """The key ``text`` (from ``encode_cursor``) names; ``CursorError`` if it names none."""
    if not text or len(text) > MAX_CURSOR:
        raise CursorError("not a cursor")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise CursorError("not a cursor") from None
    version, _, rest = raw.partition(":")
    service, _, instance = rest.partition(":")
    key = instance_key(service, instance) if version == FORMAT else None
    if key is None or encode_cursor(key) != text:  # one text per key: no look-alikes
        raise CursorError("not a cursor")
    return key
