"""Natural order of service names and instance ids."""

from __future__ import annotations

import pytest
from aegis.console.ordering import natural_key


def ordered(*names: str) -> list[str]:
    return sorted(names, key=natural_key)


def test_digit_runs_compare_by_value() -> None:
    assert ordered("big-10", "big-2", "big-1") == ["big-1", "big-2", "big-10"]
    assert ordered("node-1-10", "node-1-9", "node-10-1") == ["node-1-9", "node-1-10", "node-10-1"]


def test_letters_compare_case_insensitively() -> None:
    assert ordered("beta", "Alpha", "alpha-2", "Gamma") == ["Alpha", "alpha-2", "beta", "Gamma"]


def test_ties_break_on_the_raw_string() -> None:
    # Same value, different spelling: a fixed order, whatever the input order.
    assert ordered("a1", "a01", "A1") == ordered("A1", "a1", "a01") == ["A1", "a01", "a1"]


@pytest.mark.parametrize(
    ("left", "right"),
    [("", "0"), ("7", "a"), ("x", "x0"), ("2026-11-03", "2026-11-3a"), ("v1.10", "v1.9.1")],
)
def test_mixed_shapes_compare_without_error(left: str, right: str) -> None:
    # Text never meets a number in the same position, so comparing never raises.
    assert sorted([left, right], key=natural_key) == sorted([right, left], key=natural_key)
