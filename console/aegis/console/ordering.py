"""Natural order for names and ids: ``big-2`` before ``big-10``, ``Api`` beside ``api``."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

_DIGIT_RUNS: Final = re.compile(r"([0-9]+)")

NaturalKey = tuple[tuple[str | int, ...], str]
"""Case-folded text and integer runs, then the raw string to break ties."""


# Each sort of the instances table asks for 10,000 keys, mostly the same ids as the
# last poll; the cache turns the regex split into a lookup. Bounded, so ids that come
# and go cannot grow it without limit.
@lru_cache(maxsize=1 << 16)
def natural_key(text: str) -> NaturalKey:
    """A sort key that orders digit runs by value and letters case-insensitively.

    ``re.split`` with a capturing group alternates text and digits and always starts
    with text (maybe empty), so two keys compare str with str and int with int.
    Equal-looking strings (``a01`` and ``a1``, ``Api`` and ``api``) fall back to the
    raw string, so the order is total and the same on every run.
    """
    parts = _DIGIT_RUNS.split(text)
    folded = tuple(int(part) if index % 2 else part.casefold() for index, part in enumerate(parts))
    return folded, text
