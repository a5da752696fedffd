"""Exponential backoff with full jitter, for every retry loop in AegisIPC."""

from __future__ import annotations

import random
from collections.abc import Callable


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    jitter: bool,
    rand: Callable[[], float] = random.random,
) -> float:
    """Delay before retry number ``attempt`` (0 = the first retry).

    Exponential (``base * 2**attempt``) capped at ``cap``; with jitter a uniform
    draw below that ("full jitter"), so many clients do not retry in step.
    """
    delay = min(cap, base * 2.0**attempt)
    return delay * rand() if jitter else delay
