"""validate_register: the same answer as ``RegisterRequest`` for any decoded body, and
the common body answered without the model."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from aegis.wire.messages import (
    RegisterFields,
    RegisterRequest,
    _plainly_valid,
    check_metadata,
    error_details,
    validate_register,
    well_formed_registration,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

LIMITS = (16 * 1024, 40, 1, 0)

# Strings near each rule's edges: the names' alphabets, a character outside them,
# a final newline (``$`` in re, not in pydantic), lengths around the bounds.
names = st.one_of(
    st.text("abcXYZ019_-", min_size=0, max_size=3),
    st.text("ab.:-", min_size=1, max_size=3),
    st.sampled_from(["a" * 64, "a" * 65, "i" * 128, "i" * 129, "ok\n", "é", " a", "a b", ""]),
)
text = st.one_of(
    st.text(max_size=4),
    st.sampled_from(["", "t" * 64, "t" * 65, "s" * 256, "s" * 257]),
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**65),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.binary(max_size=4),
)
json_like = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=3), st.integers(0, 3)), children, max_size=3),
    ),
    max_leaves=12,
)
anything = st.one_of(json_like, names, text)
seqs = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-2, max_value=2),
    st.sampled_from([2**63 - 1, 2**63, 1.0, "1"]),
)
deep: Any = {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}
metadata = st.one_of(
    st.none(),
    st.dictionaries(st.text(max_size=6), json_like, max_size=4),
    st.sampled_from([{}, deep, {"x": deep}, {"big": "x" * 50}, [1], "m"]),
    json_like,
)
# Mostly valid values, so the edges of an accepted body are explored too.
valid_metadata = st.dictionaries(
    st.text(max_size=6),
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.text(max_size=8)),
        lambda children: st.one_of(
            st.lists(children, max_size=3), st.dictionaries(st.text(max_size=3), children)
        ),
        max_leaves=8,
    ),
    max_size=4,
)


def mostly(valid: st.SearchStrategy[Any], other: st.SearchStrategy[Any]) -> Any:
    return st.one_of(valid, valid, valid, other)


FIELDS = {
    "service_name": mostly(st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True), names),
    "instance_id": mostly(st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True), anything),
    "metadata": mostly(valid_metadata, metadata),
    "timestamp": mostly(st.one_of(st.none(), st.text(max_size=64)), anything),
    "session_id": mostly(st.one_of(st.none(), st.text(min_size=1, max_size=256)), text),
    "seq": mostly(st.one_of(st.none(), st.integers(0, 2**63 - 1)), seqs),
}


@st.composite
def bodies(draw: st.DrawFn) -> dict[Any, Any]:
    """A map as it comes off the wire: any of the fields, each maybe of the wrong type,
    maybe absent, and maybe other keys; round-tripped through MessagePack."""
    body: dict[Any, Any] = {}
    for name, values in FIELDS.items():
        if draw(st.integers(0, 9)):  # mostly present
            body[name] = draw(values)
    if draw(st.booleans()):
        body[draw(st.one_of(st.text(max_size=4), st.integers(0, 3)))] = draw(json_like)
    try:
        decoded: dict[Any, Any] = msgpack.unpackb(msgpack.packb(body), strict_map_key=False)
    except (TypeError, ValueError, OverflowError):  # not something a wire could carry
        decoded = {}
    return decoded


def answer(validate: Any, body: dict[str, Any]) -> tuple[str, Any]:
    """What the router would do with ``body``: its fields, or the 400's details."""
    try:
        fields = validate(body)
    except ValidationError as exc:
        return "refused", [d.model_dump() for d in error_details(exc)]
    return "accepted", tuple(fields)


def by_model(body: dict[str, Any], limit: int) -> tuple[str, Any]:
    def validate(data: dict[str, Any]) -> tuple[Any, ...]:
        r = RegisterRequest.model_validate(data, context={"max_metadata_bytes": limit})
        return (r.service_name, r.instance_id, r.metadata, r.timestamp, r.session_id, r.seq)

    return answer(validate, body)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies(), st.sampled_from(LIMITS))
def test_any_body_gets_the_models_answer(body: dict[str, Any], limit: int) -> None:
    """Accepted with the same fields, or refused with the same details, as the model."""
    ours = answer(lambda b: validate_register(b, max_metadata_bytes=limit), body)
    assert ours == by_model(body, limit)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies(), st.sampled_from(LIMITS))
def test_the_fast_path_accepts_only_what_the_model_accepts(
    body: dict[str, Any], limit: int
) -> None:
    fields = well_formed_registration(body, limit)
    if fields is not None:
        assert by_model(body, limit) == ("accepted", tuple(fields))


WELL_FORMED = [
    {"service_name": "billing", "instance_id": "billing-1"},
    {"service_name": "billing", "instance_id": "b-1", "metadata": None, "session_id": "s"},
    {
        "service_name": "svc-7",
        "instance_id": "host.example:8080",
        "metadata": {"version": "1.4.2", "zone": "eu-west-1a", "port": 8080, "w": 0.5},
        "timestamp": "2026-12-07T15:00:00.000Z",
        "session_id": "0f3c9a",
        "seq": 3,
        "unknown": "ignored",
    },
    {"service_name": "a", "instance_id": "b", "metadata": {"tags": ["x", 1, None, {"k": True}]}},
]


@pytest.mark.parametrize("body", WELL_FORMED)
def test_a_well_formed_body_skips_the_model(body: dict[str, Any]) -> None:
    fields = well_formed_registration(body)
    assert isinstance(fields, RegisterFields)
    assert by_model(body, 16 * 1024) == ("accepted", tuple(fields))


def test_a_refusal_carries_the_models_details() -> None:
    body = {"service_name": "bad name", "instance_id": "i", "seq": -1}
    with pytest.raises(ValidationError) as caught:
        validate_register(body)
    locs = [d.loc for d in error_details(caught.value)]
    assert locs == [["service_name"], ["seq"]]


@settings(max_examples=2000, deadline=None)
@given(json_like, st.integers(1, 4))
def test_metadata_is_judged_as_the_full_walk_judges_it(value: Any, max_depth: int) -> None:
    """check_metadata's shortcut by exact types accepts nothing its walk would refuse."""

    def walk_refuses(v: Any) -> bool:
        try:
            check_metadata(v, max_depth=max_depth)
        except ValueError:
            return True
        return False

    if _plainly_valid(value, max_depth):
        assert not walk_refuses(value)
    # A refusal still names where: the walk behind the shortcut says it.
    if walk_refuses(value):
        with pytest.raises(ValueError, match=r"^metadata"):
            check_metadata(value, max_depth=max_depth)
