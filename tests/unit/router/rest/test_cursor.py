"""aegis.router.rest.cursor: a cursor names one key; anything else is refused."""

from __future__ import annotations

import base64

import pytest
from aegis.router.domain import InstanceKey
from aegis.router.rest.cursor import CursorError, decode_cursor, encode_cursor


@pytest.mark.parametrize(
    "key",
    [InstanceKey("billing", "b-1"), InstanceKey("a", "x:y.z:9"), InstanceKey("S_-9", "-" * 128)],
)
def test_a_cursor_round_trips_and_is_url_safe(key: InstanceKey) -> None:
    cursor = encode_cursor(key)
    assert decode_cursor(cursor) == key
    assert cursor.replace("-", "").replace("_", "").isalnum()


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not base64 at all!",
        b64("2:billing:b-1"),  # another format
        b64("1:billing"),  # no instance
        b64("1:bad name:b-1"),  # no service could have that name
        b64("1:billing:b/1"),  # nor an instance that id
        encode_cursor(InstanceKey("billing", "b-1")) + "==",  # padded: not the text we give
        "A" * 1000,
    ],
)
def test_anything_but_a_cursor_is_refused(text: str) -> None:
    with pytest.raises(CursorError):
        decode_cursor(text)
