"""MessagePack helpers: a map packed around one member joins back byte for byte."""

from __future__ import annotations

from typing import Any

import pytest
from aegis.wire.codec import pack_map, pack_map_around, pack_value


@pytest.mark.parametrize("size", [0, 5, 14, 15, 16, 70_000])  # fixmap, map 16, map 32
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_pieces_around_a_member_join_into_the_packed_map(size: int, where: str) -> None:
    others: dict[str, Any] = {f"k{i}": [i, {"n": None}] for i in range(size)}
    position = {"first": 0, "middle": size // 2, "last": size}[where]
    names = list(others)
    fields = {n: others[n] for n in names[:position]}
    fields["contact"] = "old"
    fields.update({n: others[n] for n in names[position:]})
    before, after = pack_map_around(fields, "contact")
    for value in ("2026-11-27T09:00:00.000Z", 12, None):
        assert before + pack_value(value) + after == pack_map({**fields, "contact": value})


def test_a_missing_member_is_an_error() -> None:
    with pytest.raises(ValueError, match="contact"):
        pack_map_around({"a": 1}, "contact")
